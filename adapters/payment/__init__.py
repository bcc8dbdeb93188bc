"""PayGov, the national online payment platform: REST JSON with a per-message checksum.

Operations (canonical models in ``schemas/payment.py``):

- ``payment.create``  -> ``INIT``: returns the page where the citizen pays (``UrlThanhToan``)
- ``payment.status``  -> ``QUERY``: ``TrangThaiGD`` 00 paid, 01 pending, 02 failed
- ``payment.receipt`` -> ``GET_BILL``: the PDF e-receipt, base64

Inbound: PayGov's confirmation reaches ``POST /v1/callbacks/{service}``. The handler checks
``MaDoiTac`` and ``MaXacThuc``, finds which consumer created the payment (remembered in the
service's state by ``payment.create``, before PayGov ever hears of the reference), and answers
PayGov ``MaLoi`` "00" with a signed reply. The bus then delivers ``payment.confirmed`` (or
``payment.failed``) to that consumer's webhook through the store-and-forward queue, once per
reference: PayGov repeating the confirmation changes nothing and still gets "00". Anything
wrong (checksum, partner, unknown reference, another amount) gets "99" and is recorded as
refused; PayGov may then repeat it, which is harmless.

Every message carries ``Authorization: Bearer <token>`` (credential ``token``) and
``MaXacThuc`` over its fields (credential ``secret``; algorithm in ``options.checksum``, see
:mod:`adapters.payment.checksum`). Amounts are integers of VND on both sides.

Errors: error_code 01 (checksum) and HTTP 401 are ``upstream.rejected`` (an operator must fix
the credentials or the algorithm); 02 (reference reused with another amount), 03 (unknown
reference), 04 (invalid field), 05 (not paid yet) are ``upstream.rejected`` with PayGov's code
and message in ``detail``; 429/5xx are ``upstream.unavailable``/``upstream.fault``.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

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
from adapters.payment.checksum import (
    CALLBACK_FIELDS,
    CALLBACK_REPLY_FIELDS,
    INIT_FIELDS,
    QUERY_FIELDS,
    Algorithm,
    sign,
    verify,
)
from adapters.wire import from_wire_time, to_wire_time
from schemas.payment import (
    PaymentConfirmed,
    PaymentCreate,
    PaymentCreated,
    PaymentQuery,
    PaymentState,
    PaymentStatus,
    Receipt,
)

__all__ = ["PaygovAdapter", "PaygovOptions"]

_REFERENCE = re.compile(r"[A-Za-z0-9._-]{1,50}")
_CODE = re.compile(r"[0-9]{2}")
_STATES = {"00": PaymentState.PAID, "01": PaymentState.PENDING, "02": PaymentState.FAILED}
_MEANINGS = {
    "01": "PayGov refused the checksum: check the secret and the checksum algorithm",
    "02": "this reference was already used for a payment with another amount",
    "03": "PayGov knows no payment with this reference",
    "04": "PayGov refused a field of the request",
    "05": "the payment is not paid yet: no receipt exists",
    "06": "PayGov does not accept this message type or version",
}


def _reference(message: dict[str, Any]) -> str:
    """The message's MaThamChieu if it can be a reference, else "" (never echoed or signed)."""
    value = message.get("MaThamChieu")
    return value if isinstance(value, str) and _REFERENCE.fullmatch(value) else ""


