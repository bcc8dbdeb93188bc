"""Canonical dossier models <-> the National Public Service Portal's JSON records.

Pure functions, no I/O. A reply that cannot be read raises :class:`WireError` naming the wire
field (never its value); the adapter turns it into ``upstream.bad_response``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from adapters.wire import WIRE_TIME, from_wire_time, to_wire_time
from schemas.dossier import (
    Channel,
    Dossier,
    DossierProgress,
    DossierRecord,
    Procedure,
    ResultDelivery,
)

__all__ = [
    "DOSSIER_FIELDS",
    "DOSSIER_ITEM_FIELDS",
    "PROGRESS_FIELDS",
    "WIRE_TIME",
    "WireError",
    "canonical_field",
    "dossier_from_wire",
    "dossier_to_wire",
    "procedure_from_wire",
    "progress_to_wire",
    "time_from_wire",
    "time_to_wire",
]


CHANNEL_TO_WIRE = {Channel.IN_PERSON: "1", Channel.ONLINE: "2", Channel.POSTAL: "3"}
CHANNEL_FROM_WIRE = {v: k for k, v in CHANNEL_TO_WIRE.items()}
DELIVERY_TO_WIRE = {ResultDelivery.AT_OFFICE: "0", ResultDelivery.POSTAL: "1"}
DELIVERY_FROM_WIRE = {v: k for k, v in DELIVERY_TO_WIRE.items()}

#: Wire name -> canonical name of a dossier's fields (for errors that name a wire field).
DOSSIER_FIELDS: Mapping[str, str] = {
    "MaHoSo": "code",
    "MaTTHC": "procedure_code",
    "TenTTHC": "procedure_name",
    "MaLinhVuc": "field_code",
    "TenLinhVuc": "field_name",
    "KenhThucHien": "channel",
    "ChuHoSo": "owner_name",
    "SoGiayToChuHoSo": "owner_id",
    "LoaiDoiTuong": "owner_kind",
    "MaDoiTuong": "owner_code",
    "Email": "email",
    "SoDienThoai": "phone",
    "TrichYeuHoSo": "summary",
    "NgayNopHoSo": "submitted_at",
    "NgayTiepNhan": "received_at",
    "NgayHenTra": "due_at",
    "TrangThaiHoSo": "status",
    "NgayKetThucXuLy": "processed_at",
    "NgayTra": "returned_at",
    "HinhThuc": "result_delivery",
    "DonViXuLy": "agency_code",
    "NoiNopHoSo": "submission_place",
    "DuocThanhToanTrucTuyen": "paid_online",
    "TaiLieuNop": "documents",
    "DanhSachLePhi": "fees",
}
#: Wire list -> (wire name -> canonical name) of its items' fields.
DOSSIER_ITEM_FIELDS: Mapping[str, Mapping[str, str]] = {
    "TaiLieuNop": {
        "TepDinhKemId": "id",
        "TenTepDinhKem": "name",
        "MaThanhPhanHoSo": "component_code",
        "DuongDanTaiTepTin": "url",
    },
    "DanhSachLePhi": {"MaPhiLePhi": "code", "TenPhiLePhi": "name", "Gia": "amount"},
}
PROGRESS_FIELDS: Mapping[str, str] = {
    "MaHoSo": "dossier_code",
    "NguoiXuLy": "officer_name",
    "ChucDanh": "officer_title",
    "ThoiDiemXuLy": "at",
    "PhongBanXuLy": "department",
    "NoiDungXuLy": "note",
    "TrangThai": "status",
    "NgayBatDau": "started_at",
    "NgayKetThucTheoQuyDinh": "due_at",
}
_TIMES = ("NgayNopHoSo", "NgayTiepNhan", "NgayHenTra", "NgayKetThucXuLy", "NgayTra")
_STEP_TIMES = ("ThoiDiemXuLy", "NgayBatDau", "NgayKetThucTheoQuyDinh")


class WireError(ValueError):
    """A field of the portal's reply that cannot be read; ``field`` is its wire name."""

    def __init__(self, field: str) -> None:
        super().__init__(f"unreadable field {field}")
        self.field = field


# -- times -------------------------------------------------------------------------------------


def time_to_wire(value: dt.datetime) -> str:
    """An aware time as the portal's ``yyyyMMddHHmmss``, wall clock in Asia/Ho_Chi_Minh
    (seconds: anything finer is dropped)."""
    return to_wire_time(value)


