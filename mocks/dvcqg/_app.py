"""The portal mock app: login, the one service endpoint, admin helpers."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from mocks.dvcqg import _seed
from mocks.dvcqg._state import Clock, Portal, SessionStore, Stats
from mocks.dvcqg._wire import (
    INVALID,
    NOT_FOUND,
    OK,
    SESSION_EXPIRED,
    UNKNOWN_SERVICE,
    PortalError,
    check_dossier,
    check_progress,
    invalid,
)
from mocks.faults import install_faults

__all__ = ["FAULTS_ENV_VAR", "DvcqgSettings", "create_app"]

#: Start-up fault rules for this mock alone, tried before the shared ``LGSP_MOCK_FAULTS``.
FAULTS_ENV_VAR = "LGSP_MOCK_FAULTS_DVCQG"
MAX_RECORDS = 100  # dossiers or progress records in one call


class DvcqgSettings(BaseModel):
    """Accounts, session lifetime and the catalogues the mock serves."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    accounts: dict[str, str] = Field(
        default_factory=lambda: {"lgsp-demo": "dvcqg-demo-password"},
        description="username -> password accepted by POST /login.",
    )
    session_ttl: float = Field(default=1800, gt=0, description="Session lifetime (s).")
    agencies: dict[str, str] = Field(
        default_factory=_seed.agencies, description="madonvi / DonViXuLy code -> name."
    )
    fields: dict[str, str] = Field(
        default_factory=_seed.fields, description="MaLinhVuc -> TenLinhVuc."
    )
    procedures: list[dict[str, Any]] = Field(
        default_factory=_seed.procedures, description="LayThuTuc records (upper-case keys)."
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1)


def _reply(code: str, message: str, result: Any = None) -> JSONResponse:
    return JSONResponse({"error_code": code, "message": message, "result": result})


