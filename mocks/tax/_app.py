"""The tax link mock app: notices pushed to the province, vouchers received back, admin."""

from __future__ import annotations

import base64
import contextlib
import itertools
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Annotated, Any

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from adapters.wire import check_wire_time, to_wire_time
from mocks.faults import install_faults
from mocks.tax.notice import DATE_FORMAT, NoticeItem, notice_xml

__all__ = ["FAULTS_ENV_VAR", "SERVICE", "VOUCHER_PATH", "TaxSettings", "create_app"]

_log = logging.getLogger("mocks.tax")

#: Where the province posts payment vouchers (a guess: PLATFORMS.md names no path).
VOUCHER_PATH = "/api/v1/chungtu"
#: ``Service`` of a pushed notice (a guess).
SERVICE = "ThongBaoThue"
#: Start-up fault rules for this mock alone, tried before the shared ``LGSP_MOCK_FAULTS``.
FAULTS_ENV_VAR = "LGSP_MOCK_FAULTS_TAX"
SECURITY_ERROR = "Error Security Code"
#: Asia/Ho_Chi_Minh: UTC+7 all year round (no DST), so no tz database is needed.


class TaxSettings(BaseModel):
    """The shared key, where notices are pushed, and how long a push may take."""

    model_config = ConfigDict(extra="forbid")

    security_key: str = Field(default="tax-demo-key", min_length=1)
    notice_url: str | None = None  # the provincial bus's receiver; settable at run time
    push_timeout: float = Field(default=10.0, gt=0)  # seconds


def _paid(value: int) -> int:
    if value != 1:
        raise ValueError("must be 1 (paid): a voucher is only sent for a paid notice")
    return value


Text = Annotated[str, Field(min_length=1, max_length=500)]


