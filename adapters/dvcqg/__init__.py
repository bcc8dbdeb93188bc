"""The National Public Service Portal (Cổng Dịch vụ công quốc gia, DVCQG): REST JSON behind a
login session. Canonical models in ``schemas/dossier.py``.

Operations:

====================  ==================  =====================================================
operation             mode                portal service
====================  ==================  =====================================================
``dossier.sync``      async, by ``code``  ``DongBoHoSoMC``: create (``isUpdating: false``); if
                                          the portal says the dossier already exists
                                          (error_code "-3" or "3" with "đã tồn tại"), the same
                                          dossier again as an update (``isUpdating: true``).
                                          The caller never sees "already exists": the result's
                                          ``created`` says which happened. Idempotent: create
                                          or update converges, whatever is re-delivered.
``dossier.progress``  async, by           ``CapNhatTienDoHoSoMC``: one processing step. The
                      ``dossier_code``    input refuses a transition outside
                                          ``ALLOWED_TRANSITIONS`` when it is validated, before
                                          it is queued; the portal checks it again against the
                                          status it holds. Idempotent: the same status again is
                                          a no-op, and the portal keeps one copy of a step.
``dossier.get``       sync                ``TraCuuHoSo`` (``mahoso``): the dossier and its steps.
``procedure.get``     sync                ``LayThuTuc`` (``maTTHC``): a national procedure.
====================  ==================  =====================================================

Both async operations order by the dossier code, so a dossier's syncs and steps reach the
portal in the order they were accepted.

Wire. ``POST {base_url}{login_path}`` with ``{"username", "password"}`` (``credentials``
``username`` and ``password`` in bus.yaml) answers ``{"error_code": 0, "session"}``; the
session is cached and shared by every call (:class:`SessionProvider`, the NGSP token's cache
and single flight), trusted for ``session_ttl`` seconds less ``refresh_margin``. Every service is
``POST {base_url}{api_path}`` with header ``dstcode`` and body ``{"session", "madonvi":
agency_code, "service", ...parameters}``; the reply is ``{"error_code", "message", "result"}``,
"0" (or "00", or 0) for success. A reply saying the session expired (error_code "-2", or the
message "Phiên làm việc hết hạn"), or an HTTP 401, drops the session, logs in again and sends
the call once more, once. Field mapping (canonical <- wire): code MaHoSo, procedure_code MaTTHC,
procedure_name TenTTHC, field_code MaLinhVuc, field_name TenLinhVuc, channel KenhThucHien
(in_person "1", online "2", postal "3"), owner_name ChuHoSo, owner_id SoGiayToChuHoSo,
owner_kind LoaiDoiTuong ("1".."4"), owner_code MaDoiTuong, email Email, phone SoDienThoai,
summary TrichYeuHoSo, submitted_at NgayNopHoSo, received_at NgayTiepNhan, due_at NgayHenTra,
status TrangThaiHoSo ("1".."10"), processed_at NgayKetThucXuLy, returned_at NgayTra,
result_delivery HinhThuc (at_office "0", postal "1"), agency_code DonViXuLy, submission_place
NoiNopHoSo, paid_online DuocThanhToanTrucTuyen ("1"/"0"), documents TaiLieuNop[{id
TepDinhKemId, name TenTepDinhKem, component_code MaThanhPhanHoSo, url DuongDanTaiTepTin}], fees
DanhSachLePhi[{code MaPhiLePhi, name TenPhiLePhi, amount Gia (integer dong)}]; a step: MaHoSo,
NguoiXuLy, ChucDanh, ThoiDiemXuLy, PhongBanXuLy, NoiDungXuLy, TrangThai, NgayBatDau,
NgayKetThucTheoQuyDinh. Canonical times (ISO 8601, any offset) go on the wire as
``yyyyMMddHHmmss`` wall clock in Asia/Ho_Chi_Minh (seconds: finer parts are dropped) and come
back as ``+07:00`` times. Absent optional fields are left out of the request.

Errors (the portal's message is never passed on: it may quote a citizen's data; only codes,
field names and status numbers are taken from it):

- "-1" invalid field: ``upstream.rejected``, with the canonical field in ``field_errors`` and
  ``detail.field`` when the message names a known wire field;
- "-4" unknown dossier or procedure: ``upstream.rejected``, ``detail.reason = "not_found"``
  (the catalogue's ``client.not_found`` means "no such route of the bus"); an empty TraCuuHoSo
  or LayThuTuc result is the same;
- "-5" status transition refused: ``upstream.rejected``, ``detail.reason =
  "transition_refused"`` with ``from_status``/``to_status`` when the message gives them;
- "-3" outside ``dossier.sync``: ``upstream.rejected``;
- "-6" unknown service and any other code: ``upstream.fault`` (the bus and the portal disagree);
- a session refused twice in a row, or a refused login: ``upstream.rejected``;
- HTTP 429/502/503/504: ``upstream.unavailable`` with ``Retry-After``; other HTTP errors as
  :func:`bus.upstream.raise_for_upstream_status`; a reply that is not the JSON described, or a
  record that cannot be read: ``upstream.bad_response``.

Every HTTP exchange with ``api_path`` adds to ``ctx.upstream_exchanges`` the service name, the
keyed digests (HMAC-SHA256) and sizes of the exact request and reply bytes, the HTTP status and
the portal's error_code; never the content. The login is not recorded (it is shared by calls).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapters.base import (
    Adapter,
    BusError,
    Context,
    FieldError,
    Resources,
    UpstreamBadResponse,
    UpstreamFault,
    UpstreamRejected,
    operation,
    raise_for_upstream_status,
    translate_http_error,
)
from adapters.dvcqg.mapping import (
    DOSSIER_FIELDS,
    DOSSIER_ITEM_FIELDS,
    PROGRESS_FIELDS,
    WireError,
    canonical_field,
    dossier_from_wire,
    dossier_to_wire,
    procedure_from_wire,
    progress_to_wire,
)
from adapters.dvcqg.session import SessionProvider, is_zero
from schemas.dossier import (
    DossierProgress,
    DossierQuery,
    DossierRecord,
    DossierStatus,
    DossierSync,
    DossierSyncResult,
    Procedure,
    ProcedureQuery,
    ProgressResult,
)

__all__ = ["DvcqgAdapter", "DvcqgOptions", "SessionProvider"]


class DvcqgOptions(BaseModel):
    """The ``options:`` of a DVCQG service in bus.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    login_path: str = Field(default="/login", description="Path of the portal's login.")
    api_path: str = Field(default="/api", description="Path every service is posted to.")
    agency_code: str = Field(
        min_length=1, description="madonvi: the province's agency code on the portal."
    )
    dstcode: str = Field(min_length=1, description="The dstcode header (routing code).")
    session_ttl: float = Field(
        default=1500,
        gt=0,
        description="Seconds a session is trusted when the portal gives no lifetime.",
    )
    refresh_margin: float = Field(default=60.0, ge=0, description="Renew a session this early.")


