"""Canonical models of the tax link for land financial obligations (``adapters/tax``).

The tax authority's notice arrives as the ``tax.notice`` event, delivered to the land
registry's one-stop-shop; the payment voucher goes back with ``tax.voucher``. A tax code is
personal data (Decree 13/2023) and is marked like a personal id: the exchange log indexes it
blindly and never stores it in clear.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import AwareDatetime, Field

from schemas.base import CanonicalModel, Instant, Subject
from schemas.citizen import OldId, PersonalId
from schemas.payment import VND

__all__ = ["TaxCode", "TaxNotice", "TaxNoticeItem", "TaxVoucher", "VoucherReceipt"]

#: A tax code (mã số thuế): 10 digits, or 10 digits, a dash and 3 more for a branch.
TaxCode = Annotated[
    str,
    Field(pattern=r"^\d{10}(-\d{3})?$", description="Tax code (MST): 10 or 10-3 digits."),
    Subject(),
]


class TaxNoticeItem(CanonicalModel):
    tax_code: Annotated[str, Subject()] = Field(description="MA_SO_THUE")
    decision_no: str = Field(description="SO_QUYET_DINH: the notice's number (MaThongBaoThue).")
    decision_date: date = Field(description="NGAY_QUYET_DINH")
    item_name: str = Field(description="TEN_TIEUMUC: what is owed (land use levy, fee...).")
    amount: int = Field(description="SO_TIEN, integer VND.")


class TaxNotice(CanonicalModel):
    """The ``tax.notice`` event: what the tax authority says the dossier's owner must pay."""

    dossier_code: str = Field(description="MA_HSO")
    items: list[TaxNoticeItem]
    total: int = Field(description="The sum of the items, integer VND.")
    updating: bool = Field(description="IsUpdating: this notice replaces an earlier one.")
    issued_at: AwareDatetime | None = Field(description="Ngay, when the authority sent it.")


class TaxVoucher(CanonicalModel):
    """A payment voucher (chứng từ) for a notice, sent back to the tax authority."""

    dossier_code: str = Field(min_length=1, max_length=50, description="MaHoSo")
    tax_code: TaxCode = Field(description="MaSoThue")
    payer_name: str = Field(min_length=1, max_length=100, description="HoTenNguoiNopTien")
    payer_id: PersonalId | OldId = Field(description="SoCMTNguoiNopTien")
    payer_address: str = Field(default="", max_length=500, description="DiaChiNguoiNopTien")
    notice_no: str = Field(min_length=1, max_length=50, description="MaThongBaoThue")
    description: str = Field(min_length=1, max_length=500, description="NoiDungThanhToan")
    paid_at: Instant = Field(description="ThoiGianThanhToan")
    amount: VND = Field(description="SoTien")


class VoucherReceipt(CanonicalModel):
    dossier_code: str
    voucher_id: str = Field(description="MaChungTu: the tax authority's id of the voucher.")
