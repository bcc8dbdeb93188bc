"""The PayGov mock app: the partner API, the payment page, the callbacks and admin helpers."""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, Literal

import httpx
from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from adapters.payment.checksum import INIT_FIELDS, QUERY_FIELDS, Algorithm, verify
from mocks.faults import install_faults
from mocks.paygov import receipt
from mocks.paygov._messages import VERSION, InitMessage, QueryMessage, problems
from mocks.paygov._state import CallbackSender, Payment, PaymentStore, stamp

__all__ = [
    "API_PATH",
    "DEMO_PARTNER",
    "FAULTS_ENV_VAR",
    "PartnerSettings",
    "PaygovSettings",
    "create_app",
]

_log = logging.getLogger("mocks.paygov")

#: The one partner endpoint (a guess: PLATFORMS.md names no path).
API_PATH = "/api/v1/payment"
#: Start-up fault rules for this mock alone, tried before the shared ``LGSP_MOCK_FAULTS``.
FAULTS_ENV_VAR = "LGSP_MOCK_FAULTS_PAYGOV"
DEMO_PARTNER = "LGSP_DEMO"
DEFAULT_BANK = "VCB"  # MaNganHang of a completion when neither the INIT nor the admin names one
KINDS = ("INIT", "QUERY", "GET_BILL")

OK = "0"
BAD_CHECKSUM = "01"
REFERENCE_REUSED = "02"
UNKNOWN_REFERENCE = "03"
BAD_FIELD = "04"
NOT_PAID = "05"
UNSUPPORTED = "06"
#: TrangThaiGD in a QUERY reply (a guess).
TRANSACTION_STATES = {"paid": "00", "pending": "01", "failed": "02"}

Sleep = Callable[[float], Awaitable[None]]
PartnerQuery = Annotated[str | None, Query(alias="MaDoiTac")]


