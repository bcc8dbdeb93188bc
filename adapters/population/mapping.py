"""Mapping between the canonical citizen models and the population database's wire fields.

- ``personal_id`` / ``old_id``: ``SoDinhDanh`` / ``SoCMND``
- ``name.family`` / ``.middle`` / ``.given``: ``HoVaTen{Ho, ChuDem, Ten}``; ``name.full`` joins them
- ``gender`` male / female: ``GioiTinh`` "1" / "2"
- ``birth.date`` / ``birth.year``: ``NgayThangNamSinh{NgayThangNam yyyyMMdd, Nam yyyy}``
- ``ethnicity_code``, ``religion_code``, ``blood_type``, ``nationality``: ``DanToc``,
  ``TonGiao``, ``NhomMau``, ``QuocTich``
- ``marital_status``: ``TinhTrangHonNhan`` "1" single, "2" married, "3" divorced, "4" widowed
- ``permanent_address``, ``current_address``, ``hometown``, ``birth_registration_place``:
  ``ThuongTru``, ``NoiOHienTai``, ``QueQuan``, ``NoiDangKyKhaiSinh``, each
  ``{MaTinhThanh, MaQuanHuyen, MaPhuongXa, ChiTiet, QuocGia}`` as
  ``{province_code, district_code, ward_code, detail, country}``
- ``father``, ``mother``, ``spouse``, ``representative``: ``Cha``, ``Me``, ``VoChong``,
  ``NguoiDaiDien``, each ``{HoVaTen, QuocTich, SoDinhDanh, SoCMND}``
- ``household_relation``: ``ChuHo.QuanHe`` CH01 head, CH02 spouse, CH03 child, CH04 parent,
  CH05 sibling, CH06 grandchild, CH99 other
- ``household_head_id``, ``household_book``: ``ChuHo.SoDinhDanh``, ``SoSoHoKhau``

Codes marked in PLATFORMS.md as guesses (GioiTinh, TinhTrangHonNhan, QuanHe) are the mock's;
an unknown code maps to null rather than failing the whole answer.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from bus.errors import UpstreamBadResponse
from schemas.citizen import (
    Address,
    BirthDate,
    Citizen,
    CitizenVerification,
    Gender,
    HouseholdRelation,
    MaritalStatus,
    PersonName,
    RelatedPerson,
    normalise_text,
)

__all__ = ["citizen_from_wire", "fact_fields", "relation_from_wire", "request_fields"]

GENDER_TO_WIRE = {Gender.MALE: "1", Gender.FEMALE: "2"}
GENDER_FROM_WIRE = {v: k for k, v in GENDER_TO_WIRE.items()}
MARITAL_FROM_WIRE = {
    "1": MaritalStatus.SINGLE,
    "2": MaritalStatus.MARRIED,
    "3": MaritalStatus.DIVORCED,
    "4": MaritalStatus.WIDOWED,
}
RELATION_FROM_WIRE = {
    "CH01": HouseholdRelation.HEAD,
    "CH02": HouseholdRelation.SPOUSE,
    "CH03": HouseholdRelation.CHILD,
    "CH04": HouseholdRelation.PARENT,
    "CH05": HouseholdRelation.SIBLING,
    "CH06": HouseholdRelation.GRANDCHILD,
    "CH99": HouseholdRelation.OTHER,
}


def _birth_wire(date: dt.date | None, year: int | None) -> dict[str, str] | None:
    if date is not None:
        return {"NgayThangNam": date.strftime("%Y%m%d")}
    if year is not None:
        return {"Nam": f"{year:04d}"}
    return None


def fact_fields(facts: CitizenVerification) -> dict[str, dict[str, Any]]:
    """Each given fact (by canonical field name) and the wire fields that carry it."""
    out: dict[str, dict[str, Any]] = {}
    if facts.full_name is not None:
        out["full_name"] = {"HoVaTen": facts.full_name}
    birth = _birth_wire(facts.birth_date, facts.birth_year)
    if birth is not None:
        out["birth_date" if facts.birth_date is not None else "birth_year"] = {
            "NgayThangNamSinh": birth
        }
    if facts.gender is not None:
        out["gender"] = {"GioiTinh": GENDER_TO_WIRE[facts.gender]}
    if facts.old_id is not None:
        out["old_id"] = {"SoCMND": facts.old_id}
    return out


def request_fields(query: Any) -> dict[str, Any]:
    """The identifying wire fields of a lookup: ids, name and birth (date wins over year)."""
    return {
        "SoDinhDanh": query.personal_id,
        "SoCMND": query.old_id,
        "HoVaTen": query.full_name,
        "NgayThangNamSinh": _birth_wire(query.birth_date, query.birth_year),
    }


def _text(node: Any, name: str) -> str | None:
    value = getattr(node, name, None) if node is not None else None
    if value is None:
        return None
    text = normalise_text(str(value))
    return text if isinstance(text, str) and text else None


def _address(node: Any) -> Address | None:
    if node is None:
        return None
    return Address(
        province_code=_text(node, "MaTinhThanh"),
        district_code=_text(node, "MaQuanHuyen"),
        ward_code=_text(node, "MaPhuongXa"),
        detail=_text(node, "ChiTiet"),
        country=_text(node, "QuocGia"),
    )


def _related(node: Any) -> RelatedPerson | None:
    name = _text(node, "HoVaTen")
    if node is None or name is None:
        return None
    return RelatedPerson(
        full_name=name,
        nationality=_text(node, "QuocTich"),
        personal_id=_text(node, "SoDinhDanh"),
        old_id=_text(node, "SoCMND"),
    )


def _birth(node: Any) -> BirthDate:
    day = _text(node, "NgayThangNam")
    year = _text(node, "Nam")
    try:
        date = dt.datetime.strptime(day, "%Y%m%d").date() if day else None
        number = int(year) if year else date.year if date else None
    except ValueError:  # the value itself is personal data: not quoted, not chained
        raise UpstreamBadResponse("a citizen record has an unreadable birth date") from None
    if number is None:
        raise UpstreamBadResponse("a citizen record has no birth date or year")
    return BirthDate(date=date, year=number)


def relation_from_wire(node: Any) -> HouseholdRelation | None:
    code = _text(getattr(node, "ChuHo", None), "QuanHe")
    return RELATION_FROM_WIRE.get(code or "")


def citizen_from_wire(node: Any) -> Citizen:
    """A ``CongDan`` element (as zeep returns it) in the canonical model."""
    name = getattr(node, "HoVaTen", None)
    family, middle, given = _text(name, "Ho"), _text(name, "ChuDem"), _text(name, "Ten")
    full = " ".join(part for part in (family, middle, given) if part)
    head = getattr(node, "ChuHo", None)
    return Citizen(
        personal_id=_text(node, "SoDinhDanh") or "",
        old_id=_text(node, "SoCMND"),
        name=PersonName(full=full, family=family or "", middle=middle, given=given or ""),
        gender=GENDER_FROM_WIRE.get(_text(node, "GioiTinh") or ""),
        birth=_birth(getattr(node, "NgayThangNamSinh", None)),
        ethnicity_code=_text(node, "DanToc"),
        religion_code=_text(node, "TonGiao"),
        marital_status=MARITAL_FROM_WIRE.get(_text(node, "TinhTrangHonNhan") or ""),
        blood_type=_text(node, "NhomMau"),
        nationality=_text(node, "QuocTich"),
        birth_registration_place=_address(getattr(node, "NoiDangKyKhaiSinh", None)),
        hometown=_address(getattr(node, "QueQuan", None)),
        permanent_address=_address(getattr(node, "ThuongTru", None)),
        current_address=_address(getattr(node, "NoiOHienTai", None)),
        father=_related(getattr(node, "Cha", None)),
        mother=_related(getattr(node, "Me", None)),
        spouse=_related(getattr(node, "VoChong", None)),
        representative=_related(getattr(node, "NguoiDaiDien", None)),
        household_relation=relation_from_wire(node),
        household_head_id=_text(head, "SoDinhDanh"),
        household_book=_text(node, "SoSoHoKhau"),
    )