def _flag(body: dict[str, Any], name: str) -> bool:
    """A boolean parameter: JSON true/false, or the strings "true"/"false" (any case), which
    some clients send; absent is false."""
    value = body.get(name, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise invalid(name, "phải là true hoặc false")


def _text_param(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise PortalError(INVALID, f"Thiếu tham số {name}")
    return value.strip()


def _records(body: dict[str, Any]) -> list[Any]:
    data = body.get("data")
    if not isinstance(data, list) or not data or len(data) > MAX_RECORDS:
        raise invalid("data", f"phải là danh sách từ 1 đến {MAX_RECORDS} bản ghi")
    return data


Handler = Callable[[dict[str, Any]], Any]


def create_app(settings: DvcqgSettings | None = None, *, clock: Clock = time.monotonic) -> FastAPI:
    """The portal mock. ``clock`` (monotonic seconds) drives session expiry."""
    settings = settings or DvcqgSettings()
    sessions = SessionStore(settings.session_ttl, clock)
    portal = Portal()
    stats = Stats()
    procedures = {p["MATTHC"]: p for p in settings.procedures}

    app = FastAPI(title="Mock: Cổng Dịch vụ công quốc gia", docs_url=None, redoc_url=None)
    app.state.portal = portal
    app.state.settings = settings

    def known_procedure(path: str, record: dict[str, Any]) -> dict[str, Any]:
        if record["MaTTHC"] not in procedures:
            raise invalid(f"{path}.MaTTHC", "thủ tục không có trong danh mục")
        agency = record.get("DonViXuLy")
        if agency is not None and agency not in settings.agencies:
            raise invalid(f"{path}.DonViXuLy", "cơ quan không có trong danh mục")
        return record

    def dong_bo_ho_so(body: dict[str, Any]) -> Any:
        updating = _flag(body, "isUpdating")
        records = [
            known_procedure(f"data[{i}]", check_dossier(f"data[{i}]", item))
            for i, item in enumerate(_records(body))
        ]
        return portal.sync(records, updating)

    def cap_nhat_tien_do(body: dict[str, Any]) -> Any:
        records = [check_progress(f"data[{i}]", item) for i, item in enumerate(_records(body))]
        return portal.progress(records)

    def tra_cuu_ho_so(body: dict[str, Any]) -> Any:
        stored = portal.get(_text_param(body, "mahoso"))
        return [{**stored.record, "QuaTrinhXuLy": list(stored.history)}]

    def lay_thu_tuc(body: dict[str, Any]) -> Any:
        code = _text_param(body, "maTTHC")
        if code not in procedures:
            raise PortalError(NOT_FOUND, f"Không tìm thấy thủ tục {code}")
        return [procedures[code]]

    def lay_danh_sach_tthc(body: dict[str, Any]) -> Any:
        return [
            {
                "MATTHC": p["MATTHC"],
                "TENTTHC": p["TENTTHC"],
                "MALINHVUC": p["LINHVUCTHUCHIEN"][0]["MALINHVUC"],
                "TENLINHVUC": p["LINHVUCTHUCHIEN"][0]["TENLINHVUC"],
            }
            for p in settings.procedures
        ]

    def lay_danh_muc_co_quan(body: dict[str, Any]) -> Any:
        return [{"MADONVI": c, "TENDONVI": n} for c, n in settings.agencies.items()]

    def lay_danh_muc_linh_vuc(body: dict[str, Any]) -> Any:
        return [{"MALINHVUC": c, "TENLINHVUC": n} for c, n in settings.fields.items()]

    services: dict[str, Handler] = {
        "DongBoHoSoMC": dong_bo_ho_so,
        "CapNhatTienDoHoSoMC": cap_nhat_tien_do,
        "TraCuuHoSo": tra_cuu_ho_so,
        "LayThuTuc": lay_thu_tuc,
        "LayDanhSachTTHC": lay_danh_sach_tthc,
        "LayDanhMucCoQuan": lay_danh_muc_co_quan,
        "LayDanhMucLinhVuc": lay_danh_muc_linh_vuc,
    }

    async def read_object(request: Request) -> dict[str, Any] | None:
        raw = await request.body()
        if len(raw) > settings.max_body_bytes:
            return None
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            return None
        return body if isinstance(body, dict) else None

    @app.post("/login")
    async def login(request: Request) -> JSONResponse:
        """Open a session for an account: ``{"error_code": 0, "session": ...}``."""
        body = await read_object(request)
        username = body.get("username") if body else None
        password = body.get("password") if body else None
        known = settings.accounts.get(username) if isinstance(username, str) else None
        if (
            known is None
            or not isinstance(password, str)
            or not secrets.compare_digest(known.encode(), password.encode())
        ):
            stats.failed_logins += 1
            return JSONResponse(
                {"error_code": -1, "message": "Tên đăng nhập hoặc mật khẩu không đúng"}
            )
        stats.logins += 1
        assert isinstance(username, str)
        return JSONResponse({"error_code": 0, "session": sessions.open(username)})

    async def serve(request: Request) -> Any:
        body = await read_object(request)
        if body is None:
            raise invalid("body", "nội dung yêu cầu phải là một đối tượng JSON")
        if not request.headers.get("dstcode", "").strip():
            raise PortalError(INVALID, "Thiếu tham số dstcode trong header")
        session = body.get("session")
        if not isinstance(session, str) or sessions.owner(session) is None:
            raise PortalError(SESSION_EXPIRED, "Phiên làm việc hết hạn")
        agency = body.get("madonvi")
        if not isinstance(agency, str) or not agency.strip():
            raise PortalError(INVALID, "Thiếu tham số madonvi")
        if agency not in settings.agencies:
            raise invalid("madonvi", "mã đơn vị không có trong danh mục")
        name = body.get("service")
        handler = services.get(name) if isinstance(name, str) else None
        if handler is None:
            raise PortalError(UNKNOWN_SERVICE, "Dịch vụ không tồn tại")
        stats.calls[str(name)] += 1
        return handler(body)

    @app.post("/api")
    async def api(request: Request) -> JSONResponse:
        """Every service: ``{session, madonvi, service, ...}`` with header ``dstcode``."""
        try:
            result = await serve(request)
        except PortalError as error:
            stats.errors[error.code] += 1
            return _reply(error.code, error.message)
        return _reply(OK, "Thành công", result)

    @app.get("/__admin/dossiers/{mahoso}")
    async def admin_dossier(mahoso: str) -> JSONResponse:
        """A stored dossier as the portal holds it, with its progress history."""
        stored = portal.dossiers.get(mahoso)
        if stored is None:
            return JSONResponse({"error": "no such dossier"}, status_code=404)
        return JSONResponse(
            {"dossier": stored.record, "history": list(stored.history), "updates": stored.updates}
        )

    @app.post("/__admin/sessions/expire")
    async def expire_sessions() -> dict[str, int]:
        """End every session now: the next call with any of them gets error_code -2."""
        return {"expired": sessions.expire_all()}

    @app.get("/__admin/stats")
    async def get_stats() -> dict[str, Any]:
        return {
            "logins": stats.logins,
            "failed_logins": stats.failed_logins,
            "sessions": len(sessions),
            "calls": dict(stats.calls),
            "errors": dict(stats.errors),
        }

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "dossiers": len(portal.dossiers)}

    # Last, so the fault middleware is the outermost one.
    install_faults(app, env_var=FAULTS_ENV_VAR)
    return app
