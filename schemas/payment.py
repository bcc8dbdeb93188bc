"""Canonical payment models: what callers of ``payment.create``, ``payment.status`` and
``payment.receipt`` send and receive, and the ``payment.confirmed`` / ``payment.failed`` events
their webhook gets, whatever PayGov speaks (``adapters/payment``).

Money is an integer number of Vietnamese dong everywhere: a JSON number with a fraction, or a
string, is refused (``1.0`` included), so no amount is ever a float on its way to PayGov.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, Field, IPvAnyAddress, StrictInt, model_validator

from schemas.base import CanonicalModel
from schemas.citizen import OldId, PersonalId

__all__ = [
    "VND",
    "Fee",
    "Payer",
    "PaymentConfirmed",
    "PaymentCreate",
    "PaymentCreated",
    "PaymentItem",
    "PaymentQuery",
    "PaymentState",
    "PaymentStatus",
    "Receipt",
]

#: An amount in Vietnamese dong: a strict integer, positive, below 10 000 billion.
VND = Annotated[StrictInt, Field(gt=0, le=10**13, description="Integer VND; never a float.")]
Reference = Annotated[
    str,
    Field(
        min_length=1,
        max_length=50,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="The partner's unique payment reference (MaThamChieu).",
    ),
]
Code = Annotated[str, Field(min_length=1, max_length=50)]


class PaymentState(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    FAILED = "failed"


class Fee(CanonicalModel):
    """One fee or charge (PhiLePhi)."""

    kind: Code = Field(description="LoaiPhiLePhi: the platform's fee kind code (1 fee, 2 charge).")
    code: Code = Field(description="MaPhiLePhi")
    name: str = Field(min_length=1, max_length=500, description="TenPhiLePhi")
    amount: VND


class PaymentItem(CanonicalModel):
    """One line of what is paid (DSKhoanNop)."""

    description: str = Field(min_length=1, max_length=500, description="NoiDung")
    amount: VND


class Payer(CanonicalModel):
    name: str = Field(min_length=1, max_length=100, description="HoTenNguoiNop")
    id_number: PersonalId | OldId | None = Field(
        default=None, description="SoCMNDNguoiNop: the payer's personal or old id number."
    )
    address: str | None = Field(default=None, max_length=500, description="DiaChiNguoiNop")


class PaymentCreate(CanonicalModel):
    """Start a payment: PayGov answers with the page where the citizen pays."""

    reference: Reference
    amount: VND = Field(description="The total (SoTien); equals the fees plus the items.")
    description: str = Field(min_length=1, max_length=500, description="ThongTinGiaoDich")
    dossier_code: Code = Field(description="MaHoSo: the dossier this payment is for.")
    procedure_code: Code | None = Field(default=None, description="MaTTHC")
    service_code: Code | None = Field(default=None, description="MaDVC")
    service_name: str | None = Field(default=None, max_length=500, description="TenDVC")
    agency_code: Code | None = Field(default=None, description="MaDonVi; default: the bus's.")
    agency_name: str | None = Field(default=None, max_length=500, description="TenDonVi")
    payer: Payer
    fees: list[Fee] = Field(default_factory=list, max_length=50)
    items: list[PaymentItem] = Field(default_factory=list, max_length=50)
    bank_code: str = Field(default="", max_length=20, description="MaNganHang; empty: any bank.")
    client_ip: IPvAnyAddress | None = Field(
        default=None, description="Ip: the citizen's device; default: the adapter's option."
    )

    @model_validator(mode="after")
    def _total(self) -> PaymentCreate:
        parts = [f.amount for f in self.fees] + [i.amount for i in self.items]
        if parts and sum(parts) != self.amount:
            raise ValueError(
                f"amount {self.amount} is not the sum of the fees and items ({sum(parts)})"
            )
        return self


class PaymentCreated(CanonicalModel):
    reference: str
    transaction_id: str = Field(description="PayGov's transaction id (MaGiaoDich).")
    payment_url: str = Field(description="Send the citizen here to pay (UrlThanhToan).")
    amount: int


class PaymentQuery(CanonicalModel):
    reference: Reference


class PaymentStatus(CanonicalModel):
    reference: str
    transaction_id: str | None
    amount: int
    state: PaymentState
    completed_at: datetime | None = Field(description="ISO 8601, +07:00; null while pending.")
    bank_code: str | None


class Receipt(CanonicalModel):
    """The e-receipt PayGov issues for a paid payment."""

    reference: str
    content_type: str = "application/pdf"
    size: int
    content_base64: str = Field(max_length=20_000_000)


class PaymentConfirmed(CanonicalModel):
    """The event a consumer's webhook receives when PayGov confirms (or fails) its payment."""

    reference: str
    dossier_code: str | None
    transaction_id: str
    amount: int
    currency: str = "VND"
    state: PaymentState
    bank_code: str | None
    completed_at: AwareDatetime
    platform_code: str = Field(description="PayGov's MaLoi: 00 paid, anything else not paid.")
