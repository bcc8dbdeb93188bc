"""Deterministic seeded citizens and households for the population mock.

``build_registry(seed, households)`` draws every value from one ``random.Random(seed)``: the
same seed gives the same citizens in the same order, on every machine, with no data files.

A household has 1-7 members, the head always first:

- ``CH01`` the head (chủ hộ);
- ``CH02`` often a spouse: both are married (``TinhTrangHonNhan`` "2") and name each other in
  ``VoChong``;
- ``CH04`` sometimes a widowed parent of the head (filling the head's ``Cha`` or ``Me``);
- ``CH03`` children, born when each parent was 20-45, named after their father's family
  (``Cha``/``Me`` filled from the household; a single mother's children have no ``Cha``);
- ``CH99`` a married adult son's wife or daughter's husband (con dâu / con rể), and
- ``CH06`` their children, the head's grandchildren.

``CH05`` (sibling) is part of the code list but is not generated. The QuanHe codes themselves
are a guess: the public documents name the field, not its code list.

Personal ids follow the published layout: a 3-digit province-of-birth code, one digit for gender
and century (0/1 male/female born 1900-1999, 2/3 born 2000-2099), two digits of the birth year
and six random digits. About half of the people born before 2000 also hold a 9-digit ``SoCMND``.
About one in ten people born before 1960 has only a birth year on record. Codes for
provinces (2 digits), districts (3) and wards (5) have the real format; province and district
codes are meant to be those of the pre-2025 three-level list (the contract still carries
MaQuanHuyen), ward codes are only plausible. Names are NFC strings with their diacritics. ``DanToc``
follows the statistics office's list (01 Kinh, 02 Tày, 03 Thái, 04 Hoa, 05 Khmer, 06 Mường,
07 Nùng); ``TonGiao`` "00" is no religion, 01-04 stand for religions (a guess).

Pick people with :class:`Registry`: ``citizens`` (households in order, each head first),
``by_id``, ``by_cmnd``, ``households``, ``head_of(id)``, ``members_of(id)``.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

__all__ = [
    "QUAN_HE",
    "Address",
    "Citizen",
    "Household",
    "Name",
    "Registry",
    "build_registry",
]

REFERENCE_DATE = date(2026, 11, 1)
"""The day the data stands for: nobody is born after it."""

QUAN_HE: dict[str, str] = {
    "CH01": "Chủ hộ",
    "CH02": "Vợ/chồng",
    "CH03": "Con",
    "CH04": "Bố/mẹ",
    "CH05": "Anh/chị/em",
    "CH06": "Cháu",
    "CH99": "Khác",
}
"""Relation to the head of household (``ChuHo/QuanHe``); the codes are this mock's guess."""

MALE, FEMALE = "1", "2"
_RANK = {"CH01": 0, "CH02": 1, "CH04": 2, "CH05": 3, "CH03": 4, "CH99": 5, "CH06": 6}
SINGLE, MARRIED, DIVORCED, WIDOWED = "1", "2", "3", "4"


def _nfc(words: str) -> tuple[str, ...]:
    return tuple(unicodedata.normalize("NFC", word) for word in words.split())


# Family names with their approximate share of the population (percent).
_FAMILY_NAMES = _nfc("Nguyễn Trần Lê Phạm Hoàng Huỳnh Phan Vũ Võ Đặng Bùi Đỗ Hồ Ngô Dương Lý")
_FAMILY_WEIGHTS = (38, 11, 9.5, 7, 3, 2, 4.5, 2, 2, 2.1, 2, 1.4, 1.3, 1.3, 1, 0.5)
_MIDDLE = {
    MALE: _nfc("Văn Văn Văn Hữu Đức Minh Quang Công Thanh Xuân Đình Ngọc Quốc Gia"),
    FEMALE: _nfc("Thị Thị Thị Ngọc Thanh Minh Thu Kim Hồng Thùy Bảo Phương"),
}
_GIVEN = {
    MALE: _nfc(
        "An Bình Cường Dũng Hải Hùng Khánh Long Nam Quân Tuấn Việt Sơn Thắng Hiếu Phúc Đạt Huy "
        "Trung Tâm Thành Hoàng Khoa Phong Minh Kiên"
    ),
    FEMALE: _nfc(
        "An Hà Hạnh Hương Khánh Lan Linh Mai Phương Thảo Trang Yến Hoa Nhung Thủy Vân Hằng "
        "Ngọc Nga Dung Huyền Loan Oanh Quỳnh Chi"
    ),
}

