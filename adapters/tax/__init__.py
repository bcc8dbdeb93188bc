"""The tax link for land financial obligations: JSON carrying base64 XML, one shared key.

Inbound: the tax authority pushes its notice of financial obligation to
``POST /v1/callbacks/{service}`` as ``{SecurityKey, Service, Ngay, IsUpdating,
Data: {FileThongBaoThue}}``, the file being base64 of ``/DATA/BODY/ROW_LIST{MA_HSO, LIST{...}}``.
The handler checks the shared key (credential ``security_key``; a wrong one gets 401
``Error Security Code``, as the authority itself answers), reads the XML with a parser that
resolves no entity and fetches nothing, and turns it into the canonical ``tax.notice`` event
(``schemas/tax.py``) for the consumer named by ``options.notice_consumer``: the land registry's
one-stop-shop. The same file sent again is the same event; an updated notice is a new one.

Operation: ``tax.voucher`` sends the payment voucher back (``POST {voucher_path}`` with the key
in the body); the authority de-duplicates a voucher by dossier and notice number, so the
operation is safe to retry. 401 is ``upstream.rejected`` (an operator must fix the key); 400,
404 (no notice for the dossier) and 422 (not the notice's amount) are ``upstream.rejected`` with
the authority's message in ``detail``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

from lxml import etree
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapters.base import (
    Adapter,
    BusError,
    CallbackReply,
    Context,
    Event,
    Inbound,
    Resources,
    Unauthenticated,
    UpstreamBadResponse,
    UpstreamRejected,
    callback,
    operation,
    raise_for_upstream_status,
)
from adapters.wire import from_wire_time, safe_xml_parser, to_wire_time
from schemas.tax import TaxNotice, TaxNoticeItem, TaxVoucher, VoucherReceipt

__all__ = ["TaxAdapter", "TaxOptions", "parse_notice"]

NOTICE_DATE = "%d/%m/%Y"
MAX_VND = 10**13


class TaxOptions(BaseModel):
    """The ``options:`` of a tax link service in bus.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    notice_consumer: str = Field(
        min_length=1, description="The consumer (land registry one-stop-shop) given tax.notice."
    )
    voucher_path: str = Field(default="/api/v1/chungtu", description="Where vouchers go.")
    notice_service: str = Field(default="ThongBaoThue", description="Service of a notice push.")


def _text(node: Any, tag: str) -> str:
    found = node.find(tag)
    if found is None or not (found.text or "").strip():
        raise ValueError(f"{tag} is missing")
    return str(found.text).strip()


def parse_notice(xml: bytes) -> tuple[str, list[TaxNoticeItem]]:
    """(dossier code, items) of a notice file; ``ValueError`` naming what is wrong."""
    try:
        root = etree.fromstring(xml, safe_xml_parser())
    except etree.XMLSyntaxError as exc:
        raise ValueError("FileThongBaoThue is not well-formed XML") from exc
    if root.getroottree().docinfo.doctype:  # no DTD: entities would change the values read
        raise ValueError("FileThongBaoThue may not have a DOCTYPE")
    rows = root.find("BODY/ROW_LIST") if root.tag == "DATA" else None
    if rows is None:
        raise ValueError("FileThongBaoThue has no /DATA/BODY/ROW_LIST")
    dossier = _text(rows, "MA_HSO")
    items = []
    for entry in rows.findall("LIST"):
        amount = _text(entry, "SO_TIEN")
        if not (amount.isascii() and amount.isdigit()) or int(amount) > MAX_VND:
            raise ValueError("SO_TIEN is not an integer amount of VND")
        try:
            decided = datetime.strptime(_text(entry, "NGAY_QUYET_DINH"), NOTICE_DATE).date()
        except ValueError as exc:
            raise ValueError("NGAY_QUYET_DINH is not a dd/MM/yyyy date") from exc
        items.append(
            TaxNoticeItem(
                tax_code=_text(entry, "MA_SO_THUE"),
                decision_no=_text(entry, "SO_QUYET_DINH"),
                decision_date=decided,
                item_name=_text(entry, "TEN_TIEUMUC"),
                amount=int(amount),
            )
        )
    if not items:
        raise ValueError("the notice has no LIST item")
    return dossier, items