@dataclass(frozen=True, slots=True)
class _Reply:
    code: str
    message: str
    result: Any

    @property
    def ok(self) -> bool:
        return is_zero(self.code)


_EXPIRED_CODES = frozenset({"-2"})
_EXPIRED_TEXT = "phiên làm việc hết hạn"
_EXISTS_CODES = frozenset({"-3", "3"})
_EXISTS_TEXT = "đã tồn tại"
_INVALID = "-1"
_NOT_FOUND = "-4"
_TRANSITION_REFUSED = "-5"
_FROM_TO = re.compile(r"từ\s+(\d{1,2})\s+sang\s+(\d{1,2})")


def _folded(text: str) -> str:
    return unicodedata.normalize("NFC", text).casefold()


class DvcqgAdapter(Adapter):
    description = "National Public Service Portal (Cổng Dịch vụ công quốc gia), REST JSON"
    Options = DvcqgOptions

    options: DvcqgOptions

    async def start(self, resources: Resources) -> None:
        upstream = resources.upstream
        assert upstream is not None  # requires_upstream is True
        creds = resources.credentials
        missing = [name for name in ("username", "password") if name not in creds]
        if missing:
            raise ValueError(
                f"service {resources.service!r}: the upstream credentials must name "
                + " and ".join(missing)
            )
        self._log = resources.log
        self.sessions = SessionProvider(
            resources.http,
            upstream.base_url + self.options.login_path,
            creds["username"],
            creds["password"],
            resources.clock,
            lifetime=self.options.session_ttl,
            refresh_margin=self.options.refresh_margin,
            timeout=upstream.http_timeout,
        )
        self.api_url = upstream.base_url + self.options.api_path

    # -- the exchange ------------------------------------------------------------------------

    async def _send(self, ctx: Context, service: str, body: dict[str, Any]) -> _Reply | None:
        """One POST of ``service``; None when the portal says the session is no good."""
        content = json.dumps(body, ensure_ascii=False).encode()
        try:
            response = await ctx.http.post(
                self.api_url,
                content=content,
                headers={"Content-Type": "application/json", "dstcode": self.options.dstcode},
                timeout=ctx.upstream.http_timeout,
            )
        except httpx.HTTPError as exc:
            raise translate_http_error(exc) from exc
        digest = ctx.resources.digest
        exchange: dict[str, Any] = {
            "service": service,
            "request_hmac": digest(content),
            "request_bytes": len(content),
            "reply_hmac": digest(response.content),
            "reply_bytes": len(response.content),
            "http_status": response.status_code,
            "error_code": None,
        }
        ctx.upstream_exchanges.append(exchange)
        if response.status_code == 401:
            return None
        raise_for_upstream_status(response)
        reply = _read(response, service)
        exchange["error_code"] = reply.code
        if reply.code in _EXPIRED_CODES or _EXPIRED_TEXT in _folded(reply.message):
            return None
        return reply

    async def _call(self, ctx: Context, service: str, params: dict[str, Any]) -> _Reply:
        """``service`` with the shared session, logging in again once if the portal says the
        session has expired."""
        for attempt in (1, 2):
            session = await self.sessions.token()
            body = {
                "session": session,
                "madonvi": self.options.agency_code,
                "service": service,
                **params,
            }
            reply = await self._send(ctx, service, body)
            if reply is not None:
                return reply
            self.sessions.invalidate(session)
            if attempt == 1:
                self._log.info("the portal ended the session; logging in again", service=service)
        raise UpstreamRejected(
            "the National Public Service Portal refused a freshly opened session",
            detail={"service": service},
        )

    # -- operations --------------------------------------------------------------------------

    @operation(
        "dossier.sync",
        input=DossierSync,
        output=DossierSyncResult,
        mode="async",
        order_by="code",
        idempotent=True,
    )
    async def sync(self, dossier: DossierSync, ctx: Context) -> DossierSyncResult:
        """Create a dossier on the portal, or update it if the portal already holds it."""
        record = dossier_to_wire(dossier)
        reply = await self._call(ctx, "DongBoHoSoMC", {"isUpdating": False, "data": [record]})
        created = True
        if not reply.ok and _already_exists(reply):
            reply = await self._call(ctx, "DongBoHoSoMC", {"isUpdating": True, "data": [record]})
            created = False
        if not reply.ok:
            raise _error(reply, "DongBoHoSoMC", DOSSIER_FIELDS, DOSSIER_ITEM_FIELDS)
        status = _status_in(reply.result, dossier.code) or dossier.status
        return DossierSyncResult(code=dossier.code, created=created, status=status)

    @operation(
        "dossier.progress",
        input=DossierProgress,
        output=ProgressResult,
        mode="async",
        order_by="dossier_code",
        idempotent=True,
    )
    async def progress(self, step: DossierProgress, ctx: Context) -> ProgressResult:
        """Record one processing step of a dossier, moving it to its new status."""
        reply = await self._call(ctx, "CapNhatTienDoHoSoMC", {"data": [progress_to_wire(step)]})
        if not reply.ok:
            raise _error(reply, "CapNhatTienDoHoSoMC", PROGRESS_FIELDS)
        status = _status_in(reply.result, step.dossier_code) or step.status
        return ProgressResult(dossier_code=step.dossier_code, status=status)

    @operation("dossier.get", input=DossierQuery, output=DossierRecord)
    async def get(self, query: DossierQuery, ctx: Context) -> DossierRecord:
        """A dossier as the portal holds it, with its processing steps."""
        reply = await self._call(ctx, "TraCuuHoSo", {"mahoso": query.code})
        record = _single(reply, "TraCuuHoSo", "dossier")
        try:
            return dossier_from_wire(record)
        except WireError as exc:
            raise _unreadable("TraCuuHoSo", exc.field) from None
        except (ValidationError, KeyError, TypeError, ValueError, AttributeError):
            # pydantic's message quotes the values (names, ids): the cause is not chained.
            raise _unreadable("TraCuuHoSo", None) from None

    @operation("procedure.get", input=ProcedureQuery, output=Procedure)
    async def procedure(self, query: ProcedureQuery, ctx: Context) -> Procedure:
        """A national administrative procedure by its code (MaTTHC)."""
        reply = await self._call(ctx, "LayThuTuc", {"maTTHC": query.code})
        record = _single(reply, "LayThuTuc", "procedure")
        try:
            return procedure_from_wire(record)
        except WireError as exc:
            raise _unreadable("LayThuTuc", exc.field) from None
        except (ValidationError, KeyError, TypeError, ValueError, AttributeError):
            raise _unreadable("LayThuTuc", None) from None


