"""The audit API: auditors read the exchange log over HTTP.

:func:`audit_router` returns the routes without a prefix (the app mounts them at
``/v1/audit``)::

    GET  /exchanges          records, newest first, filtered; paged with an opaque cursor
    GET  /exchanges/{id}     one record, its hash and link; its bodies to a granted auditor
    POST /verify             check the whole hash chain and its signed head
    GET  /stats              calls, errors and latency percentiles per service operation

Every route needs ``Authorization: Bearer <auditor key>`` (:mod:`bus.audit.auditors`); a
consumer's credential or the admin token is refused. Every reply is the canonical envelope
(``service`` and ``operation`` null) with ``Cache-Control: no-store``.

Query parameters are checked after the key: an unknown, repeated or malformed one is a 400
``client.bad_request`` naming it (its value never echoed). Times are ISO 8601 dates or
date-times, Asia/Ho_Chi_Minh time without an offset (as ``lgsp audit`` reads them), compared
with ``received_at``: ``since <= t < until``.

Every read is itself an exchange, recorded through the gateway's recorder like a call (kind
``audit``, service ``audit``, the auditor as consumer, the filters in ``detail``), refused reads
included (a caller without a verified key is recorded as ``unknown``). A citizen id looked up is
recorded only as a subject (the log keeps its blind index), never in ``detail``, never logged.
No reply leaves without its record: if the record cannot be written, the read fails closed with
``bus.internal``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pydantic_core
import structlog
from fastapi import APIRouter
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from bus.audit import Exchange
from bus.audit.auditors import DISABLED, UNKNOWN, Auditors, refused_auditor
from bus.audit.chain import StoredRecord
from bus.audit.keys import AuditKeys, KeyError_
from bus.audit.record import KINDS, OUTCOMES, record_ref
from bus.audit.store import Auditor, AuditQuery, AuditStore, instant
from bus.errors import (
    BadRequest,
    BusError,
    FieldError,
    InternalError,
    NotFound,
    Unauthenticated,
    error_envelope,
)
from bus.middleware import request_id_of
from schemas.envelope import Envelope

if TYPE_CHECKING:
    from bus.gateway import Gateway

__all__ = ["MAX_LIMIT", "WITHHELD", "audit_router", "decode_cursor", "encode_cursor"]

log = structlog.get_logger("lgsp.audit.api")

MAX_LIMIT = 500
DEFAULT_LIMIT = 50
WITHHELD = "withheld: this auditor has no right to read bodies"
#: Longest text filter value, and longest record id looked up.
MAX_TEXT = 200
MAX_ID = 128

# --- query parameters ------------------------------------------------------------------------

_TEXT_FILTERS = (
    "consumer",
    "agency",
    "end_user",
    "service",
    "operation",
    "error_code",
    "request_id",
)
_DOCS: dict[str, tuple[str, dict[str, Any]]] = {
    "since": (
        "Records received at or after this moment: an ISO 8601 date or date-time, e.g. "
        "`2026-11-21T08:00:00+07:00` or `...Z`; without an offset, Asia/Ho_Chi_Minh time; a "
        "date alone is its first moment.",
        {"type": "string"},
    ),
    "until": (
        "Records received before this moment (as `since`).",
        {"type": "string"},
    ),
    "consumer": ("The consumer (or, for kind `audit`, the auditor) id.", {"type": "string"}),
    "agency": ("The calling agency's code.", {"type": "string"}),
    "end_user": ("The officer on whose behalf the consumer called.", {"type": "string"}),
    "service": ("The service called.", {"type": "string"}),
    "operation": ("The operation called.", {"type": "string"}),
    "outcome": ("ok or error.", {"type": "string", "enum": list(OUTCOMES)}),
    "error_code": ("An error code of the catalogue, e.g. `upstream.timeout`.", {"type": "string"}),
    "kind": ("The kind of exchange.", {"type": "string", "enum": list(KINDS)}),
    "request_id": ("The request id of the exchange.", {"type": "string"}),
    "citizen_id": (
        "Records about this citizen: looked up by its blind index; the id itself is neither "
        "stored nor logged.",
        {"type": "string"},
    ),
    "limit": (
        f"Most records in one page (1 to {MAX_LIMIT}).",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
    ),
    "cursor": ("The `next_cursor` of the previous page.", {"type": "string"}),
    "index": (
        "Also check the citizen index: every record filed under exactly the citizens it names "
        "(an entry removed would hide an exchange from a citizen's search). Some 15% slower.",
        {"type": "boolean", "default": False},
    ),
}
LIST_PARAMS = (
    "since",
    "until",
    "consumer",
    "agency",
    "end_user",
    "service",
    "operation",
    "outcome",
    "error_code",
    "kind",
    "request_id",
    "citizen_id",
    "limit",
    "cursor",
)
STATS_PARAMS = ("since", "until", "service", "operation", "consumer", "kind")

# A "+" of an offset sent unencoded in a query string arrives as a space.


def _openapi(names: tuple[str, ...]) -> dict[str, Any]:
    return {
        "parameters": [
            {
                "name": name,
                "in": "query",
                "required": False,
                "description": _DOCS[name][0],
                "schema": _DOCS[name][1],
            }
            for name in names
        ]
    }


def encode_cursor(seq: int) -> str:
    """The opaque cursor of the page after the record numbered ``seq``."""
    return base64.urlsafe_b64encode(str(seq).encode("ascii")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The record number a cursor names; ValueError if it is not one this API gave."""
    text = cursor.strip()
    if not text or len(text) > 32:
        raise ValueError("not a cursor this API gave")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not a cursor this API gave") from exc
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) < 2**63:
        raise ValueError("not a cursor this API gave")
    return int(raw)