class TaxAdapter(Adapter):
    description = "The tax authority's link for land financial obligations"
    Options = TaxOptions

    options: TaxOptions

    async def start(self, resources: Resources) -> None:
        if "security_key" not in resources.credentials:
            raise ValueError(
                f"service {resources.service!r}: the tax link needs the credential security_key"
            )
        self._key = resources.credentials["security_key"]

    @operation("tax.voucher", input=TaxVoucher, output=VoucherReceipt)
    async def voucher(self, req: TaxVoucher, ctx: Context) -> VoucherReceipt:
        """Send a payment voucher for a tax notice back to the tax authority."""
        message = {
            "SecurityKey": self._key,
            "MaHoSo": req.dossier_code,
            "MaSoThue": req.tax_code,
            "HoTenNguoiNopTien": req.payer_name,
            "SoCMTNguoiNopTien": req.payer_id,
            "DiaChiNguoiNopTien": req.payer_address,
            "ThongTinThanhToan": {
                "NoiDungThanhToan": req.description,
                "ThoiGianThanhToan": to_wire_time(req.paid_at),
                "MaThongBaoThue": req.notice_no,
                "TrangThaiThanhToan": 1,
                "SoTien": req.amount,
            },
        }
        body = json.dumps(message, ensure_ascii=False).encode()
        response = await ctx.http.post(
            ctx.upstream.base_url + self.options.voucher_path,
            content=body,
            headers={"Content-Type": "application/json"},
            timeout=ctx.upstream.http_timeout,
        )
        ctx.note_exchange("voucher", body, response)
        status = response.status_code
        if status in (400, 401, 404, 422):
            try:
                said = str(response.json().get("Message", ""))[:500]
            except (ValueError, AttributeError):
                said = ""
            why = {
                401: "the tax authority refused the bus's security key: an operator must fix it",
                404: "the tax authority issued no notice for this dossier",
                422: "the amount is not the notice's amount",
            }.get(status, "the tax authority refused the voucher")
            raise UpstreamRejected(why, detail={"upstream_status": status, "message": said})
        raise_for_upstream_status(response)
        try:
            reply = response.json()
            voucher_id = reply["MaChungTu"]
        except (ValueError, KeyError, TypeError) as exc:
            raise UpstreamBadResponse("the tax authority's reply has no MaChungTu") from exc
        return VoucherReceipt(dossier_code=req.dossier_code, voucher_id=str(voucher_id))

    @staticmethod
    def _refused(status: int, text: str, error: BusError, kept: bytes) -> CallbackReply:
        return CallbackReply(
            body={"Status": "ERROR", "Message": text},
            status=status,
            refused=error,
            recorded_body=kept,
        )

    @callback(events={"tax.notice": TaxNotice}, description="The tax authority's notice")
    async def notice(self, inbound: Inbound, ctx: Context) -> CallbackReply:
        """A notice of land financial obligation, for the land registry's one-stop-shop."""
        try:
            message = json.loads(inbound.body)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            return self._refused(400, "Body: not JSON", UpstreamBadResponse("not JSON"), b"")
        # The record never keeps the shared key, right or wrong.
        kept = json.dumps({**message, "SecurityKey": "[removed]"}, ensure_ascii=False).encode()
        key = message.get("SecurityKey")
        if not isinstance(key, str) or not hmac.compare_digest(key.encode(), self._key.encode()):
            return self._refused(
                401, "Error Security Code", Unauthenticated("wrong SecurityKey"), kept
            )
        if message.get("Service") != self.options.notice_service:
            error = UpstreamBadResponse(f"Service is not {self.options.notice_service}")
            return self._refused(
                400, f"Service: expected {self.options.notice_service}", error, kept
            )
        data = message.get("Data")
        encoded = data.get("FileThongBaoThue") if isinstance(data, dict) else None
        try:
            xml = base64.b64decode(str(encoded), validate=True) if encoded else b""
            dossier, items = parse_notice(xml)
        except ValidationError:  # before ValueError, its base: its text may quote the values
            text = "a field of the notice is invalid"
        except binascii.Error:
            text = "not base64"
        except ValueError as exc:  # parse_notice's own words: names the element, no value
            text = str(exc)
        else:
            text = ""
        if text:
            return self._refused(400, f"FileThongBaoThue: {text}", UpstreamBadResponse(text), kept)
        issued = message.get("Ngay")
        try:
            issued_at = from_wire_time(issued) if isinstance(issued, str) else None
        except ValueError:
            issued_at = None
        notice = TaxNotice(
            dossier_code=dossier,
            items=items,
            total=sum(item.amount for item in items),
            updating=message.get("IsUpdating") is True,
            issued_at=issued_at,
        )
        fact = f"{dossier}:{hashlib.sha256(xml).hexdigest()[:32]}"
        return CallbackReply(
            body={"Status": "OK", "Message": "Đã nhận thông báo thuế", "MaHoSo": dossier},
            recorded_body=kept,
            events=(
                Event(
                    type="tax.notice",
                    consumer=self.options.notice_consumer,
                    key=fact,
                    data=notice,
                    order_key=dossier,
                ),
            ),
            reference=dossier,
        )