def time_from_wire(value: Any, field: str) -> dt.datetime | None:
    """The portal's ``yyyyMMddHHmmss`` (Asia/Ho_Chi_Minh) as an aware time; ``None`` for
    null or ""."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise WireError(field)
    try:
        return from_wire_time(value)
    except ValueError:
        raise WireError(field) from None


def _optional_time(value: dt.datetime | None) -> str | None:
    return None if value is None else time_to_wire(value)


# -- to the wire -------------------------------------------------------------------------------


def _present(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if v is not None}


def dossier_to_wire(dossier: Dossier) -> dict[str, Any]:
    """One dossier as DongBoHoSoMC's ``data`` item; absent optional fields are left out."""
    return _present(
        {
            "MaHoSo": dossier.code,
            "MaTTHC": dossier.procedure_code,
            "TenTTHC": dossier.procedure_name,
            "MaLinhVuc": dossier.field_code,
            "TenLinhVuc": dossier.field_name,
            "KenhThucHien": CHANNEL_TO_WIRE[dossier.channel],
            "ChuHoSo": dossier.owner_name,
            "SoGiayToChuHoSo": dossier.owner_id,
            "LoaiDoiTuong": str(dossier.owner_kind.value),
            "MaDoiTuong": dossier.owner_code,
            "Email": dossier.email,
            "SoDienThoai": dossier.phone,
            "TrichYeuHoSo": dossier.summary,
            "NgayNopHoSo": _optional_time(dossier.submitted_at),
            "NgayTiepNhan": _optional_time(dossier.received_at),
            "NgayHenTra": _optional_time(dossier.due_at),
            "TrangThaiHoSo": str(dossier.status.value),
            "NgayKetThucXuLy": _optional_time(dossier.processed_at),
            "NgayTra": _optional_time(dossier.returned_at),
            "HinhThuc": (
                None
                if dossier.result_delivery is None
                else DELIVERY_TO_WIRE[dossier.result_delivery]
            ),
            "DonViXuLy": dossier.agency_code,
            "NoiNopHoSo": dossier.submission_place,
            "DuocThanhToanTrucTuyen": "1" if dossier.paid_online else "0",
            "TaiLieuNop": [
                _present(
                    {
                        "TepDinhKemId": d.id,
                        "TenTepDinhKem": d.name,
                        "MaThanhPhanHoSo": d.component_code,
                        "DuongDanTaiTepTin": d.url,
                    }
                )
                for d in dossier.documents
            ],
            "DanhSachLePhi": [
                _present({"MaPhiLePhi": f.code, "TenPhiLePhi": f.name, "Gia": f.amount})
                for f in dossier.fees
            ],
        }
    )


def progress_to_wire(step: DossierProgress) -> dict[str, Any]:
    """One processing step as CapNhatTienDoHoSoMC's ``data`` item (``previous_status`` is the
    bus's own check and is not sent)."""
    return _present(
        {
            "MaHoSo": step.dossier_code,
            "NguoiXuLy": step.officer_name,
            "ChucDanh": step.officer_title,
            "ThoiDiemXuLy": time_to_wire(step.at),
            "PhongBanXuLy": step.department,
            "NoiDungXuLy": step.note,
            "TrangThai": str(step.status.value),
            "NgayBatDau": _optional_time(step.started_at),
            "NgayKetThucTheoQuyDinh": _optional_time(step.due_at),
        }
    )


# -- from the wire -----------------------------------------------------------------------------


def _code(value: Any) -> str | None:
    """A code the portal may send as a string or a number; None for null or ""."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError("not a code")
    return str(value).strip()


def _money(value: Any, field: str) -> int:
    """Whole dong: a JSON integer or a string of digits; a float is not money."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    raise WireError(field)


def _text(value: Any) -> Any:
    return None if value == "" else value


def _mapped(mapping: Mapping[str, Any], value: Any, field: str) -> Any:
    code = _code(value)
    if code is None:
        return None
    if code not in mapping:
        raise WireError(field)
    return mapping[code]


def _items(record: Mapping[str, Any], field: str) -> list[Mapping[str, Any]]:
    items = record.get(field) or []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise WireError(field)
    return items


def _step_from_wire(record: Mapping[str, Any]) -> dict[str, Any]:
    times = {name: time_from_wire(record.get(name), name) for name in _STEP_TIMES}
    return {
        "officer_name": record.get("NguoiXuLy"),
        "officer_title": _text(record.get("ChucDanh")),
        "at": times["ThoiDiemXuLy"],
        "department": _text(record.get("PhongBanXuLy")),
        "note": record.get("NoiDungXuLy"),
        "status": _code(record.get("TrangThai")),
        "started_at": times["NgayBatDau"],
        "due_at": times["NgayKetThucTheoQuyDinh"],
    }


