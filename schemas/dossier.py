"""Canonical dossier models: what callers of ``dossier.sync``, ``dossier.progress``,
``dossier.get`` and ``procedure.get`` send and receive, in English, whatever the National Public
Service Portal (DVCQG) speaks.

The rule of dossier statuses lives here, once: :data:`ALLOWED_TRANSITIONS` says where a dossier
in one :class:`DossierStatus` may go next, and :func:`transition_allowed` applies it (the same
status again is always allowed: re-sending a status is a no-op, which keeps re-deliveries
harmless). :class:`DossierProgress` refuses a transition the table does not allow, so a
store-and-forward ``dossier.progress`` is refused when it is validated, before it is queued; the
portal mock (``mocks/dvcqg``) enforces the same table.

Times are timezone-aware: a datetime without a UTC offset is refused, naming the field, since
nobody can tell which clock it was read on. Any offset is accepted on input; on output every
time is shown in Asia/Ho_Chi_Minh (ISO 8601, ``+07:00``), the zone the portal works in. Money is
whole Vietnamese dong: an ``int``, never a float (``1500000.0`` is refused, even though it is
integral, because a float on the way in means a float somewhere upstream).

The owner's identity document number (``owner_id``) is marked with :class:`schemas.base.Subject`:
the exchange log indexes it blindly and never stores it in clear. The mapping to the wire
(``adapters/dvcqg``) is documented in that adapter's module docstring.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictInt,
    ValidationInfo,
    field_validator,
)

from schemas.base import CanonicalModel, Subject, check_year
from schemas.citizen import normalise_text

__all__ = [
    "ALLOWED_TRANSITIONS",
    "VN_TZ",
    "Channel",
    "Dossier",
    "DossierDocument",
    "DossierFee",
    "DossierProgress",
    "DossierQuery",
    "DossierRecord",
    "DossierStatus",
    "DossierSync",
    "DossierSyncResult",
    "OwnerKind",
    "Procedure",
    "ProcedureAgency",
    "ProcedureFee",
    "ProcedureField",
    "ProcedureQuery",
    "ProcedureResult",
    "ProcedureWay",
    "ProgressResult",
    "ProgressStep",
    "ResultDelivery",
    "Timestamp",
    "transition_allowed",
]


def _vietnam() -> dt.tzinfo:
    """Asia/Ho_Chi_Minh from the system's zone database; without one, a fixed +07:00, which is
    the same for every date since 1975 (Vietnam keeps no daylight saving)."""
    try:
        return ZoneInfo("Asia/Ho_Chi_Minh")
    except ZoneInfoNotFoundError:  # pragma: no cover - depends on the host's tz database
        return dt.timezone(dt.timedelta(hours=7), "Asia/Ho_Chi_Minh")


#: The portal's time zone, in which times are shown and put on the wire.
VN_TZ = _vietnam()


class DossierStatus(IntEnum):
    """TrangThaiHoSo of the portal (the wire code is the number)."""

    NEW = 1  #: newly registered (mới đăng ký)
    RECEIVED = 2  #: received (được tiếp nhận)
    NOT_RECEIVED = 3  #: not received (không được tiếp nhận)
    IN_PROGRESS = 4  #: being processed (đang xử lý)
    SUPPLEMENT_REQUESTED = 5  #: supplement requested (yêu cầu bổ sung giấy tờ)
    FINANCIAL_OBLIGATION = 6  #: financial obligation requested (yêu cầu thực hiện NVTC)
    WITHDRAWN = 7  #: withdrawn by the citizen (công dân yêu cầu rút hồ sơ)
    STOPPED = 8  #: processing stopped (dừng xử lý)
    PROCESSED = 9  #: processed (đã xử lý xong)
    RESULT_RETURNED = 10  #: result returned (đã trả kết quả)


_S = DossierStatus

#: Where a dossier in each status may go next; an empty set marks a final status. Moving to the
#: status it already has is always allowed (see :func:`transition_allowed`).
ALLOWED_TRANSITIONS: Mapping[DossierStatus, frozenset[DossierStatus]] = MappingProxyType(
    {
        _S.NEW: frozenset({_S.RECEIVED, _S.NOT_RECEIVED, _S.WITHDRAWN}),
        _S.RECEIVED: frozenset({_S.IN_PROGRESS, _S.SUPPLEMENT_REQUESTED, _S.WITHDRAWN, _S.STOPPED}),
        _S.NOT_RECEIVED: frozenset(),
        _S.IN_PROGRESS: frozenset(
            {_S.SUPPLEMENT_REQUESTED, _S.FINANCIAL_OBLIGATION, _S.STOPPED, _S.PROCESSED}
        ),
        _S.SUPPLEMENT_REQUESTED: frozenset({_S.IN_PROGRESS, _S.WITHDRAWN, _S.STOPPED}),
        _S.FINANCIAL_OBLIGATION: frozenset(
            {_S.IN_PROGRESS, _S.WITHDRAWN, _S.STOPPED, _S.PROCESSED}
        ),
        _S.WITHDRAWN: frozenset(),
        _S.STOPPED: frozenset(),
        _S.PROCESSED: frozenset({_S.RESULT_RETURNED}),
        _S.RESULT_RETURNED: frozenset(),
    }
)


def transition_allowed(current: int, new: int) -> bool:
    """Whether a dossier in status ``current`` may move to ``new`` (the same status again is
    allowed: an idempotent re-sync). Numbers outside 1..10 are never allowed."""
    try:
        before, after = DossierStatus(current), DossierStatus(new)
    except ValueError:
        return False
    return before == after or after in ALLOWED_TRANSITIONS[before]


class OwnerKind(IntEnum):
    """LoaiDoiTuong: who owns the dossier."""

    CITIZEN = 1
    ENTERPRISE = 2
    STATE_AGENCY = 3
    OTHER = 4


class Channel(StrEnum):
    """KenhThucHien: how the dossier was submitted (wire 1, 2, 3)."""

    IN_PERSON = "in_person"
    ONLINE = "online"
    POSTAL = "postal"


class ResultDelivery(StrEnum):
    """HinhThuc: how the result goes back to the owner (wire 0, 1)."""

    AT_OFFICE = "at_office"
    POSTAL = "postal"


# -- field types -------------------------------------------------------------------------------


def _aware(value: dt.datetime, info: ValidationInfo) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{info.field_name} must carry a UTC offset (e.g. +07:00): a time without one is "
            "ambiguous"
        )
    return check_year(value)


def _in_vietnam(value: dt.datetime) -> dt.datetime:
    return value.astimezone(VN_TZ)


#: A timezone-aware time: naive refused (naming the field), shown in Asia/Ho_Chi_Minh.
Timestamp = Annotated[
    dt.datetime,
    AfterValidator(_aware),
    PlainSerializer(_in_vietnam, return_type=dt.datetime),
]
Text = Annotated[str, BeforeValidator(normalise_text)]
Code = Annotated[str, BeforeValidator(normalise_text), Field(min_length=1, max_length=50)]
ShortText = Annotated[str, BeforeValidator(normalise_text), Field(min_length=1, max_length=500)]
#: A sum of money in whole Vietnamese dong: an int, never a float, never negative.
Money = Annotated[StrictInt, Field(ge=0, description="Whole Vietnamese dong (VND).")]
OwnerId = Annotated[
    str,
    BeforeValidator(normalise_text),
    Field(
        min_length=1,
        max_length=20,
        pattern=r"^[0-9A-Za-z]+$",
        description="Identity document number of the owner (personal id, tax code ...).",
    ),
    Subject(),
]


class _Frozen(CanonicalModel):
    model_config = ConfigDict(frozen=True)


# -- dossiers ----------------------------------------------------------------------------------


class DossierFee(_Frozen):
    """One fee or charge of a dossier (an item of DanhSachLePhi)."""

    code: Code | None = Field(default=None, description="MaPhiLePhi")
    name: ShortText = Field(description="TenPhiLePhi")
    amount: Money = Field(description="Gia: the amount in whole VND.")


class DossierDocument(_Frozen):
    """One document submitted with a dossier (an item of TaiLieuNop)."""

    id: Code | None = Field(default=None, description="TepDinhKemId")
    name: ShortText = Field(description="TenTepDinhKem")
    component_code: Code | None = Field(
        default=None, description="MaThanhPhanHoSo: the dossier component it answers."
    )
    url: Annotated[str, Field(max_length=2000)] | None = Field(
        default=None, description="DuongDanTaiTepTin: where the portal can fetch the file."
    )


class Dossier(_Frozen):
    """A dossier (hồ sơ) of an administrative procedure, as the one-stop-shop holds it."""

    code: Code = Field(description="MaHoSo: the dossier's code, unique nationwide.")
    procedure_code: Code = Field(description="MaTTHC: the national procedure code.")
    procedure_name: ShortText = Field(description="TenTTHC")
    field_code: Code = Field(description="MaLinhVuc: the procedure's field (lĩnh vực).")
    field_name: ShortText = Field(description="TenLinhVuc")
    channel: Channel = Field(description="KenhThucHien: how the dossier was submitted.")
    owner_name: ShortText = Field(description="ChuHoSo: the owner's full name.")
    owner_id: OwnerId | None = Field(default=None, description="SoGiayToChuHoSo")
    owner_kind: OwnerKind = Field(description="LoaiDoiTuong: 1 citizen .. 4 other.")
    owner_code: Code | None = Field(default=None, description="MaDoiTuong")
    email: Annotated[str, Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")] | None = (
        Field(default=None, description="Email of the owner.")
    )
    phone: Annotated[str, Field(pattern=r"^\+?[0-9][0-9 .\-]{5,19}$")] | None = Field(
        default=None, description="SoDienThoai"
    )
    summary: Annotated[Text, Field(min_length=1, max_length=2000)] = Field(
        description="TrichYeuHoSo: what the dossier asks for."
    )
    submitted_at: Timestamp | None = Field(default=None, description="NgayNopHoSo")
    received_at: Timestamp | None = Field(default=None, description="NgayTiepNhan")
    due_at: Timestamp | None = Field(default=None, description="NgayHenTra: promised result.")
    status: DossierStatus = Field(description="TrangThaiHoSo")
    processed_at: Timestamp | None = Field(default=None, description="NgayKetThucXuLy")
    returned_at: Timestamp | None = Field(default=None, description="NgayTra: result returned.")
    result_delivery: ResultDelivery | None = Field(default=None, description="HinhThuc")
    agency_code: Code | None = Field(
        default=None, description="DonViXuLy: the agency that processes the dossier."
    )
    submission_place: ShortText | None = Field(default=None, description="NoiNopHoSo")
    paid_online: bool = Field(default=False, description="DuocThanhToanTrucTuyen")
    fees: list[DossierFee] = Field(default_factory=list, max_length=100)
    documents: list[DossierDocument] = Field(default_factory=list, max_length=500)


class DossierSync(Dossier):
    """Input of ``dossier.sync``: the whole dossier; created on the portal, or updated when the
    portal already holds it."""


class DossierSyncResult(_Frozen):
    code: Code = Field(description="The dossier's code (MaHoSo).")
    created: bool = Field(description="True if the portal created it, False if it updated it.")
    status: DossierStatus = Field(description="The status the portal now holds.")


class ProgressStep(_Frozen):
    """One processing step of a dossier, as the portal keeps it (a progress record)."""

    officer_name: ShortText = Field(description="NguoiXuLy: who acted.")
    officer_title: ShortText | None = Field(default=None, description="ChucDanh")
    at: Timestamp = Field(description="ThoiDiemXuLy: when.")
    department: ShortText | None = Field(default=None, description="PhongBanXuLy")
    note: Annotated[Text, Field(min_length=1, max_length=2000)] = Field(
        description="NoiDungXuLy: what was done."
    )
    status: DossierStatus = Field(description="TrangThai: the dossier's status after the step.")
    started_at: Timestamp | None = Field(default=None, description="NgayBatDau")
    due_at: Timestamp | None = Field(default=None, description="NgayKetThucTheoQuyDinh")


class DossierProgress(_Frozen):
    """Input of ``dossier.progress``: one processing step, moving the dossier from
    ``previous_status`` to ``status``; a move :data:`ALLOWED_TRANSITIONS` does not allow is
    refused on ``status``."""

    dossier_code: Code = Field(description="MaHoSo of the dossier.")
    officer_name: ShortText = Field(description="NguoiXuLy: who acted.")
    officer_title: ShortText | None = Field(default=None, description="ChucDanh")
    at: Timestamp = Field(description="ThoiDiemXuLy: when.")
    department: ShortText | None = Field(default=None, description="PhongBanXuLy")
    note: Annotated[Text, Field(min_length=1, max_length=2000)] = Field(
        description="NoiDungXuLy: what was done."
    )
    # Declared before ``status``, whose validator reads it.
    previous_status: DossierStatus = Field(
        description="The dossier's status before this step (not sent to the portal)."
    )
    status: DossierStatus = Field(description="TrangThai: the dossier's status after the step.")
    started_at: Timestamp | None = Field(default=None, description="NgayBatDau")
    due_at: Timestamp | None = Field(default=None, description="NgayKetThucTheoQuyDinh")

    @field_validator("status")
    @classmethod
    def _transition(cls, value: DossierStatus, info: ValidationInfo) -> DossierStatus:
        before = info.data.get("previous_status")
        if before is not None and not transition_allowed(before, value):
            raise ValueError(
                f"a dossier cannot move from status {before.value} ({before.name}) to "
                f"{value.value} ({value.name})"
            )
        return value


class ProgressResult(_Frozen):
    dossier_code: Code = Field(description="MaHoSo of the dossier.")
    status: DossierStatus = Field(description="The status the portal now holds.")


class DossierQuery(_Frozen):
    code: Code = Field(description="MaHoSo of the dossier to read from the portal.")


class DossierRecord(Dossier):
    """A dossier as the portal holds it, with its processing history, oldest step first."""

    progress: list[ProgressStep] = Field(default_factory=list)


# -- procedures --------------------------------------------------------------------------------


class ProcedureQuery(_Frozen):
    code: Code = Field(description="MaTTHC: the national procedure code, e.g. 1.004227.")


class ProcedureField(_Frozen):
    code: Code = Field(description="MALINHVUC")
    name: ShortText = Field(description="TENLINHVUC")


class ProcedureAgency(_Frozen):
    code: Code | None = Field(default=None, description="MADONVI")
    name: ShortText = Field(description="TENDONVI")


class ProcedureFee(_Frozen):
    amount: Money = Field(description="SOTIEN in whole VND.")
    unit: ShortText | None = Field(default=None, description="DONVI, e.g. 'Đồng'.")
    description: Text | None = Field(default=None, description="MOTA")


class ProcedureWay(_Frozen):
    """One way of carrying the procedure out (CACHTHUCTHUCHIEN): channel, time, fees."""

    channel: Channel = Field(description="KENH")
    duration: float | None = Field(default=None, ge=0, description="THOIGIANGIAIQUYET")
    duration_unit: ShortText | None = Field(default=None, description="DONVITINH, e.g. 'Ngày'.")
    description: Text | None = Field(default=None, description="MOTA")
    fees: list[ProcedureFee] = Field(default_factory=list)


class ProcedureResult(_Frozen):
    code: Code | None = Field(default=None, description="MAKETQUA")
    name: ShortText = Field(description="TENKETQUA")


class Procedure(_Frozen):
    """An administrative procedure of the national catalogue (LayThuTuc)."""

    code: Code = Field(description="MATTHC")
    name: ShortText = Field(description="TENTTHC")
    fields: list[ProcedureField] = Field(default_factory=list, description="LINHVUCTHUCHIEN")
    agencies: list[ProcedureAgency] = Field(default_factory=list, description="COQUANTHUCHIEN")
    ways: list[ProcedureWay] = Field(default_factory=list, description="CACHTHUCTHUCHIEN")
    results: list[ProcedureResult] = Field(default_factory=list, description="KETQUATHUCHIEN")
    requirements: Text | None = Field(default=None, description="YEUCAU")
    applicants: Text | None = Field(default=None, description="MOTADOITUONGTHUCHIEN")