class _Wire(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class PaymentInfo(_Wire):
    """``ThongTinThanhToan``."""

    NoiDungThanhToan: Text
    ThoiGianThanhToan: Annotated[str, AfterValidator(check_wire_time)]
    MaThongBaoThue: Text
    TrangThaiThanhToan: Annotated[int, AfterValidator(_paid)]  # 1 = paid, the only value
    SoTien: Annotated[int, Field(gt=0)]


class VoucherMessage(_Wire):
    """The payment voucher (chứng từ) the province sends back."""

    MaHoSo: Text
    MaSoThue: Text
    HoTenNguoiNopTien: Text
    SoCMTNguoiNopTien: Annotated[str, Field(pattern=r"^([0-9]{9}|[0-9]{12})$")]
    DiaChiNguoiNopTien: str | None = None
    ThongTinThanhToan: PaymentInfo


class _NoticeOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dossier_code: str = Field(min_length=1)
    items: list[NoticeItem] = Field(min_length=1)
    is_updating: bool = False


class _SettingsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    notice_url: str | None


@dataclass
class Notice:
    """One tax notice: the items of one dossier that share a SO_QUYET_DINH (its identity)."""

    dossier_code: str
    notice_id: str  # MaThongBaoThue = SO_QUYET_DINH
    tax_code: str
    decision_date: date
    items: list[NoticeItem]
    pushed_at: str
    push_status: int | None = None
    push_error: str | None = None

    @property
    def total(self) -> int:
        return sum(item.amount for item in self.items)

    def as_json(self) -> dict[str, Any]:
        return {
            "MaHoSo": self.dossier_code,
            "MaThongBaoThue": self.notice_id,
            "MaSoThue": self.tax_code,
            "NgayQuyetDinh": self.decision_date.strftime(DATE_FORMAT),
            "TongTien": self.total,
            "items": [item.model_dump(mode="json") for item in self.items],
            "pushed_at": self.pushed_at,
            "push_status": self.push_status,
            "push_error": self.push_error,
        }


@dataclass
class Store:
    notices: dict[tuple[str, str], Notice] = field(default_factory=dict)
    vouchers: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


def _stamp_now() -> str:
    return to_wire_time(datetime.now(UTC))


def _status(status: int, message: str, **extra: str) -> JSONResponse:
    body = {"Status": "OK" if status == 200 else "ERROR", "Message": message, **extra}
    return JSONResponse(body, status_code=status)


def _problems(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in error["loc"]) or "body"
        lines.append(f"{where}: {str(error['msg']).removeprefix('Value error, ')}")
    return "; ".join(lines)


def _group(order: _NoticeOrder) -> list[Notice] | str:
    """The notices in an order, one per SO_QUYET_DINH; a problem if one is inconsistent."""
    grouped: dict[str, list[NoticeItem]] = {}
    for item in order.items:
        grouped.setdefault(item.decision_no, []).append(item)
    notices = []
    now = _stamp_now()
    for decision_no, items in grouped.items():
        first = items[0]
        if any(
            i.tax_code != first.tax_code or i.decision_date != first.decision_date for i in items
        ):
            return f"items of SO_QUYET_DINH {decision_no!r} differ in tax_code or decision_date"
        notices.append(
            Notice(order.dossier_code, decision_no, first.tax_code, first.decision_date, items, now)
        )
    return notices


def create_app(
    settings: TaxSettings | None = None, *, http: httpx.AsyncClient | None = None
) -> FastAPI:
    """The tax link mock. ``http`` (tests) is the client notices are pushed with, instead of
    the one the lifespan opens (the caller closes it)."""
    settings = settings or TaxSettings()
    runtime: dict[str, str | None] = {"notice_url": settings.notice_url}
    store = Store()
    clients: list[httpx.AsyncClient] = []  # the push client while the lifespan runs

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if http is None:
                client = httpx.AsyncClient(timeout=settings.push_timeout, trust_env=False)
                clients.append(await stack.enter_async_context(client))
            else:
                clients.append(http)
            try:
                yield
            finally:
                clients.clear()

    app = FastAPI(title="Mock: tax link", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.post(VOUCHER_PATH)
    async def voucher(request: Request) -> JSONResponse:
        """A payment voucher for a notice."""
        try:
            body = await request.json()
        except ValueError:
            return _status(400, "body: not valid JSON")
        if not isinstance(body, dict):
            return _status(400, "body: must be a JSON object")
        key = body.get("SecurityKey")
        if not isinstance(key, str) or not secrets.compare_digest(
            key.encode(), settings.security_key.encode()
        ):
            return _status(401, SECURITY_ERROR)
        try:
            message = VoucherMessage.model_validate(body)
        except ValidationError as exc:
            return _status(400, _problems(exc))
        payment = message.ThongTinThanhToan
        dossier, notice_id = message.MaHoSo, payment.MaThongBaoThue
        if not any(d == dossier for d, _ in store.notices):
            return _status(404, f"MaHoSo {dossier!r}: no tax notice was issued for it")
        notice = store.notices.get((dossier, notice_id))
        if notice is None:
            return _status(404, f"MaThongBaoThue {notice_id!r}: no such notice for this MaHoSo")
        if message.MaSoThue != notice.tax_code:
            return _status(422, "MaSoThue: not the tax code of the notice")
        if payment.SoTien != notice.total:
            return _status(
                422, f"ThongTinThanhToan.SoTien: {payment.SoTien} differs from the notice total"
            )
        known = store.vouchers.get((dossier, notice_id))
        if known is not None:
            return _status(200, "Chứng từ đã được ghi nhận trước đó", MaChungTu=known["MaChungTu"])
        voucher_id = f"CT{next(store.numbers):010d}"
        record = message.model_dump()
        record.update(MaChungTu=voucher_id, received_at=_stamp_now())
        store.vouchers[(dossier, notice_id)] = record
        _log.info("tax voucher accepted: voucher=%s notice=%s", voucher_id, notice_id)
        return _status(200, "Đã nhận chứng từ", MaChungTu=voucher_id)

    @app.post("/__admin/notices")
    async def push_notice(request: Request) -> Response:
        """Issue a notice and push it to ``notice_url``: body ``{"dossier_code": "...",
        "items": [NoticeItem, ...], "is_updating": false}``. Answers with the receiver's status
        and body, or 502 when it cannot be reached."""
        try:
            order = _NoticeOrder.model_validate_json(await request.body())
        except ValidationError as exc:
            return JSONResponse({"error": _problems(exc)}, status_code=400)
        url = runtime["notice_url"]
        if not url:
            return JSONResponse(
                {"error": "no notice_url: set one with PUT /__admin/settings"}, status_code=409
            )
        notices = _group(order)
        if isinstance(notices, str):
            return JSONResponse({"error": notices}, status_code=400)
        if not clients:
            raise RuntimeError("the tax mock's lifespan is not running: no push client")
        for notice in notices:
            store.notices[(notice.dossier_code, notice.notice_id)] = notice
        payload = {
            "SecurityKey": settings.security_key,
            "Service": SERVICE,
            "Ngay": _stamp_now(),
            "IsUpdating": order.is_updating,
            "Data": {
                "FileThongBaoThue": base64.b64encode(
                    notice_xml(order.dossier_code, order.items)
                ).decode("ascii")
            },
        }
        try:
            reply = await clients[0].post(url, json=payload, timeout=settings.push_timeout)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            error = type(exc).__name__
            _log.warning("tax notice push failed: dossier=%s error=%s", order.dossier_code, error)
            for notice in notices:
                notice.push_error = error
            return JSONResponse(
                {"error": error, "message": "notice_url could not be reached"}, status_code=502
            )
        for notice in notices:
            notice.push_status = reply.status_code
        media_type = reply.headers.get("content-type", "application/json")
        return Response(reply.content, status_code=reply.status_code, media_type=media_type)

    @app.get("/__admin/notices")
    async def list_notices() -> list[dict[str, Any]]:
        return [notice.as_json() for notice in store.notices.values()]

    @app.get("/__admin/vouchers")
    async def list_vouchers() -> list[dict[str, Any]]:
        return list(store.vouchers.values())

    @app.get("/__admin/settings")
    async def get_settings() -> dict[str, str | None]:
        return {"notice_url": runtime["notice_url"]}

    @app.put("/__admin/settings")
    async def put_settings(request: Request) -> JSONResponse:
        """Set where notices are pushed: body ``{"notice_url": "..."|null}``."""
        try:
            update = _SettingsUpdate.model_validate_json(await request.body())
        except ValidationError as exc:
            return JSONResponse({"error": _problems(exc)}, status_code=400)
        runtime["notice_url"] = update.notice_url
        return JSONResponse({"notice_url": update.notice_url})

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "notices": len(store.notices), "vouchers": len(store.vouchers)}

    # Last, so the fault middleware is the outermost one.
    install_faults(app, env_var=FAULTS_ENV_VAR)
    return app