# Ethnic groups (Kinh first) and religions ("00" none), with rough shares.
_DAN_TOC = ("01", "02", "03", "04", "05", "06", "07")
_DAN_TOC_WEIGHTS = (85, 2, 2, 1, 1.5, 1.5, 1)
_TON_GIAO = ("00", "01", "02", "03", "04")
_TON_GIAO_WEIGHTS = (80, 10, 7, 1.5, 1.5)
_NHOM_MAU = ("O", "B", "A", "AB")
_NHOM_MAU_WEIGHTS = (42, 30, 21, 7)


@dataclass(frozen=True, slots=True)
class _Province:
    id_code: str  # 3 digits, the start of a personal id
    name: str
    districts: tuple[str, ...]
    ward_base: int
    streets: tuple[str, ...]

    @property
    def code(self) -> str:
        """The 2-digit administrative code (``MaTinhThanh``)."""
        return self.id_code[1:]


_PROVINCES = (
    _Province(
        "001",
        "Hà Nội",
        ("001", "002", "003", "004", "005", "006", "007", "008"),
        1,
        ("phố Hàng Bạc", "phố Huế", "đường Láng", "phố Kim Mã", "phố Đội Cấn", "đường Giải Phóng"),
    ),
    _Province(
        "079",
        "Hồ Chí Minh",
        ("760", "761", "764", "765", "766", "767", "769"),
        26734,
        ("đường Nguyễn Trãi", "đường Lê Lợi", "đường Cách Mạng Tháng Tám", "đường Điện Biên Phủ"),
    ),
    _Province(
        "048",
        "Đà Nẵng",
        ("490", "491", "492", "493", "494"),
        20194,
        ("đường Bạch Đằng", "đường Nguyễn Văn Linh", "đường Lê Duẩn", "đường Hùng Vương"),
    ),
    _Province(
        "031",
        "Hải Phòng",
        ("303", "304", "305", "306"),
        11293,
        ("đường Lạch Tray", "đường Lê Hồng Phong", "phố Điện Biên Phủ", "đường Tô Hiệu"),
    ),
    _Province(
        "092",
        "Cần Thơ",
        ("916", "917", "918", "919"),
        31117,
        ("đường 30 Tháng 4", "đường Mậu Thân", "đường Trần Hưng Đạo", "đường Nguyễn Văn Cừ"),
    ),
    _Province(
        "026",
        "Vĩnh Phúc",
        ("243", "244", "246", "247"),
        8866,
        ("đường Mê Linh", "đường Nguyễn Tất Thành", "đường Hùng Vương"),
    ),
    _Province(
        "036",
        "Nam Định",
        ("356", "358", "359", "360"),
        13648,
        ("đường Trần Hưng Đạo", "đường Hàn Thuyên", "phố Hoàng Văn Thụ"),
    ),
    _Province(
        "038",
        "Thanh Hóa",
        ("380", "381", "382", "384"),
        14755,
        ("đường Lê Lai", "đường Bà Triệu", "đại lộ Lê Lợi"),
    ),
    _Province(
        "040",
        "Nghệ An",
        ("412", "413", "414", "415"),
        16681,
        ("đường Quang Trung", "đường Lê Hồng Phong", "đại lộ Lê Nin"),
    ),
)
_PROVINCE_WEIGHTS = (22, 24, 8, 9, 7, 6, 7, 9, 8)