# -- replies and errors ------------------------------------------------------------------------


def _read(response: httpx.Response, service: str) -> _Reply:
    """The portal's ``{error_code, message, result}``, or ``upstream.bad_response``."""
    try:
        body = response.json()
    except ValueError:  # UnicodeDecodeError included; the reply's bytes are not quoted
        body = None
    code = body.get("error_code") if isinstance(body, dict) else None
    if isinstance(code, bool) or not isinstance(code, str | int):
        raise UpstreamBadResponse(
            f"the portal's reply to {service} is not its JSON answer",
            detail={"service": service},
        )
    assert isinstance(body, dict)
    message = body.get("message")
    return _Reply(
        str(code).strip(), message if isinstance(message, str) else "", body.get("result")
    )


def _already_exists(reply: _Reply) -> bool:
    return reply.code in _EXISTS_CODES and _EXISTS_TEXT in _folded(reply.message)


def _status_in(result: Any, code: str) -> DossierStatus | None:
    """The status the portal reports for dossier ``code`` in a write's result, if it does."""
    rows = result if isinstance(result, list) else [result]
    for row in rows:
        if isinstance(row, dict) and row.get("MaHoSo") == code:
            try:
                return DossierStatus(int(str(row.get("TrangThaiHoSo"))))
            except ValueError:
                return None
    return None


