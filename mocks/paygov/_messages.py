"""The partner -> PayGov messages as the mock checks them (strict: no coercion of types).

Fields the checksum covers are required; unknown fields are ignored, as a tolerant server
would. A refused message gets error code "04" with one ``<field>: <reason>`` per problem.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from adapters.wire import check_wire_time

__all__ = [
    "VERSION",
    "InitMessage",
    "QueryMessage",
    "ReceiptInfo",
    "problems",
]

VERSION = "1.0.6"


def _ip(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError("must be an IPv4 or IPv6 address") from None
    return value


Text = Annotated[str, Field(min_length=1, max_length=255)]
Stamp = Annotated[str, AfterValidator(check_wire_time)]
Amount = Annotated[int, Field(gt=0)]
ItemAmount = Annotated[int, Field(ge=0)]


class _Wire(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class FeeItem(_Wire):
    """One of ``PhiLePhi``."""

    LoaiPhiLePhi: str | None = None
    MaPhiLePhi: str | None = None
    TenPhiLePhi: str | None = None
    SoTien: ItemAmount


class PaidItem(_Wire):
    """One of ``DSKhoanNop``."""

    NoiDung: str | None = None
    SoTien: ItemAmount


class ReceiptInfo(_Wire):
    """``ThongTinBienLai``: every field optional, but of the right type when present."""

    MaDichVu: str | None = None
    MaDVC: str | None = None
    TenDVC: str | None = None
    MaTTHC: str | None = None
    MaDonVi: str | None = None
    TenDonVi: str | None = None
    MaHoSo: str | None = None
    TKThuHuong: str | None = None
    MaNHThuHuong: str | None = None
    TenTKThuHuong: str | None = None
    HoTenNguoiNop: str | None = None
    SoCMNDNguoiNop: str | None = None
    DiaChiNguoiNop: str | None = None
    NoiDungThanhToan: str | None = None
    PhiLePhi: list[FeeItem] = []
    DSKhoanNop: list[PaidItem] = []


class QueryMessage(_Wire):
    """``QUERY`` and ``GET_BILL``."""

    LoaiBanTin: Literal["QUERY", "GET_BILL"]
    PhienBan: Literal["1.0.6"]
    MaDoiTac: Text
    MaThamChieu: Text
    ThoiGianGD: Stamp
    MaXacThuc: Text


class InitMessage(_Wire):
    """``INIT``: start a payment."""

    LoaiBanTin: Literal["INIT"]
    PhienBan: Literal["1.0.6"]
    MaDoiTac: Text
    MaThamChieu: Text
    SoTien: Amount
    LoaiHinhThanhToan: Literal["PAY"]
    MaKenhThanhToan: str | None  # required, but may be empty or null (counted as "")
    MaThietBi: str | None
    NgonNgu: Literal["vi-VN", "en-US"]
    MaTienTe: Literal["VND"]
    MaNganHang: str | None  # empty or null: the citizen picks a bank on PayGov's page
    ThongTinGiaoDich: Text
    ThoiGianGD: Stamp
    Ip: Annotated[str, AfterValidator(_ip)]
    MaXacThuc: Text
    ThongTinBienLai: ReceiptInfo


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "body"


def problems(exc: ValidationError) -> str:
    """``SoTien: Input should be a valid integer; Ip: ...``, one entry per field."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{_where(error['loc'])}: {message}")
    return "; ".join(lines)
