"""The six operations of the population mock: read a request element, answer a reply element.

Every request element (namespace ``http://dancuquocgia.bca``) carries the common fields, in this
order: ``MaYeuCau`` (required), ``MaDVC``, ``MaTichHop``, ``MaCanBo``, ``MaDonVi``, ``TaiKhoan``,
``SoDinhDanh``, ``SoCMND``, ``HoVaTen``, ``NgayThangNamSinh{NgayThangNam | Nam}``; then
``GioiTinh`` (XacThuc), ``NoiOHienTai`` (XacMinhThongTinNoiOHienTai) or ``TinhTrangHonNhan``
(XacMinhTinhTrangHonNhan). The person is found by ``SoDinhDanh`` and/or ``SoCMND`` (both given:
both must name the same person); every other fact given must match exactly, ``HoVaTen`` as sent
(the bus sends NFC), a full ``NgayThangNam`` never matching a person known only by birth year.

Checks run in this order, the first failure answering: elements outside the request namespace
(``DC-400-SCHEMA``), ``MaYeuCau`` (``DC-400-MAYEUCAU``), a key (``DC-400-KEY``), the key's shape
(``DC-400-ID``), the birth date's shape (``DC-400-DATE``), then the whole request against
``dancu-request.xsd`` (``DC-400-SCHEMA``: order, unknown or missing elements).

Replies (namespace ``http://www.mic.gov.vn/dancu/1.0``) are the one element soap:Body carries:
``dl:CongdanCollection`` itself for TraCuuThongTinCongDan, XacMinhThongTinChuHo and
CungCapThongTinHoGiaDinh (PLATFORMS.md: "Body/CongdanCollection"; the three WSDL output
messages share that global element), ``dl:KetQuaXacThucResponse{TonTai}`` for the three
verifications.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from lxml import etree

from mocks.population.seed import Address, Citizen, Registry
from mocks.population.soap import DC, DL, FAULTS, SoapFault, request_schema

__all__ = ["OPERATIONS", "Query", "citizen_element", "dispatch"]

NOT_FOUND = "Không tìm thấy thông tin công dân"
FOUND = "Thành công"

_SCHEMA = request_schema()
_ID = re.compile(r"[0-9]{12}")
_CMND = re.compile(r"[0-9]{9}")
_YEAR = re.compile(r"[0-9]{4}")
_DAY = re.compile(r"[0-9]{8}")


@dataclass(frozen=True, slots=True)
class Query:
    """The fields of a request this mock acts on; ``None`` where absent or empty."""

    element: etree._Element
    request_id: str
    personal_id: str | None
    cmnd: str | None
    full_name: str | None
    birth: tuple[str, str] | None  # ("NgayThangNam", "yyyyMMdd") or ("Nam", "yyyy")
    gender: str | None

    def field(self, name: str) -> etree._Element | None:
        return self.element.find(f"{{{DC}}}{name}")


def _text(element: etree._Element, name: str) -> str | None:
    child = element.find(f"{{{DC}}}{name}")
    return child.text if child is not None and child.text else None


def access_entry(operation: str, element: etree._Element) -> dict[str, str | None]:
    """What the platform's access log keeps of a request: which operation, the request id and
    the officer (MaCanBo) on whose behalf it was asked."""
    return {
        "operation": operation,
        "request_id": _text(element, "MaYeuCau"),
        "officer": _text(element, "MaCanBo"),
    }


def read_query(element: etree._Element) -> Query:
    """The request's fields, checked in the documented order."""
    for child in element.iter():
        if isinstance(child.tag, str) and etree.QName(child).namespace != DC:
            raise SoapFault(
                "DC-400-SCHEMA",
                f"Phần tử {child.tag} phải thuộc namespace {DC} (elementFormDefault=qualified)",
            )
    request_id = _text(element, "MaYeuCau")
    if request_id is None:
        raise SoapFault("DC-400-MAYEUCAU")
    personal_id, cmnd = _text(element, "SoDinhDanh"), _text(element, "SoCMND")
    if personal_id is None and cmnd is None:
        raise SoapFault("DC-400-KEY")
    if personal_id is not None and not _ID.fullmatch(personal_id):
        raise SoapFault("DC-400-ID", "SoDinhDanh phải gồm đúng 12 chữ số")
    if cmnd is not None and not _CMND.fullmatch(cmnd):
        raise SoapFault("DC-400-ID", "SoCMND phải gồm đúng 9 chữ số")
    birth = _read_birth(element.find(f"{{{DC}}}NgayThangNamSinh"))
    if not _SCHEMA.validate(element):
        error = _SCHEMA.error_log.last_error
        raise SoapFault("DC-400-SCHEMA", error.message if error else FAULTS["DC-400-SCHEMA"])
    return Query(
        element=element,
        request_id=request_id,
        personal_id=personal_id,
        cmnd=cmnd,
        full_name=_text(element, "HoVaTen"),
        birth=birth,
        gender=_text(element, "GioiTinh"),
    )