def dossier_from_wire(record: Mapping[str, Any]) -> DossierRecord:
    """A TraCuuHoSo record (with its ``QuaTrinhXuLy`` history) as the canonical record.
    Raises :class:`WireError`, or pydantic's ``ValidationError``, when it cannot be read."""
    times = {name: time_from_wire(record.get(name), name) for name in _TIMES}
    paid = _code(record.get("DuocThanhToanTrucTuyen"))
    values = {
        "code": record.get("MaHoSo"),
        "procedure_code": record.get("MaTTHC"),
        "procedure_name": record.get("TenTTHC"),
        "field_code": record.get("MaLinhVuc"),
        "field_name": record.get("TenLinhVuc"),
        "channel": _mapped(CHANNEL_FROM_WIRE, record.get("KenhThucHien"), "KenhThucHien"),
        "owner_name": record.get("ChuHoSo"),
        "owner_id": _text(record.get("SoGiayToChuHoSo")),
        "owner_kind": _code(record.get("LoaiDoiTuong")),
        "owner_code": _text(record.get("MaDoiTuong")),
        "email": _text(record.get("Email")),
        "phone": _text(record.get("SoDienThoai")),
        "summary": record.get("TrichYeuHoSo"),
        "submitted_at": times["NgayNopHoSo"],
        "received_at": times["NgayTiepNhan"],
        "due_at": times["NgayHenTra"],
        "status": _code(record.get("TrangThaiHoSo")),
        "processed_at": times["NgayKetThucXuLy"],
        "returned_at": times["NgayTra"],
        "result_delivery": _mapped(DELIVERY_FROM_WIRE, record.get("HinhThuc"), "HinhThuc"),
        "agency_code": _text(record.get("DonViXuLy")),
        "submission_place": _text(record.get("NoiNopHoSo")),
        "paid_online": paid == "1",
        "documents": [
            {
                "id": _text(d.get("TepDinhKemId")),
                "name": d.get("TenTepDinhKem"),
                "component_code": _text(d.get("MaThanhPhanHoSo")),
                "url": _text(d.get("DuongDanTaiTepTin")),
            }
            for d in _items(record, "TaiLieuNop")
        ],
        "fees": [
            {
                "code": _text(f.get("MaPhiLePhi")),
                "name": f.get("TenPhiLePhi"),
                "amount": _money(f.get("Gia"), "DanhSachLePhi.Gia"),
            }
            for f in _items(record, "DanhSachLePhi")
        ],
        "progress": [_step_from_wire(s) for s in _items(record, "QuaTrinhXuLy")],
    }
    return DossierRecord.model_validate(values)


def procedure_from_wire(record: Mapping[str, Any]) -> Procedure:
    """A LayThuTuc record as the canonical procedure: one way per (KENH, THOIGIAN) pair."""
    ways = []
    for way in _items(record, "CACHTHUCTHUCHIEN"):
        channel = _mapped(CHANNEL_FROM_WIRE, way.get("KENH"), "CACHTHUCTHUCHIEN.KENH")
        for time in _items(way, "THOIGIAN") or [{}]:
            ways.append(
                {
                    "channel": channel,
                    "duration": _text(time.get("THOIGIANGIAIQUYET")),
                    "duration_unit": _text(time.get("DONVITINH")),
                    "description": _text(time.get("MOTA")),
                    "fees": [
                        {
                            "amount": _money(fee.get("SOTIEN"), "PHILEPHI.SOTIEN"),
                            "unit": _text(fee.get("DONVI")),
                            "description": _text(fee.get("MOTA")),
                        }
                        for fee in _items(time, "PHILEPHI")
                    ],
                }
            )
    values = {
        "code": record.get("MATTHC"),
        "name": record.get("TENTTHC"),
        "fields": [
            {"code": f.get("MALINHVUC"), "name": f.get("TENLINHVUC")}
            for f in _items(record, "LINHVUCTHUCHIEN")
        ],
        "agencies": [
            {"code": _text(a.get("MADONVI")), "name": a.get("TENDONVI")}
            for a in _items(record, "COQUANTHUCHIEN")
        ],
        "ways": ways,
        "results": [
            {"code": _text(r.get("MAKETQUA")), "name": r.get("TENKETQUA")}
            for r in _items(record, "KETQUATHUCHIEN")
        ],
        "requirements": _text(record.get("YEUCAU")),
        "applicants": _text(record.get("MOTADOITUONGTHUCHIEN")),
    }
    return Procedure.model_validate(values)


# -- errors ------------------------------------------------------------------------------------

_PATH = re.compile(r"(?:data\[\d+\]\.)?([A-Za-z]+)(?:\[(\d+)\]\.([A-Za-z]+))?")


def canonical_field(
    message: str,
    fields: Mapping[str, str],
    items: Mapping[str, Mapping[str, str]] | None = None,
) -> str | None:
    """The canonical path of the first wire field the portal's message names
    (``data[0].DanhSachLePhi[1].Gia`` -> ``fees.1.amount``), or None. Only names found in
    ``fields`` come out, so nothing else of the message (a value) can."""
    for match in _PATH.finditer(message):
        top, index, sub = match.groups()
        name = fields.get(top)
        if name is None:
            continue
        nested = (items or {}).get(top, {})
        if index is not None and sub in nested:
            return f"{name}.{index}.{nested[sub]}"
        return name
    return None
