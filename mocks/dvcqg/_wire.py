"""What the portal mock accepts: the error codes, and the checks of dossiers and progress
records as they arrive (one :class:`PortalError` naming the first field that is wrong)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "ALREADY_EXISTS",
    "DATE_FORMAT",
    "DOSSIER_FIELDS",
    "INVALID",
    "NOT_FOUND",
    "OK",
    "PROGRESS_FIELDS",
    "SESSION_EXPIRED",
    "TRANSITION_REFUSED",
    "UNKNOWN_SERVICE",
    "PortalError",
    "check_dossier",
    "check_progress",
    "parse_date",
]

# error_code values of POST /api replies: always strings.
OK = "0"
INVALID = "-1"
SESSION_EXPIRED = "-2"
ALREADY_EXISTS = "-3"
NOT_FOUND = "-4"
TRANSITION_REFUSED = "-5"
UNKNOWN_SERVICE = "-6"

DATE_FORMAT = "%Y%m%d%H%M%S"


class PortalError(Exception):
    """A refusal of the portal: ``{"error_code": code, "message": message, "result": null}``.
    Messages name fields and codes, never the values of a citizen's data."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(path: str, reason: str) -> PortalError:
    return PortalError(INVALID, f"Trường {path} không hợp lệ: {reason}")


Kind = Literal["text", "date", "code", "int", "list"]


@dataclass(frozen=True)
class Spec:
    kind: Kind
    required: bool = False
    max_length: int = 500
    codes: frozenset[str] = frozenset()
    item: Mapping[str, Spec] | None = None  # for lists: the spec of each item's fields


def _codes(*values: str) -> frozenset[str]:
    return frozenset(values)


_STATUS = _codes(*(str(n) for n in range(1, 11)))

_DOCUMENT: dict[str, Spec] = {
    "TepDinhKemId": Spec("text", max_length=50),
    "TenTepDinhKem": Spec("text", required=True),
    "MaThanhPhanHoSo": Spec("text", max_length=50),
    "DuongDanTaiTepTin": Spec("text", max_length=2000),
    "IsDeleted": Spec("code", codes=_codes("0", "1")),
}
_FEE: dict[str, Spec] = {
    "MaPhiLePhi": Spec("text", max_length=50),
    "TenPhiLePhi": Spec("text", required=True),
    "Gia": Spec("int", required=True),
    "LoaiPhiLePhi": Spec("text", max_length=50),
    "HinhThucThu": Spec("text", max_length=50),
}

#: The fields of a dossier (DongBoHoSoMC data[i]); any other key is refused.
DOSSIER_FIELDS: dict[str, Spec] = {
    "MaHoSo": Spec("text", required=True, max_length=50),
    "MaTTHC": Spec("text", required=True, max_length=50),
    "TenTTHC": Spec("text", required=True),
    "MaLinhVuc": Spec("text", required=True, max_length=50),
    "TenLinhVuc": Spec("text", required=True),
    "KenhThucHien": Spec("code", required=True, codes=_codes("1", "2", "3")),
    "ChuHoSo": Spec("text", required=True),
    "SoGiayToChuHoSo": Spec("text", max_length=20),
    "LoaiDoiTuong": Spec("code", required=True, codes=_codes("1", "2", "3", "4")),
    "MaDoiTuong": Spec("text", max_length=50),
    "Email": Spec("text", max_length=254),
    "SoDienThoai": Spec("text", max_length=20),
    "TrichYeuHoSo": Spec("text", required=True, max_length=2000),
    "NgayNopHoSo": Spec("date"),
    "NgayTiepNhan": Spec("date"),
    "NgayHenTra": Spec("date"),
    "TrangThaiHoSo": Spec("code", required=True, codes=_STATUS),
    "NgayTra": Spec("date"),
    "HinhThuc": Spec("code", codes=_codes("0", "1")),
    "NgayKetThucXuLy": Spec("date"),
    "DonViXuLy": Spec("text", max_length=50),
    "NoiNopHoSo": Spec("text"),
    "DuocThanhToanTrucTuyen": Spec("code", codes=_codes("0", "1")),
    "TaiLieuNop": Spec("list", item=_DOCUMENT),
    "DanhSachLePhi": Spec("list", item=_FEE),
}