#: The filters of :class:`AuditQuery` given as they are (the subject is a blind index).
_QUERY_FIELDS = frozenset(AuditQuery.__dataclass_fields__) - {"subject"}


@dataclass(slots=True)
class _Params:
    """What a read's query parameters asked for, and what was wrong with them."""

    query: AuditQuery = field(default_factory=AuditQuery)
    limit: int = DEFAULT_LIMIT
    before_seq: int | None = None
    #: The citizen id in clear: for the record's subjects only (blinded for the query).
    citizen_id: str | None = None
    #: verify: also check the citizen index.
    index: bool = False
    #: The accepted filters, for the record of the read (never the citizen id).
    detail: dict[str, Any] = field(default_factory=dict)
    errors: list[FieldError] = field(default_factory=list)


def _parse(params: QueryParams, allowed: tuple[str, ...]) -> _Params:
    """Every parameter checked; each refused one named (its value never echoed)."""
    out = _Params()
    filters: dict[str, str] = {}
    for name in dict.fromkeys(params.keys()):
        shown = name[:64]
        if name not in allowed:
            reason = f"unknown query parameter; this route accepts: {', '.join(allowed)}"
            out.errors.append(FieldError(shown, reason, "unknown"))
            continue
        values = params.getlist(name)
        if len(values) > 1:
            out.errors.append(FieldError(name, "given more than once", "repeated"))
            continue
        text = values[0]
        try:
            if name in ("since", "until"):
                filters[name] = instant(text)
            elif name == "limit":
                digits = text.strip()
                if not (digits.isascii() and digits.isdigit() and len(digits) <= 3) or not (
                    1 <= int(digits) <= MAX_LIMIT
                ):
                    raise ValueError(f"must be a whole number from 1 to {MAX_LIMIT}")
                out.limit = int(digits)
            elif name == "cursor":
                out.before_seq = decode_cursor(text)
            elif name == "index":
                if text.strip() not in ("true", "false"):
                    raise ValueError("must be true or false")
                out.index = text.strip() == "true"
                filters[name] = text.strip()
            elif name == "outcome":
                if text.strip() not in OUTCOMES:
                    raise ValueError("must be ok or error")
                filters[name] = text.strip()
            elif name == "kind":
                if text.strip() not in KINDS:
                    raise ValueError(f"must be one of {', '.join(KINDS)}")
                filters[name] = text.strip()
            else:  # a text filter, or citizen_id
                value = text.strip()
                if not value:
                    raise ValueError("must not be empty")
                if len(value) > MAX_TEXT:
                    raise ValueError(f"must be at most {MAX_TEXT} characters")
                if name == "citizen_id":
                    out.citizen_id = value
                else:
                    filters[name] = value
        except ValueError as exc:
            out.errors.append(FieldError(name, str(exc), "value_error"))
    since, until = filters.get("since"), filters.get("until")
    if since is not None and until is not None and until <= since:
        out.errors.append(FieldError("until", "must be later than since", "value_error"))
    out.query = AuditQuery(**{k: v for k, v in filters.items() if k in _QUERY_FIELDS})
    out.detail = dict(sorted(filters.items()))
    if "limit" in params and not any(e.field == "limit" for e in out.errors):
        out.detail["limit"] = out.limit
    if out.before_seq is not None:
        out.detail["before_seq"] = out.before_seq
    if out.errors:
        out.detail["refused"] = sorted(e.field for e in out.errors if e.field in _DOCS)
    return out


# --- replies ---------------------------------------------------------------------------------