class PaygovOptions(BaseModel):
    """The ``options:`` of a PayGov service in bus.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(default="/api/v1/payment", description="PayGov's message endpoint.")
    partner_code: str = Field(min_length=1, description="MaDoiTac: the province's partner code.")
    version: str = Field(default="1.0.6", description="PhienBan")
    checksum: Algorithm = Field(default="sha256", description="sha256 or hmac-sha256.")
    channel: str = Field(default="WEB", description="MaKenhThanhToan")
    device: str = Field(default="", description="MaThietBi")
    language: str = Field(default="vi-VN", description="NgonNgu")
    agency_code: str = Field(default="", description="MaDonVi when the request names none.")
    agency_name: str = Field(default="", description="TenDonVi when the request names none.")
    beneficiary_account: str = Field(default="", description="TKThuHuong")
    beneficiary_bank: str = Field(default="", description="MaNHThuHuong")
    beneficiary_name: str = Field(default="", description="TenTKThuHuong")
    service_code: str = Field(default="", description="MaDichVu")
    callback_type: str = Field(
        default="NOTIFY", description="LoaiBanTin of PayGov's payment confirmation."
    )
    client_ip: str = Field(
        default="127.0.0.1", description="Ip sent when the request names no citizen device."
    )


class PaygovAdapter(Adapter):
    description = "PayGov, the national online payment platform (REST JSON with checksums)"
    Options = PaygovOptions

    options: PaygovOptions

    async def start(self, resources: Resources) -> None:
        missing = [name for name in ("token", "secret") if name not in resources.credentials]
        if missing:
            raise ValueError(
                f"service {resources.service!r}: PayGov needs the credentials token and secret "
                f"(missing: {', '.join(missing)})"
            )
        self._token = resources.credentials["token"]
        self._secret = resources.credentials["secret"]

    # -- talking to PayGov -----------------------------------------------------------------

    def _sign(self, message: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
        message["MaXacThuc"] = sign(message, fields, self._secret, self.options.checksum)
        return message

    async def _send(self, message: dict[str, Any], ctx: Context) -> httpx.Response:
        body = json.dumps(message, ensure_ascii=False).encode()
        response = await ctx.http.post(
            ctx.upstream.base_url + self.options.path,
            content=body,
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
            timeout=ctx.upstream.http_timeout,
        )
        ctx.note_exchange(message["LoaiBanTin"], body, response)
        if response.status_code == 401:
            raise UpstreamRejected(
                "PayGov refused the bus's token: an operator must check the credentials",
                detail={"upstream_status": 401},
            )
        raise_for_upstream_status(response)
        return response

    @staticmethod
    def _answer(response: httpx.Response) -> dict[str, Any]:
        """The JSON inside ``message`` of a successful reply, or the catalogue error."""
        try:
            reply = response.json()
            code = str(reply["error_code"])
            message = reply.get("message")
        except (ValueError, KeyError, TypeError) as exc:
            raise UpstreamBadResponse("PayGov's reply is not its JSON envelope") from exc
        if code != "0":
            meaning = _MEANINGS.get(code, "PayGov refused the request")
            raise UpstreamRejected(
                meaning, detail={"error_code": code, "message": str(message or "")[:500]}
            )
        try:
            inner = json.loads(message) if isinstance(message, str) else message
        except ValueError as exc:
            raise UpstreamBadResponse("PayGov's message is not JSON") from exc
        if not isinstance(inner, dict):
            raise UpstreamBadResponse("PayGov's message is not a JSON object")
        return inner

    def _query(self, kind: str, reference: str, ctx: Context) -> dict[str, Any]:
        message = {
            "LoaiBanTin": kind,
            "PhienBan": self.options.version,
            "MaDoiTac": self.options.partner_code,
            "MaThamChieu": reference,
            "ThoiGianGD": to_wire_time(ctx.clock.now()),
        }
        return self._sign(message, QUERY_FIELDS)

    # -- who owns a payment ------------------------------------------------------------------

    @staticmethod
    async def _owned(reference: str, ctx: Context) -> dict[str, Any]:
        """The remembered payment of ``reference``, refused unless the caller created it: a
        receipt names the payer, and another consumer's payment is none of its business."""
        known = await ctx.state.get(f"payment:{reference}")
        payment: dict[str, Any] | None = json.loads(known) if known is not None else None
        if payment is None or payment["consumer"] != ctx.consumer.id:
            raise UpstreamRejected(
                "this consumer created no payment with this reference through the bus",
                detail={"reason": "not_yours"},
            )
        return payment

    async def _claim(self, req: PaymentCreate, ctx: Context) -> None:
        """Remember the payment (consumer, dossier, amount) before PayGov hears of it, so that a
        confirmation always finds its consumer; atomically, and never over another one."""
        key = f"payment:{req.reference}"
        mine = {"consumer": ctx.consumer.id, "dossier": req.dossier_code, "amount": req.amount}
        if await ctx.state.put_new(key, json.dumps(mine)):
            return
        known = json.loads(await ctx.state.get(key) or "{}")
        if known.get("consumer") != ctx.consumer.id:
            raise UpstreamRejected(
                "this payment reference belongs to another consumer",
                detail={"reason": "reference_taken"},
            )
        if known.get("amount") != req.amount:  # PayGov would refuse it (02): refused first
            raise UpstreamRejected(
                _MEANINGS["02"], detail={"error_code": "02", "reason": "reference_reused"}
            )

    # -- operations --------------------------------------------------------------------------

    @operation("payment.create", input=PaymentCreate, output=PaymentCreated)
    async def create(self, req: PaymentCreate, ctx: Context) -> PaymentCreated:
        """Start a payment; the reply's payment_url is where the citizen pays."""
        await self._claim(req, ctx)
        o = self.options
        message: dict[str, Any] = {
            "LoaiBanTin": "INIT",
            "PhienBan": o.version,
            "MaDoiTac": o.partner_code,
            "MaThamChieu": req.reference,
            "SoTien": req.amount,
            "LoaiHinhThanhToan": "PAY",
            "MaKenhThanhToan": o.channel,
            "MaThietBi": o.device,
            "NgonNgu": o.language,
            "MaTienTe": "VND",
            "MaNganHang": req.bank_code,
            "ThongTinGiaoDich": req.description,
            "ThoiGianGD": to_wire_time(ctx.clock.now()),
            "Ip": str(req.client_ip or o.client_ip),
            "ThongTinBienLai": {
                "MaDichVu": o.service_code,
                "MaDVC": req.service_code or "",
                "TenDVC": req.service_name or "",
                "MaTTHC": req.procedure_code or "",
                "MaDonVi": req.agency_code or o.agency_code,
                "TenDonVi": req.agency_name or o.agency_name,
                "MaHoSo": req.dossier_code,
                "TKThuHuong": o.beneficiary_account,
                "MaNHThuHuong": o.beneficiary_bank,
                "TenTKThuHuong": o.beneficiary_name,
                "HoTenNguoiNop": req.payer.name,
                "SoCMNDNguoiNop": req.payer.id_number or "",
                "DiaChiNguoiNop": req.payer.address or "",
                "NoiDungThanhToan": req.description,
                "PhiLePhi": [
                    {
                        "LoaiPhiLePhi": f.kind,
                        "MaPhiLePhi": f.code,
                        "TenPhiLePhi": f.name,
                        "SoTien": f.amount,
                    }
                    for f in req.fees
                ],
                "DSKhoanNop": [{"NoiDung": i.description, "SoTien": i.amount} for i in req.items],
            },
        }
        answer = self._answer(await self._send(self._sign(message, INIT_FIELDS), ctx))
        try:
            return PaymentCreated(
                reference=req.reference,
                transaction_id=str(answer["MaGiaoDich"]),
                payment_url=str(answer["UrlThanhToan"]),
                amount=req.amount,
            )
        except KeyError as exc:
            raise UpstreamBadResponse(f"PayGov's INIT reply has no {exc.args[0]}") from exc

    @operation("payment.status", input=PaymentQuery, output=PaymentStatus)
    async def status(self, req: PaymentQuery, ctx: Context) -> PaymentStatus:
        """Where a payment stands: pending, paid or failed."""
        await self._owned(req.reference, ctx)
        answer = self._answer(await self._send(self._query("QUERY", req.reference, ctx), ctx))
        state = _STATES.get(str(answer.get("TrangThaiGD")))
        amount = answer.get("SoTien")
        if state is None or not isinstance(amount, int) or isinstance(amount, bool):
            raise UpstreamBadResponse("PayGov's QUERY reply has no usable state or amount")
        completed = answer.get("ThoiGianGD")
        try:
            completed_at = from_wire_time(completed) if completed else None
        except (TypeError, ValueError) as exc:
            raise UpstreamBadResponse("PayGov's QUERY reply has an unreadable time") from exc
        return PaymentStatus(
            reference=req.reference,
            transaction_id=answer.get("MaGiaoDich"),
            amount=amount,
            state=state,
            completed_at=completed_at,
            bank_code=answer.get("MaNganHang") or None,
        )

    @operation("payment.receipt", input=PaymentQuery, output=Receipt)
    async def receipt(self, req: PaymentQuery, ctx: Context) -> Receipt:
        """The PDF e-receipt of a paid payment."""
        await self._owned(req.reference, ctx)
        response = await self._send(self._query("GET_BILL", req.reference, ctx), ctx)
        media = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/pdf":
            self._answer(response)  # an error envelope: raises its error
            raise UpstreamBadResponse("PayGov answered GET_BILL without a PDF")
        content = response.content
        if not content.startswith(b"%PDF-"):
            raise UpstreamBadResponse("PayGov's receipt is not a PDF")
        return Receipt(
            reference=req.reference,
            size=len(content),
            content_base64=base64.b64encode(content).decode(),
        )

    # -- the confirmation callback -----------------------------------------------------------

    def _reply(self, code: str, text: str, message: dict[str, Any], ctx: Context) -> dict[str, Any]:
        reply = {
            "MaLoi": code,
            "MoTaLoi": text,
            "MaDoiTac": self.options.partner_code,
            "MaThamChieu": _reference(message),
            "ThoiGianGD": to_wire_time(ctx.clock.now()),
        }
        return self._sign(reply, CALLBACK_REPLY_FIELDS)

    def _refuse(
        self, error: BusError, message: dict[str, Any], ctx: Context, reference: str | None
    ) -> CallbackReply:
        body = self._reply("99", error.message, message, ctx)
        return CallbackReply(body=body, refused=error, reference=reference)

    @callback(
        events={"payment.confirmed": PaymentConfirmed, "payment.failed": PaymentConfirmed},
        description="PayGov's payment confirmation",
    )
    async def confirmation(self, inbound: Inbound, ctx: Context) -> CallbackReply:
        """PayGov's payment confirmation: checked, then delivered to the consumer's webhook."""
        try:
            message = json.loads(inbound.body)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            return self._refuse(UpstreamBadResponse("the confirmation is not JSON"), {}, ctx, None)
        reference = _reference(message) or None
        if message.get("LoaiBanTin") != self.options.callback_type or not (
            isinstance(message.get("MaLoi"), str) and _CODE.fullmatch(message["MaLoi"])
        ):
            error: BusError = UpstreamBadResponse("not a payment confirmation (LoaiBanTin, MaLoi)")
            return self._refuse(error, message, ctx, reference)
        if message.get("MaDoiTac") != self.options.partner_code:
            error = Unauthenticated("the confirmation names another partner (MaDoiTac)")
            return self._refuse(error, message, ctx, reference)
        if not verify(message, CALLBACK_FIELDS, self._secret, self.options.checksum):
            error = Unauthenticated("the confirmation's checksum (MaXacThuc) is wrong")
            return self._refuse(error, message, ctx, reference)
        known = await ctx.state.get(f"payment:{reference}") if reference else None
        if known is None:
            error = UpstreamRejected("no payment of this bus has this reference (MaThamChieu)")
            return self._refuse(error, message, ctx, reference)
        payment = json.loads(known)
        amount = message.get("SoTien")
        if isinstance(amount, str) and amount.isdigit():
            amount = int(amount)
        if amount != payment["amount"]:
            error = UpstreamRejected("the confirmed amount (SoTien) is not the payment's amount")
            return self._refuse(error, message, ctx, reference)
        try:
            completed_at = from_wire_time(str(message.get("ThoiGianGD")))
        except ValueError:
            error = UpstreamBadResponse("the confirmation's time (ThoiGianGD) is unreadable")
            return self._refuse(error, message, ctx, reference)
        assert reference is not None
        paid = message.get("MaLoi") == "00"
        event = PaymentConfirmed(
            reference=reference,
            dossier_code=payment.get("dossier"),
            transaction_id=str(message.get("MaGiaoDich") or ""),
            amount=payment["amount"],
            state=PaymentState.PAID if paid else PaymentState.FAILED,
            bank_code=message.get("MaNganHang") or None,
            completed_at=completed_at,
            platform_code=str(message.get("MaLoi")),
        )
        # One confirmation per reference; each failed attempt (its own MaGiaoDich) is a fact of
        # its own. A reference's events reach the consumer in the order they came.
        kind = "payment.confirmed" if paid else "payment.failed"
        key = reference if paid else f"{reference}:failed:{event.transaction_id}"
        return CallbackReply(
            body=self._reply("00", "Thành công", message, ctx),
            events=(
                Event(
                    type=kind,
                    consumer=payment["consumer"],
                    key=key,
                    data=event,
                    order_key=reference,
                ),
            ),
            reference=reference,
        )