@dataclass(frozen=True, slots=True)
class Name:
    family: str  # Ho
    middle: str | None  # ChuDem
    given: str  # Ten

    @property
    def full(self) -> str:
        """The name as one string, the way ``HoVaTen`` is compared."""
        return " ".join(part for part in (self.family, self.middle, self.given) if part)


@dataclass(frozen=True, slots=True)
class Address:
    province: str  # MaTinhThanh, 2 digits
    district: str  # MaQuanHuyen, 3 digits
    ward: str  # MaPhuongXa, 5 digits
    detail: str  # ChiTiet
    country: str = "VN"  # QuocGia


@dataclass(slots=True)
class Citizen:
    """One person. Filled while the registry is built; treat it as read-only afterwards."""

    id: str  # SoDinhDanh
    cmnd: str | None  # SoCMND
    name: Name
    gender: str  # "1" Nam, "2" Nữ
    birth_date: date
    birth_date_known: bool  # False: only the year is on record
    ethnicity: str  # DanToc
    religion: str  # TonGiao
    marital_status: str  # TinhTrangHonNhan
    blood_type: str | None  # NhomMau
    birth_registration: Address  # NoiDangKyKhaiSinh
    hometown: Address  # QueQuan
    permanent: Address  # ThuongTru
    current: Address  # NoiOHienTai
    household_book: str  # SoSoHoKhau
    relation: str  # QuanHe to the head
    nationality: str = "VN"
    father_id: str | None = None
    mother_id: str | None = None
    spouse_id: str | None = None
    representative_id: str | None = None  # NguoiDaiDien, for minors


@dataclass(slots=True)
class Household:
    book: str  # SoSoHoKhau
    member_ids: list[str] = field(default_factory=list)  # the head first

    @property
    def head_id(self) -> str:
        return self.member_ids[0]


class Registry:
    """The seeded population: look-ups by personal id, by old id card, by household."""

    def __init__(self, citizens: Sequence[Citizen], households: Sequence[Household]) -> None:
        self.citizens: list[Citizen] = list(citizens)
        self.households: list[Household] = list(households)
        self.by_id: dict[str, Citizen] = {c.id: c for c in self.citizens}
        self.by_cmnd: dict[str, Citizen] = {c.cmnd: c for c in self.citizens if c.cmnd}
        self._household_of: dict[str, Household] = {
            member: household for household in self.households for member in household.member_ids
        }

    def household_of(self, citizen_id: str) -> Household | None:
        return self._household_of.get(citizen_id)

    def head_of(self, citizen_id: str) -> Citizen | None:
        """The head of the household the person belongs to, or None for an unknown id."""
        household = self._household_of.get(citizen_id)
        return None if household is None else self.by_id[household.head_id]

    def members_of(self, citizen_id: str) -> list[Citizen]:
        """Every member of the person's household, the head first; empty for an unknown id."""
        household = self._household_of.get(citizen_id)
        return [] if household is None else [self.by_id[m] for m in household.member_ids]


def build_registry(seed: int = 2026, households: int = 1200) -> Registry:
    """Draw ``households`` households from ``random.Random(seed)``."""
    return _Builder(random.Random(seed)).build(households)  # noqa: S311 - test data, not secrets