#: What stands for a record whose stored data is not a readable record (tampered).
UNREADABLE = "its data is not a readable record: POST /v1/audit/verify names what changed"


def _data(record: StoredRecord) -> dict[str, Any]:
    try:
        return record.parsed()
    except ValueError:
        log.warning("an exchange record is not readable", record=record.id, seq=record.seq)
        return {"seq": record.seq, "id": record.id, "unreadable": UNREADABLE}


def _summary(record: StoredRecord) -> dict[str, Any]:
    """A record's data without its (encrypted) body, saying whether it has one."""
    data = _data(record)
    data["has_body"] = data.pop("body", None) is not None
    return data


def _maybe_json(text: Any) -> Any:
    """``text`` parsed as JSON when it is JSON (bounded depth: a body was the caller's), else
    as it is."""
    if not isinstance(text, str):
        return text
    try:
        return pydantic_core.from_json(text, allow_inf_nan=False)
    except ValueError:
        return text


def _open_body(keys: AuditKeys, body: Any, record_id: str) -> Any:
    """The decrypted request and reply of a record (each parsed as JSON when it is JSON), or a
    text saying why they cannot be read."""
    try:
        request, reply = keys.open_bodies(body, record_id)
    except KeyError_ as exc:
        log.warning("an exchange record's body cannot be read", record=record_id, reason=str(exc))
        return f"unreadable: {exc}"
    return {"request": _maybe_json(request), "reply": _maybe_json(reply)}


def _full(record: StoredRecord, auditor: Auditor, keys: AuditKeys) -> tuple[dict[str, Any], str]:
    """The whole record for ``auditor``, and what was done with its body (for the record of
    the read): none, withheld or shown."""
    data = _data(record)
    body = data.pop("body", None)
    data["hash"] = record.hash
    data["prev_hash"] = record.prev_hash
    data["has_body"] = body is not None
    if body is None:
        data["body"] = None
        return data, "none"
    if not auditor.can_read_bodies:
        data["body"] = WITHHELD
        return data, "withheld"
    data["body"] = _open_body(keys, body, record.id)
    return data, "shown"


def _reply(request_id: str, data: Any, error: BusError | None) -> tuple[bytes, int]:
    if error is not None:
        error.request_id = request_id
        env = error_envelope(request_id, None, None, error)
        return env.model_dump_json().encode(), error.http_status
    env = Envelope(request_id=request_id, service=None, operation=None, status="ok", data=data)
    return env.model_dump_json().encode(), 200


# --- the router ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Read:
    """One auditor read, as it is recorded."""

    operation: str
    detail: dict[str, Any] = field(default_factory=dict)
    subjects: tuple[str, ...] = ()


class _Log:
    """What a read uses of the exchange log (:class:`bus.audit.log.AuditLog`)."""

    def __init__(self, store: AuditStore, keys: AuditKeys) -> None:
        self.store = store
        self.keys = keys


Work = Callable[[Auditor, _Log, _Read], Awaitable[Any]]