class PartnerSettings(BaseModel):
    """One partner (MaDoiTac) of PayGov."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1)  # the bearer token the partner sends
    secret: str = Field(min_length=1)  # its checksum secret
    callback_url: str | None = None  # where confirmations go; none: no callback


def _demo_partners() -> dict[str, PartnerSettings]:
    return {
        DEMO_PARTNER: PartnerSettings(
            token="paygov-demo-token",  # noqa: S106 - a mock's published demo credential
            secret="paygov-demo-secret",  # noqa: S106 - same
        )
    }


class PaygovSettings(BaseModel):
    """Partners, checksum algorithm, public address and the callback retry plan."""

    model_config = ConfigDict(extra="forbid")

    partners: dict[str, PartnerSettings] = Field(default_factory=_demo_partners)
    checksum: Algorithm = "sha256"
    public_url: str | None = None  # base of UrlThanhToan; default: the URL the request came to
    callback_backoff: list[Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: [1.0, 2.0, 4.0, 8.0, 16.0]
    )  # seconds between callback attempts; len + 1 attempts at most
    callback_timeout: float = Field(default=10.0, gt=0)  # seconds, per callback attempt

    @model_validator(mode="after")
    def _tokens_unique(self) -> PaygovSettings:
        tokens = [partner.token for partner in self.partners.values()]
        if len(set(tokens)) != len(tokens):
            raise ValueError("each partner needs its own token: the token names the partner")
        return self


class _Complete(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Literal["paid", "failed"] = "paid"
    bank: str | None = Field(default=None, min_length=1)


class _PartnerUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    callback_url: str | None


def _answer(code: str, message: str | dict[str, Any]) -> JSONResponse:
    text = message if isinstance(message, str) else json.dumps(message, ensure_ascii=False)
    return JSONResponse({"error_code": code, "message": text})


def _unauthorized(message: str) -> JSONResponse:
    return JSONResponse(
        {"error_code": "401", "message": message},
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="paygov"'},
    )


def _bearer_token(header: str | None) -> str | None:
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def _vnd(amount: int) -> str:
    return f"{amount:,}".replace(",", ".") + " VND"


def create_app(
    settings: PaygovSettings | None = None,
    *,
    sleep: Sleep = asyncio.sleep,
    http: httpx.AsyncClient | None = None,
) -> FastAPI:
    """The PayGov mock. ``sleep`` waits between callback attempts; ``http`` (tests) is the
    client callbacks are sent with, instead of the one the lifespan opens (the caller closes
    it). The callback sender is ``app.state.callbacks``; ``await
    app.state.callbacks.join()`` waits until no callback is in flight."""
    settings = settings or PaygovSettings()
    partners = settings.partners
    store = PaymentStore()
    sender = CallbackSender(
        secrets_by_partner={code: partner.secret for code, partner in partners.items()},
        callback_urls={code: partner.callback_url for code, partner in partners.items()},
        algorithm=settings.checksum,
        backoff=tuple(settings.callback_backoff),
        timeout=settings.callback_timeout,
        sleep=sleep,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if http is None:
                client = httpx.AsyncClient(timeout=settings.callback_timeout, trust_env=False)
                sender.client = await stack.enter_async_context(client)
            else:
                sender.client = http
            try:
                yield
            finally:
                await sender.close()
                sender.client = None

    app = FastAPI(title="Mock: PayGov", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.callbacks = sender
    app.state.payments = store

    def base_url(request: Request) -> str:
        return (settings.public_url or str(request.base_url)).rstrip("/")

    def partner_of(request: Request) -> str | None:
        token = _bearer_token(request.headers.get("authorization"))
        if token is None:
            return None
        for code, partner in partners.items():
            if secrets.compare_digest(partner.token.encode(), token.encode()):
                return code
        return None

    @app.post(API_PATH)
    async def payment_api(request: Request) -> Response:
        """INIT, QUERY and GET_BILL, told apart by LoaiBanTin."""
        partner = partner_of(request)
        if partner is None:
            return _unauthorized("Missing or unknown bearer token")
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _answer(BAD_FIELD, "body: not valid JSON")
        if not isinstance(body, dict):
            return _answer(BAD_FIELD, "body: must be a JSON object")
        for name, supported in (("LoaiBanTin", KINDS), ("PhienBan", (VERSION,))):
            value = body.get(name)
            if not isinstance(value, str) or not value:
                return _answer(BAD_FIELD, f"{name}: Field required (a non-empty string)")
            if value not in supported:
                return _answer(UNSUPPORTED, f"{name}: {value!r} is not supported")
        kind = body["LoaiBanTin"]
        model: type[InitMessage | QueryMessage] = InitMessage if kind == "INIT" else QueryMessage
        try:
            message = model.model_validate(body)
        except ValidationError as exc:
            return _answer(BAD_FIELD, problems(exc))
        if message.MaDoiTac != partner:
            return _unauthorized("The bearer token does not belong to MaDoiTac")
        fields = INIT_FIELDS if kind == "INIT" else QUERY_FIELDS
        if not verify(body, fields, partners[partner].secret, settings.checksum):
            _log.info("paygov %s refused: partner=%s code=%s", kind, partner, BAD_CHECKSUM)
            return _answer(BAD_CHECKSUM, "MaXacThuc: checksum is wrong")
        if isinstance(message, InitMessage):
            return init(request, message)
        payment = store.get(partner, message.MaThamChieu)
        if payment is None:
            return _answer(UNKNOWN_REFERENCE, f"MaThamChieu {message.MaThamChieu!r} is unknown")
        if kind == "QUERY":
            return _answer(
                OK,
                {
                    "MaThamChieu": payment.reference,
                    "MaGiaoDich": payment.transaction_id,
                    "SoTien": payment.amount,
                    "TrangThaiGD": TRANSACTION_STATES[payment.state],
                    "ThoiGianGD": payment.completed_at,
                    "MaNganHang": payment.bank,
                },
            )
        if payment.state != "paid":
            return _answer(NOT_PAID, f"MaThamChieu {payment.reference!r} is {payment.state}")
        return Response(
            _receipt_pdf(payment),
            media_type="application/pdf",
            headers={
                "Content-Disposition": f'inline; filename="bienlai-{payment.transaction_id}.pdf"'
            },
        )

    def init(request: Request, message: InitMessage) -> JSONResponse:
        payment = store.get(message.MaDoiTac, message.MaThamChieu)
        if payment is None:
            payment = store.add(message)
            _log.info("paygov payment created: partner=%s", payment.partner)
        else:
            differences = payment.differences(message)
            if differences:
                return _answer(
                    REFERENCE_REUSED,
                    f"MaThamChieu {message.MaThamChieu!r} was used with another "
                    + ", ".join(differences),
                )
        return _answer(
            OK,
            {
                "MaThamChieu": payment.reference,
                "MaGiaoDich": payment.transaction_id,
                "UrlThanhToan": f"{base_url(request)}/pay/{payment.page_id}",
            },
        )

    def complete(payment: Payment, outcome: Literal["paid", "failed"], bank: str | None) -> None:
        payment.state = outcome
        payment.completed_at = stamp()
        payment.bank = bank or payment.bank or DEFAULT_BANK
        sender.start(payment)

    @app.get("/pay/{page_id}", response_class=HTMLResponse)
    async def pay_page(page_id: str) -> HTMLResponse:
        """The page UrlThanhToan leads to."""
        payment = store.by_page(page_id)
        if payment is None:
            return _html_page("Không tìm thấy giao dịch", "<p>Liên kết không hợp lệ.</p>", 404)
        return _html_page("Thanh toán trực tuyến — PayGov (mock)", _payment_body(payment))

    @app.post("/pay/{page_id}/complete", response_class=HTMLResponse)
    async def pay_complete(page_id: str) -> HTMLResponse:
        return finish_from_page(page_id, "paid")

    @app.post("/pay/{page_id}/fail", response_class=HTMLResponse)
    async def pay_fail(page_id: str) -> HTMLResponse:
        return finish_from_page(page_id, "failed")

    def finish_from_page(page_id: str, outcome: Literal["paid", "failed"]) -> HTMLResponse:
        payment = store.by_page(page_id)
        if payment is None:
            return _html_page("Không tìm thấy giao dịch", "<p>Liên kết không hợp lệ.</p>", 404)
        if payment.state != "pending":
            return _html_page(
                "Giao dịch đã kết thúc", f"<p>Trạng thái: {payment.state}.</p>", status=409
            )
        complete(payment, outcome, None)
        if outcome == "paid":
            title, text = "Thanh toán thành công", "Giao dịch đã được thanh toán."
        else:
            title, text = "Giao dịch đã hủy", "Bạn đã hủy giao dịch."
        body = (
            f"<p>{html.escape(text)}</p><p>Mã giao dịch: "
            f"<b>{html.escape(payment.transaction_id)}</b></p>"
        )
        return _html_page(title, body)

    # --- admin -------------------------------------------------------------------------------

    def one_payment(reference: str, partner: str | None) -> Payment | JSONResponse:
        found = store.find(reference, partner)
        if not found:
            return JSONResponse({"error": "unknown MaThamChieu"}, status_code=404)
        if len(found) > 1:
            return JSONResponse(
                {"error": "several partners use this MaThamChieu; add ?MaDoiTac="},
                status_code=409,
            )
        return found[0]

    @app.get("/__admin/payments")
    async def list_payments(request: Request) -> list[dict[str, Any]]:
        return [payment.as_json(base_url(request)) for payment in store.all()]

    @app.post("/__admin/payments/{reference}/complete")
    async def admin_complete(
        request: Request, reference: str, partner: PartnerQuery = None
    ) -> JSONResponse:
        """Complete a pending payment: body ``{"outcome": "paid"|"failed", "bank": "..."}``,
        both optional."""
        raw = await request.body()
        try:
            order = _Complete.model_validate_json(raw) if raw.strip() else _Complete()
        except ValidationError as exc:
            return JSONResponse({"error": problems(exc)}, status_code=400)
        payment = one_payment(reference, partner)
        if isinstance(payment, JSONResponse):
            return payment
        if payment.state != "pending":
            return JSONResponse(
                {"error": f"payment already {payment.state}", **payment.as_json(base_url(request))},
                status_code=409,
            )
        complete(payment, order.outcome, order.bank)
        return JSONResponse(payment.as_json(base_url(request)))

    @app.post("/__admin/payments/{reference}/resend-callback")
    async def resend_callback(reference: str, partner: PartnerQuery = None) -> JSONResponse:
        """Send the confirmation once more, now, and answer with that attempt."""
        payment = one_payment(reference, partner)
        if isinstance(payment, JSONResponse):
            return payment
        if payment.state == "pending":
            return JSONResponse({"error": "payment is still pending"}, status_code=409)
        attempt = await sender.send_once(payment, resend=True)
        if attempt is None:
            return JSONResponse({"error": "the partner has no callback_url"}, status_code=409)
        return JSONResponse(attempt.as_json())

    @app.get("/__admin/callbacks")
    async def list_callbacks() -> list[dict[str, Any]]:
        return [attempt.as_json() for attempt in sender.attempts]

    @app.put("/__admin/partners/{code}")
    async def update_partner(request: Request, code: str) -> JSONResponse:
        """Set a partner's callback URL at run time: body ``{"callback_url": "..."|null}``."""
        if code not in partners:
            return JSONResponse({"error": "unknown partner"}, status_code=404)
        try:
            update = _PartnerUpdate.model_validate_json(await request.body())
        except ValidationError as exc:
            return JSONResponse({"error": problems(exc)}, status_code=400)
        sender.callback_urls[code] = update.callback_url
        return JSONResponse({"MaDoiTac": code, "callback_url": update.callback_url})

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "payments": len(store.all())}

    # Last, so the fault middleware is the outermost one.
    install_faults(app, env_var=FAULTS_ENV_VAR)
    return app