#: The fields of a progress record (CapNhatTienDoHoSoMC data[i]).
PROGRESS_FIELDS: dict[str, Spec] = {
    "MaHoSo": Spec("text", required=True, max_length=50),
    "NguoiXuLy": Spec("text", required=True),
    "ChucDanh": Spec("text"),
    "ThoiDiemXuLy": Spec("date", required=True),
    "PhongBanXuLy": Spec("text"),
    "NoiDungXuLy": Spec("text", required=True, max_length=2000),
    "TrangThai": Spec("code", required=True, codes=_STATUS),
    "NgayBatDau": Spec("date"),
    "NgayKetThucTheoQuyDinh": Spec("date"),
}


def parse_date(value: str) -> dt.datetime | None:
    """A ``yyyyMMddHHmmss`` wall-clock time (Asia/Ho_Chi_Minh), or None if it is not one."""
    if len(value) != 14 or not value.isascii() or not value.isdigit():
        return None
    try:
        return dt.datetime.strptime(value, DATE_FORMAT)
    except ValueError:
        return None


def _absent(value: Any) -> bool:
    """Null and the empty string both mean "not given" (clients send "" for optional fields)."""
    return value is None or value == ""


def _check_value(path: str, spec: Spec, value: Any) -> Any:
    if spec.kind == "text":
        if not isinstance(value, str) or not value.strip():
            raise invalid(path, "phải là chuỗi ký tự khác rỗng")
        if len(value) > spec.max_length:
            raise invalid(path, f"dài quá {spec.max_length} ký tự")
        return value.strip()
    if spec.kind == "date":
        if not isinstance(value, str) or parse_date(value) is None:
            raise invalid(path, "phải là ngày giờ dạng yyyyMMddHHmmss")
        return value
    if spec.kind == "code":
        if not isinstance(value, str) or value not in spec.codes:
            allowed = ", ".join(sorted(spec.codes, key=lambda c: (len(c), c)))
            raise invalid(path, f"phải là một trong các mã (chuỗi): {allowed}")
        return value
    if spec.kind == "int":
        # bool is an int in Python, a float is not a whole sum of money: both refused.
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise invalid(path, "phải là số nguyên không âm (đồng)")
        return value
    if not isinstance(value, list) or len(value) > 500:
        raise invalid(path, "phải là một danh sách (tối đa 500 phần tử)")
    assert spec.item is not None
    return [_check_record(f"{path}[{i}]", spec.item, item) for i, item in enumerate(value)]


def _check_record(path: str, specs: Mapping[str, Spec], record: Any) -> dict[str, Any]:
    """The record with absent optional fields dropped, or the first problem found."""
    prefix = f"{path}." if path else ""
    if not isinstance(record, dict):
        raise invalid(path or "data", "phải là một đối tượng JSON")
    for key in record:
        if key not in specs:
            raise invalid(f"{prefix}{key}", "trường không được hỗ trợ")
    checked: dict[str, Any] = {}
    for name, spec in specs.items():
        value = record.get(name)
        if _absent(value):
            if spec.required:
                raise PortalError(INVALID, f"Thiếu trường bắt buộc {prefix}{name}")
            continue
        checked[name] = _check_value(f"{prefix}{name}", spec, value)
    return checked


def check_dossier(path: str, record: Any) -> dict[str, Any]:
    """One dossier of DongBoHoSoMC, checked; ``path`` names it in errors (``data[0]``)."""
    return _check_record(path, DOSSIER_FIELDS, record)


def check_progress(path: str, record: Any) -> dict[str, Any]:
    """One progress record of CapNhatTienDoHoSoMC, checked."""
    return _check_record(path, PROGRESS_FIELDS, record)