def _read_birth(element: etree._Element | None) -> tuple[str, str] | None:
    if element is None:
        return None
    day, year = _text(element, "NgayThangNam"), _text(element, "Nam")
    if day is not None and year is None and _DAY.fullmatch(day):
        try:
            date(int(day[:4]), int(day[4:6]), int(day[6:]))
        except ValueError:
            pass
        else:
            return ("NgayThangNam", day)
    elif year is not None and day is None and _YEAR.fullmatch(year):
        return ("Nam", year)
    raise SoapFault("DC-400-DATE")


# -- matching ----------------------------------------------------------------------------------


def find_person(query: Query, registry: Registry) -> Citizen | None:
    """The one citizen the keys name whose every given fact matches, or None."""
    by_id = registry.by_id.get(query.personal_id) if query.personal_id else None
    by_cmnd = registry.by_cmnd.get(query.cmnd) if query.cmnd else None
    if query.personal_id and query.cmnd:
        person = by_id if by_id is by_cmnd else None
    else:
        person = by_id or by_cmnd
    if person is None:
        return None
    if query.full_name is not None and query.full_name != person.name.full:
        return None
    if query.gender is not None and query.gender != person.gender:
        return None
    if query.birth is not None:
        kind, value = query.birth
        if kind == "Nam" and value != f"{person.birth_date.year:04d}":
            return None
        if kind == "NgayThangNam" and (
            not person.birth_date_known or value != person.birth_date.strftime("%Y%m%d")
        ):
            return None
    return person


def _address_matches(claim: etree._Element, actual: Address) -> bool:
    facts = {
        "MaTinhThanh": actual.province,
        "MaQuanHuyen": actual.district,
        "MaPhuongXa": actual.ward,
        "ChiTiet": actual.detail,
        "QuocGia": actual.country,
    }
    return all(
        (given := _text(claim, name)) is None or given == value for name, value in facts.items()
    )


# -- replies -----------------------------------------------------------------------------------


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    child = etree.SubElement(parent, f"{{{DL}}}{name}")
    child.text = text
    return child


def _address(parent: etree._Element, name: str, address: Address) -> None:
    element = _sub(parent, name)
    _sub(element, "MaTinhThanh", address.province)
    _sub(element, "MaQuanHuyen", address.district)
    _sub(element, "MaPhuongXa", address.ward)
    _sub(element, "ChiTiet", address.detail)
    _sub(element, "QuocGia", address.country)


def _relative(parent: etree._Element, name: str, person: Citizen | None) -> None:
    if person is None:
        return
    element = _sub(parent, name)
    _sub(element, "HoVaTen", person.name.full)
    _sub(element, "QuocTich", person.nationality)
    _sub(element, "SoDinhDanh", person.id)
    if person.cmnd:
        _sub(element, "SoCMND", person.cmnd)


def citizen_element(parent: etree._Element, person: Citizen, registry: Registry) -> None:
    """Append ``dl:CongDan`` for ``person`` to ``parent``, children in the contract's order."""

    def known(citizen_id: str | None) -> Citizen | None:
        return registry.by_id.get(citizen_id) if citizen_id else None

    element = _sub(parent, "CongDan")
    _sub(element, "SoDinhDanh", person.id)
    if person.cmnd:
        _sub(element, "SoCMND", person.cmnd)
    name = _sub(element, "HoVaTen")
    _sub(name, "Ho", person.name.family)
    if person.name.middle:
        _sub(name, "ChuDem", person.name.middle)
    _sub(name, "Ten", person.name.given)
    _sub(element, "GioiTinh", person.gender)
    _sub(element, "DanToc", person.ethnicity)
    _sub(element, "TonGiao", person.religion)
    _sub(element, "TinhTrangHonNhan", person.marital_status)
    if person.blood_type:
        _sub(element, "NhomMau", person.blood_type)
    birth = _sub(element, "NgayThangNamSinh")
    if person.birth_date_known:
        _sub(birth, "NgayThangNam", person.birth_date.strftime("%Y%m%d"))
    _sub(birth, "Nam", f"{person.birth_date.year:04d}")
    _address(element, "NoiDangKyKhaiSinh", person.birth_registration)
    _address(element, "QueQuan", person.hometown)
    _address(element, "ThuongTru", person.permanent)
    _address(element, "NoiOHienTai", person.current)
    _sub(element, "QuocTich", person.nationality)
    _relative(element, "Cha", known(person.father_id))
    _relative(element, "Me", known(person.mother_id))
    _relative(element, "VoChong", known(person.spouse_id))
    _relative(element, "NguoiDaiDien", known(person.representative_id))
    head = registry.head_of(person.id)
    assert head is not None, "every seeded citizen belongs to a household"
    chu_ho = _sub(element, "ChuHo")
    _sub(chu_ho, "QuanHe", person.relation)
    _sub(chu_ho, "SoDinhDanh", head.id)
    if head.cmnd:
        _sub(chu_ho, "SoCMND", head.cmnd)
    _sub(chu_ho, "HoVaTen", head.name.full)
    _sub(element, "SoSoHoKhau", person.household_book)