def _single(reply: _Reply, service: str, what: str) -> dict[str, Any]:
    """The one record a look-up answers, or the error its reply stands for."""
    if not reply.ok:
        raise _error(reply, service, {})
    result = reply.result
    rows = result if isinstance(result, list) else [result] if result is not None else []
    if not rows:
        raise _not_found(service, what)
    if not isinstance(rows[0], dict):
        raise _unreadable(service, None)
    return rows[0]


def _not_found(service: str, what: str, code: str | None = None) -> UpstreamRejected:
    return UpstreamRejected(
        f"the National Public Service Portal holds no such {what}",
        detail={"service": service, "error_code": code, "reason": "not_found"},
    )


def _unreadable(service: str, field: str | None) -> UpstreamBadResponse:
    where = f" (field {field})" if field else ""
    return UpstreamBadResponse(
        f"the portal's reply to {service} could not be read{where}",
        detail={"service": service, **({"field": field} if field else {})},
    )


def _error(
    reply: _Reply,
    service: str,
    fields: Mapping[str, str],
    items: Mapping[str, Mapping[str, str]] | None = None,
) -> BusError:
    """The catalogue error for a refusal of the portal (see the module docstring)."""
    code = reply.code
    detail: dict[str, Any] = {"service": service, "error_code": code}
    if code == _INVALID:
        field = canonical_field(reply.message, fields, items)
        if field is None:
            return UpstreamRejected(
                f"the portal refused a field of the {service} request", detail=detail
            )
        return UpstreamRejected(
            f"the portal refused the field {field}",
            field_errors=[FieldError(field, "refused by the National Public Service Portal")],
            detail={**detail, "field": field},
        )
    if code == _NOT_FOUND:
        what = "procedure" if service == "LayThuTuc" else "dossier"
        return _not_found(service, what, code)
    if code == _TRANSITION_REFUSED:
        moves = _FROM_TO.search(_folded(reply.message))
        if moves is not None:
            detail.update(from_status=int(moves[1]), to_status=int(moves[2]))
        return UpstreamRejected(
            "the portal refused the dossier's status transition",
            detail={**detail, "reason": "transition_refused"},
        )
    if code in _EXISTS_CODES:
        return UpstreamRejected("the portal already holds this dossier", detail=detail)
    return UpstreamFault(
        f"the portal answered {service} with error_code {code}",
        detail=detail,
    )