def audit_router(gw: Gateway) -> APIRouter:
    """The audit routes, prefix-free. The exchange log (``gw.audit``) and the recorder
    (``gw.exchange_recorder``) are looked up on each request: they exist once the gateway
    started."""
    router = APIRouter(tags=["audit"])
    documented: dict[int | str, dict[str, Any]] = {
        code: {"model": Envelope, "description": description}
        for code, description in (
            (400, "client.bad_request envelope, naming each refused parameter"),
            (401, "client.unauthenticated envelope: no valid auditor key"),
            (404, "client.not_found envelope: no such record"),
            (500, "bus.internal envelope: e.g. the read could not be recorded"),
        )
    }
    unnamed: dict[int | str, dict[str, Any]] = {c: documented[c] for c in (400, 401, 500)}

    async def serve(request: Request, read: _Read, params: _Params | None, work: Work) -> Response:
        received_at, started = gw.clock.now(), gw.clock.monotonic()
        request_id = request_id_of(request.scope)
        who = UNKNOWN
        data: Any = None
        error: BusError | None = None
        if params is not None:
            read.detail.update(params.detail)
            if params.citizen_id is not None:
                read.subjects = (params.citizen_id,)
        try:
            gw.exchange_recorder.admit()
            audit = gw.audit
            if audit is None:
                raise Unauthenticated(DISABLED)
            auditor = await Auditors(audit.store).authenticate(request.headers)
            who = auditor.id
            if params is not None and params.errors:
                noun = "parameter" if len(params.errors) == 1 else "parameters"
                raise BadRequest(
                    f"{len(params.errors)} query {noun} refused", field_errors=params.errors
                )
            data = await work(auditor, _Log(audit.store, audit.keys), read)
        except Unauthenticated as exc:
            who = refused_auditor(exc)
            error = exc
        except BusError as exc:
            error = exc
        except Exception:  # the last net: a store failure must not reach the caller as a trace
            log.exception("audit read failed unexpectedly", operation=read.operation)
            error = InternalError()
        if error is not None and error.http_status == 401:
            log.warning("audit read refused", operation=read.operation, reason=error.message)
        body, status = _reply(request_id, data, error)
        try:
            await gw.exchange_recorder.record(
                Exchange(
                    request_id=request_id,
                    consumer=who,
                    service="audit",
                    operation=read.operation,
                    received_at=received_at,
                    duration_ms=round((gw.clock.monotonic() - started) * 1000, 3),
                    outcome="ok" if status < 400 else "error",
                    http_status=status,
                    error_code=error.code if error is not None else None,
                    attempts=0,
                    request_bytes=0,
                    reply_bytes=len(body),
                    kind="audit",
                    replied_at=gw.clock.now(),
                    subjects=read.subjects,
                    detail=read.detail,
                )
            )
        except Exception:  # fail closed: no read of the log leaves without its own record
            log.exception("audit read record failed; refusing the reply", operation=read.operation)
            error = InternalError("the read could not be recorded; it is refused")
            body, status = _reply(request_id, None, error)
        headers = {"Cache-Control": "no-store"}
        if error is not None:
            headers.update(error.headers)
            if status == 401:
                headers.setdefault("WWW-Authenticate", 'Bearer realm="lgsp-audit"')
        return Response(body, status_code=status, headers=headers, media_type="application/json")

    @router.get(
        "/exchanges",
        summary="Exchange records, newest first, filtered and paged",
        responses=unnamed,
        openapi_extra=_openapi(LIST_PARAMS),
    )
    async def list_exchanges(request: Request) -> Response:
        params = _parse(request.query_params, LIST_PARAMS)

        async def work(auditor: Auditor, audit: _Log, read: _Read) -> Any:
            query = params.query
            if params.citizen_id is not None:
                query = AuditQuery(
                    **{name: getattr(query, name) for name in _QUERY_FIELDS},
                    subject=audit.keys.blind(params.citizen_id),
                )
            found = await audit.store.query(
                query, limit=params.limit + 1, before_seq=params.before_seq
            )
            page = found[: params.limit]
            more = len(found) > params.limit and bool(page)
            return {
                "items": [_summary(r) for r in page],
                "next_cursor": encode_cursor(page[-1].seq) if more else None,
            }

        return await serve(request, _Read("exchanges.list"), params, work)

    @router.get(
        "/exchanges/{record_id}",
        summary="One exchange record with its hash; its bodies only to a granted auditor",
        responses=documented,
        openapi_extra=_openapi(()),
    )
    async def get_exchange(request: Request, record_id: str) -> Response:
        params = _parse(request.query_params, ())
        read = _Read("exchanges.get", {"id": record_ref(record_id)})

        async def work(auditor: Auditor, audit: _Log, read: _Read) -> Any:
            found = await audit.store.get(record_id) if len(record_id) <= MAX_ID else None
            if found is None:
                raise NotFound(f"no exchange record with id {record_id[:MAX_ID]!r}")
            data, body = _full(found, auditor, audit.keys)
            read.detail["body"] = body
            return data

        return await serve(request, read, params, work)

    @router.post(
        "/verify",
        summary="Check the whole hash chain and its signed head",
        responses=unnamed,
        openapi_extra=_openapi(("index",)),
    )
    async def verify(request: Request) -> Response:
        params = _parse(request.query_params, ("index",))

        async def work(auditor: Auditor, audit: _Log, read: _Read) -> Any:
            report = await audit.store.verify(
                trusted=frozenset({audit.keys.public_key}), citizen_index=params.index
            )
            if not report.ok:
                problem = report.problem
                log.warning(
                    "exchange log verification found a problem",
                    kind=problem.kind if problem else None,
                    seq=problem.seq if problem else None,
                )
            return report.as_json()

        return await serve(request, _Read("verify"), params, work)

    @router.get(
        "/stats",
        summary="Calls, errors and latency percentiles per service operation",
        responses=unnamed,
        openapi_extra=_openapi(STATS_PARAMS),
    )
    async def stats(request: Request) -> Response:
        params = _parse(request.query_params, STATS_PARAMS)

        async def work(auditor: Auditor, audit: _Log, read: _Read) -> Any:
            rows = await audit.store.stats(params.query)
            return {"items": [r.as_json() for r in rows]}

        return await serve(request, _Read("stats"), params, work)

    return router