def _collection(people: list[Citizen], registry: Registry, data_time: str) -> etree._Element:
    """``dl:CongdanCollection``, the whole reply: soap:Body holds it directly."""
    collection = etree.Element(f"{{{DL}}}CongdanCollection", nsmap={"dl": DL})
    collection.set("SoCongDan", str(len(people)))
    collection.set("GhiChu", FOUND if people else NOT_FOUND)
    collection.set("ThoiDiemDuLieu", data_time)
    for person in people:
        citizen_element(collection, person, registry)
    return collection


def _verdict(exists: bool) -> etree._Element:
    root = etree.Element(f"{{{DL}}}KetQuaXacThucResponse", nsmap={"dl": DL})
    _sub(root, "TonTai", "true" if exists else "false")
    return root


# -- the operations ----------------------------------------------------------------------------

Operation = Callable[[Query, Registry, str], etree._Element]


def tra_cuu(query: Query, registry: Registry, data_time: str) -> etree._Element:
    """TraCuuThongTinCongDan: the citizen the keys name, if every given fact matches."""
    person = find_person(query, registry)
    found = [person] if person else []
    return _collection(found, registry, data_time)


def xac_thuc(query: Query, registry: Registry, data_time: str) -> etree._Element:
    """XacThucThongTinCongDan: does one citizen match every given fact?"""
    return _verdict(find_person(query, registry) is not None)


def chu_ho(query: Query, registry: Registry, data_time: str) -> etree._Element:
    """XacMinhThongTinChuHo: the head of the person's household."""
    person = find_person(query, registry)
    head = registry.head_of(person.id) if person else None
    found = [head] if head else []
    return _collection(found, registry, data_time)


def ho_gia_dinh(query: Query, registry: Registry, data_time: str) -> etree._Element:
    """CungCapThongTinHoGiaDinh: every member of the person's household, the head first."""
    person = find_person(query, registry)
    members = registry.members_of(person.id) if person else []
    return _collection(members, registry, data_time)


def noi_o(query: Query, registry: Registry, data_time: str) -> etree._Element:
    """XacMinhThongTinNoiOHienTai: does the person live at the claimed address?"""
    person = find_person(query, registry)
    claim = query.field("NoiOHienTai")
    assert claim is not None, "required by the schema"
    return _verdict(person is not None and _address_matches(claim, person.current))


def hon_nhan(query: Query, registry: Registry, data_time: str) -> etree._Element:
    """XacMinhTinhTrangHonNhan: is the person's marital status the claimed code?"""
    person = find_person(query, registry)
    claim = _text(query.element, "TinhTrangHonNhan")
    return _verdict(person is not None and claim == person.marital_status)


OPERATIONS: dict[str, Operation] = {
    "TraCuuThongTinCongDan": tra_cuu,
    "XacThucThongTinCongDan": xac_thuc,
    "XacMinhThongTinChuHo": chu_ho,
    "CungCapThongTinHoGiaDinh": ho_gia_dinh,
    "XacMinhThongTinNoiOHienTai": noi_o,
    "XacMinhTinhTrangHonNhan": hon_nhan,
}


def operation_name(element: etree._Element) -> str:
    """The operation a request element asks for, or a ``DC-400-OP`` fault."""
    qname = etree.QName(element)
    if qname.namespace != DC or qname.localname not in OPERATIONS:
        raise SoapFault("DC-400-OP", f"Thao tác không được hỗ trợ: {qname.text}")
    return qname.localname


def dispatch(
    name: str, element: etree._Element, registry: Registry, data_time: str
) -> etree._Element:
    """Answer the request element of operation ``name`` with its reply element."""
    return OPERATIONS[name](read_query(element), registry, data_time)