class _Builder:
    # The per-household closure that adds one member: (relation, gender, year, family name).
    Add = Callable[[str, str, int, str], Citizen]

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.ids: set[str] = set()
        self.cmnds: set[str] = set()
        self.books: set[str] = set()
        self.by_id: dict[str, Citizen] = {}

    # -- values ------------------------------------------------------------------------------

    def province(self) -> _Province:
        return self.rng.choices(_PROVINCES, _PROVINCE_WEIGHTS)[0]

    def address(self, province: _Province, *, street_level: bool = True) -> Address:
        rng = self.rng
        index = rng.randrange(len(province.districts))
        ward = province.ward_base + index * 20 + rng.randrange(1, 20)
        if not street_level:
            detail = f"{rng.choice(('Thôn', 'Tổ dân phố'))} {rng.randint(1, 25)}"
        elif rng.random() < 0.5:
            detail = (
                f"Số {rng.randint(1, 250)} ngõ {rng.randint(2, 180)} {rng.choice(province.streets)}"
            )
        else:
            detail = f"Số {rng.randint(1, 400)} {rng.choice(province.streets)}"
        return Address(province.code, province.districts[index], f"{ward:05d}", detail)

    def birth_date(self, year: int) -> date:
        start = date(year, 1, 1)
        last = min(date(year, 12, 31), REFERENCE_DATE)
        return start + timedelta(days=self.rng.randrange((last - start).days + 1))

    def personal_id(self, province: _Province, gender: str, year: int) -> str:
        digit = (year // 100 - 19) * 2 + (0 if gender == MALE else 1)
        while True:
            candidate = f"{province.id_code}{digit}{year % 100:02d}{self.rng.randrange(10**6):06d}"
            if candidate not in self.ids:
                self.ids.add(candidate)
                return candidate

    def cmnd(self, year: int) -> str | None:
        if year >= 2000 or self.rng.random() >= 0.5:
            return None
        while True:
            candidate = f"{self.rng.randrange(10**8, 4 * 10**8):09d}"
            if candidate not in self.cmnds:
                self.cmnds.add(candidate)
                return candidate

    def book(self, province: _Province) -> str:
        while True:
            candidate = f"{province.code}{self.rng.randrange(10**7):07d}"
            if candidate not in self.books:
                self.books.add(candidate)
                return candidate

    def family_name(self) -> str:
        return self.rng.choices(_FAMILY_NAMES, _FAMILY_WEIGHTS)[0]

    def name(self, gender: str, family: str) -> Name:
        rng = self.rng
        middle = rng.choice(_MIDDLE[gender]) if rng.random() < 0.96 else None
        return Name(family, middle, rng.choice(_GIVEN[gender]))

    # -- people ------------------------------------------------------------------------------

    def person(
        self,
        household: Household,
        relation: str,
        *,
        gender: str,
        year: int,
        family: str,
        home: Address,
        ethnicity: str,
        religion: str,
    ) -> Citizen:
        rng = self.rng
        born_in = self.province() if rng.random() < 0.3 else _province_of(home)
        birth = self.birth_date(year)
        current = home if rng.random() < 0.9 else self.address(self.province())
        citizen = Citizen(
            id=self.personal_id(born_in, gender, year),
            cmnd=self.cmnd(year),
            name=self.name(gender, family),
            gender=gender,
            birth_date=birth,
            birth_date_known=not (year < 1960 and rng.random() < 0.1),
            ethnicity=ethnicity if rng.random() < 0.97 else rng.choice(_DAN_TOC),
            religion=religion,
            marital_status=SINGLE,
            blood_type=rng.choices(_NHOM_MAU, _NHOM_MAU_WEIGHTS)[0] if rng.random() < 0.7 else None,
            birth_registration=self.address(born_in, street_level=False),
            hometown=self.address(born_in, street_level=False),
            permanent=home,
            current=current,
            household_book=household.book,
            relation=relation,
        )
        household.member_ids.append(citizen.id)
        self.by_id[citizen.id] = citizen
        return citizen

    def build(self, count: int) -> Registry:
        households = [self.household() for _ in range(count)]
        ordered = [self.by_id[m] for household in households for m in household.member_ids]
        return Registry(ordered, households)

    def household(self) -> Household:
        rng = self.rng
        province = self.province()
        home = self.address(province)
        household = Household(self.book(province))
        ethnicity = rng.choices(_DAN_TOC, _DAN_TOC_WEIGHTS)[0]
        religion = rng.choices(_TON_GIAO, _TON_GIAO_WEIGHTS)[0]

        def add(relation: str, gender: str, year: int, family: str) -> Citizen:
            return self.person(
                household,
                relation,
                gender=gender,
                year=year,
                family=family,
                home=home,
                ethnicity=ethnicity,
                religion=religion,
            )

        head_gender = MALE if rng.random() < 0.7 else FEMALE
        head_year = rng.randint(1940, 2004)
        head = add("CH01", head_gender, head_year, self.family_name())

        spouse: Citizen | None = None
        if head_year <= 2001 and rng.random() < 0.8:
            spouse_gender = FEMALE if head_gender == MALE else MALE
            spouse_year = min(
                2004, head_year + rng.randint(-3, 6) * (1 if head_gender == MALE else -1)
            )
            spouse = add("CH02", spouse_gender, spouse_year, self.family_name())
            _marry(head, spouse)
        elif head_year < 1990 and rng.random() < 0.5:
            head.marital_status = rng.choice((DIVORCED, WIDOWED))

        if head_year >= 1962 and rng.random() < 0.2:
            parent_gender = rng.choice((MALE, FEMALE))
            family = head.name.family if parent_gender == MALE else self.family_name()
            gap = rng.randint(20, min(40, head_year - 1930))
            parent = add("CH04", parent_gender, head_year - gap, family)
            parent.marital_status = WIDOWED
            if parent_gender == MALE:
                head.father_id = parent.id
            else:
                head.mother_id = parent.id

        self.children(household, head, spouse, add)
        household.member_ids.sort(key=lambda m: _RANK[self.by_id[m].relation])
        return household

    def children(
        self, household: Household, head: Citizen, spouse: Citizen | None, add: _Builder.Add
    ) -> None:
        rng = self.rng
        parents = [p for p in (head, spouse) if p is not None]
        father = next((p for p in parents if p.gender == MALE), None)
        mother = next((p for p in parents if p.gender == FEMALE), None)
        if father is None and mother is None:
            return
        family = father.name.family if father else self.family_name()
        first, last = _child_years(parents)
        if first > last or head.marital_status == SINGLE:
            return
        wanted = rng.choices((0, 1, 2, 3, 4), (10, 25, 40, 18, 7))[0]
        years = sorted(rng.randint(first, last) for _ in range(wanted))
        for year in years:
            if len(household.member_ids) >= 7:
                return
            child = add("CH03", rng.choice((MALE, FEMALE)), year, family)
            child.father_id = father.id if father else None
            child.mother_id = mother.id if mother else None
            child.hometown = (father or mother or head).hometown
            if REFERENCE_DATE.year - year < 18:
                child.representative_id = (father or mother or head).id
            if year <= 2000 and len(household.member_ids) <= 5 and rng.random() < 0.35:
                self.next_generation(household, child, add)

    def next_generation(self, household: Household, child: Citizen, add: _Builder.Add) -> None:
        """An adult child with their spouse (CH99) and some of their children (CH06)."""
        rng = self.rng
        in_law_gender = FEMALE if child.gender == MALE else MALE
        year = child.birth_date.year + rng.randint(-4, 4)
        in_law = add("CH99", in_law_gender, year, self.family_name())
        _marry(child, in_law)
        father, mother = (child, in_law) if child.gender == MALE else (in_law, child)
        first, last = _child_years((child, in_law))
        for _ in range(rng.randint(0, 2)):
            if len(household.member_ids) >= 7 or first > last:
                return
            born = rng.randint(first, last)
            grandchild = add("CH06", rng.choice((MALE, FEMALE)), born, father.name.family)
            grandchild.father_id, grandchild.mother_id = father.id, mother.id
            grandchild.hometown = father.hometown
            if REFERENCE_DATE.year - born < 18:
                grandchild.representative_id = father.id


def _child_years(parents: Sequence[Citizen]) -> tuple[int, int]:
    """Birth years a child of these parents may have: each parent is 20 to 45 years older."""
    years = [p.birth_date.year for p in parents]
    return max(years) + 20, min(min(years) + 45, REFERENCE_DATE.year)


def _marry(a: Citizen, b: Citizen) -> None:
    a.marital_status = b.marital_status = MARRIED
    a.spouse_id, b.spouse_id = b.id, a.id


def _province_of(address: Address) -> _Province:
    return next(p for p in _PROVINCES if p.code == address.province)