def _html_page(title: str, body: str, status: int = 200) -> HTMLResponse:
    page = (
        '<!doctype html>\n<html lang="vi"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    )
    return HTMLResponse(page, status_code=status)


def _payment_body(payment: Payment) -> str:
    info = payment.receipt
    rows = [
        ("Mã tham chiếu", payment.reference),
        ("Mã giao dịch", payment.transaction_id),
        ("Số tiền", _vnd(payment.amount)),
        ("Nội dung", payment.init.ThongTinGiaoDich),
        ("Dịch vụ công", info.TenDVC or ""),
        ("Đơn vị thu", info.TenDonVi or ""),
        ("Mã hồ sơ", info.MaHoSo or ""),
        ("Trạng thái", payment.state),
    ]
    table = "".join(
        f"<tr><th>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>"
        for label, value in rows
        if value
    )
    items = [(fee.TenPhiLePhi or fee.MaPhiLePhi or "", fee.SoTien) for fee in info.PhiLePhi]
    items += [(part.NoiDung or "", part.SoTien) for part in info.DSKhoanNop]
    listed = "".join(
        f"<li>{html.escape(name)}: {html.escape(_vnd(amount))}</li>" for name, amount in items
    )
    out = f"<table>{table}</table>\n"
    if listed:
        out += f"<h2>Các khoản nộp</h2><ul>{listed}</ul>\n"
    if payment.state == "pending":
        out += (
            f'<form method="post" action="/pay/{payment.page_id}/complete">'
            '<button type="submit">Thanh toán</button></form>\n'
            f'<form method="post" action="/pay/{payment.page_id}/fail">'
            '<button type="submit">Hủy</button></form>'
        )
    return out


def _receipt_pdf(payment: Payment) -> bytes:
    """The e-receipt of a paid payment (text transliterated to ASCII by the PDF writer)."""
    info = payment.receipt
    when = payment.completed_at or ""
    shown = f"{when[6:8]}/{when[4:6]}/{when[0:4]} {when[8:10]}:{when[10:12]}:{when[12:14]}"
    lines = [
        f"Ma giao dich PayGov: {payment.transaction_id}",
        f"Ma tham chieu: {payment.reference}",
        f"Ma doi tac: {payment.partner}",
        f"So tien: {_vnd(payment.amount)}",
        f"Thoi gian thanh toan: {shown}",
        f"Ngan hang: {payment.bank}",
        f"Noi dung: {payment.init.ThongTinGiaoDich}",
    ]
    optional = [
        ("Don vi thu", info.TenDonVi),
        ("Dich vu cong", info.TenDVC),
        ("Thu tuc", info.MaTTHC),
        ("Ma ho so", info.MaHoSo),
        ("Nguoi nop", info.HoTenNguoiNop),
        ("Dia chi", info.DiaChiNguoiNop),
        ("Tai khoan thu huong", info.TKThuHuong),
        ("Noi dung thanh toan", info.NoiDungThanhToan),
    ]
    lines += [f"{label}: {value}" for label, value in optional if value]
    if info.PhiLePhi or info.DSKhoanNop:
        lines += ["", "Cac khoan nop:"]
        lines += [
            f"- {fee.TenPhiLePhi or fee.MaPhiLePhi or ''}: {_vnd(fee.SoTien)}"
            for fee in info.PhiLePhi
        ]
        lines += [f"- {part.NoiDung or ''}: {_vnd(part.SoTien)}" for part in info.DSKhoanNop]
    return receipt.one_page_pdf(
        lines, title="BIEN LAI THU TIEN DIEN TU (PayGov mock)", producer="PayGov mock"
    )
