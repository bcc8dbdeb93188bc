"""The path of one call, ``POST /v1/services/{service}/{operation}``, in named stages.

:func:`handle_call` reads top to bottom as DESIGN.md draws it::

    1 identify  2 authorise  3 limit  4 validate  5 dispatch  6 normalise  7 record  8 respond

with two branches after validation: a call carrying an ``Idempotency-Key`` already answered is
replayed from the idempotency store (no upstream call); an operation in ``async`` mode is queued
for store-and-forward delivery (:func:`enqueue`) and answered 202 with its delivery id.

Each stage is a plain function of its inputs so it can be tested alone; each failure is a
:class:`bus.errors.BusError` that becomes the error envelope; anything else is ``bus.internal``
with the request id, its stack trace kept in the server log only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import httpx
import pydantic_core
import structlog
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from adapters.base import Context, OperationSpec
from bus.audit import Exchange
from bus.circuit import CircuitOpen
from bus.config import dotted
from bus.delivery.store import NewDelivery
from bus.errors import (
    BadRequest,
    BusError,
    ClientClosedRequest,
    FieldError,
    InternalError,
    PayloadTooLarge,
    UnknownOperation,
    UnknownService,
    UnsupportedMediaType,
    UpstreamBadResponse,
    UpstreamTimeout,
    UpstreamUnavailable,
    error_envelope,
)
from bus.gateway import Gateway, ServiceRuntime
from bus.idempotency import HEADER, Claimed, StoredReply, check_key, fingerprint
from bus.resilience import Outcome, run_with_policy
from bus.security import ANONYMOUS, Consumer
from bus.upstream import translate_http_error
from schemas.base import subjects_of
from schemas.delivery import DeliveryAccepted
from schemas.envelope import Envelope

__all__ = [
    "Call",
    "Target",
    "authorise",
    "dedupe",
    "dispatch",
    "end_user_of",
    "enqueue",
    "field_errors_from",
    "handle_call",
    "identify",
    "limit",
    "normalise",
    "read_any_body",
    "read_body",
    "record",
    "resolve",
    "respond",
    "validate",
]

log = structlog.get_logger("lgsp.pipeline")


@dataclass(slots=True)
class Call:
    """The state of one call as it moves through the stages."""

    request_id: str
    service: str | None
    operation: str | None
    received_at: datetime
    started: float
    consumer: Consumer = ANONYMOUS
    outcome: Outcome = field(default_factory=Outcome)
    request_bytes: int = 0
    reply_headers: dict[str, str] = field(default_factory=dict)
    upstream_exchanges: list[dict[str, Any]] = field(default_factory=list)
    #: The caller's Idempotency-Key, once checked; the delivery id of a delivery attempt.
    idempotency_key: str | None = None
    delivery_id: str | None = None
    #: The stored reply this call was answered with (its Idempotency-Key was seen before).
    replay: StoredReply | None = None
    #: Whether a retry of this call cannot apply a write twice (a read, or a write whose
    #: upstream de-duplicates by the key): decides what a retryable failure does to the key.
    retry_safe: bool = True
    #: For the exchange record: the officer on whose behalf (X-User-Id), the kind of exchange,
    #: the capture level, the canonical request, the citizens named, the upstream and when the
    #: first attempt started and the last ended.
    end_user: str | None = None
    kind: Literal["call", "delivery", "callback", "audit"] = "call"
    capture: Literal["metadata", "full"] = "metadata"
    request_body: bytes | None = None
    subjects: set[str] = field(default_factory=set)
    upstream: str | None = None
    upstream_started_at: datetime | None = None
    upstream_ended_at: datetime | None = None
    #: Details without personal data (a callback's reference and the events it queued).
    detail: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """The service and operation a call resolved to."""

    service: ServiceRuntime
    spec: OperationSpec


# -- 1-3: security -------------------------------------------------------------------------


async def identify(gw: Gateway, request: Request) -> Consumer:
    return await gw.security.authenticator.identify(request.headers)


#: The header naming the officer on whose behalf a consumer calls.
END_USER_HEADER = "X-User-Id"
_END_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:/+-]{0,99}")


def end_user_of(request: Request) -> str | None:
    """The officer named by ``X-User-Id``: 1-100 characters of letters, digits and ``._@:/+-``
    (an officer code, an account name), else ``client.bad_request`` naming the header."""
    raw = request.headers.get(END_USER_HEADER)
    if raw is None:
        return None
    value = raw.strip()
    if not _END_USER.fullmatch(value):
        raise BadRequest(
            "the X-User-Id header is not an officer id",
            field_errors=[
                FieldError(
                    END_USER_HEADER,
                    "1-100 characters: letters, digits and . _ @ : / + -, starting with a "
                    "letter or digit",
                    "value_error",
                )
            ],
        )
    return value


def resolve(gw: Gateway, service: str, operation: str) -> Target:
    svc = gw.services.get(service)
    if svc is None:
        raise UnknownService(f"no service named {service!r}; GET /v1/services lists them")
    spec = svc.operations.get(operation)
    if spec is None:
        raise UnknownOperation(
            f"service {service!r} has no operation {operation!r} "
            f"(it has: {', '.join(sorted(svc.operations))})"
        )
    return Target(svc, spec)


async def authorise(gw: Gateway, consumer: Consumer, target: Target) -> None:
    await gw.security.policy.authorise(consumer, target.service.name, target.spec.name)


async def limit(gw: Gateway, consumer: Consumer, target: Target) -> Mapping[str, str]:
    """The RateLimit-* headers for the reply; raises RateLimited when over a limit."""
    return await gw.security.limiter.limit(consumer, target.service.name, target.spec.name)


# -- 4: validate ---------------------------------------------------------------------------


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "application/json").split(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused as soon as it is known to exceed ``max_bytes``, or when it
    is declared as anything but JSON."""
    if not _is_json(request.headers.get("content-type")):
        raise UnsupportedMediaType("send the body as JSON with Content-Type: application/json")
    return await read_any_body(request, max_bytes)


async def read_any_body(request: Request, max_bytes: int) -> bytes:
    """The request body whatever its media type, refused as soon as it is known to exceed
    ``max_bytes``."""
    declared = request.headers.get("content-length")
    if (
        declared is not None
        and declared.isascii()
        and declared.isdigit()
        and int(declared) > max_bytes
    ):
        raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {max_bytes}")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(f"the body exceeds the limit of {max_bytes} bytes")
            chunks.append(chunk)
    except ClientDisconnect as exc:
        raise ClientClosedRequest("the caller disconnected before sending the whole body") from exc
    return b"".join(chunks)


def _step(data: Any, part: str | int) -> tuple[bool, Any]:
    """Descend one level into the caller's JSON, if ``part`` is a key or index of it."""
    if isinstance(data, dict) and isinstance(part, str) and part in data:
        return True, data[part]
    if isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
        return True, data[part]
    return False, data


def _field_path(loc: tuple[str | int, ...], data: Any, keep_last: bool) -> str:
    """The dotted path of ``loc`` in the caller's own data.

    Pydantic puts the members of a union (``int``, ``str``, a model's name) into error locations;
    a caller never wrote those, so parts that are not keys or indexes of the data are dropped,
    except the last part when ``keep_last`` says it names a field absent from the data.
    """
    path: list[str | int] = []
    for i, part in enumerate(loc):
        found, data = _step(data, part)
        if found or (keep_last and i == len(loc) - 1) or data is _UNPARSED:
            path.append(part)
    return dotted(tuple(path)) or "body"


_UNPARSED = object()


def field_errors_from(
    errors: Iterable[Mapping[str, Any]], body: bytes | None = None
) -> list[FieldError]:
    """One :class:`FieldError` per refused field, named by its dotted path (``body`` if none).

    Errors about the same field (one per union member) are merged. Only the location, message
    and type are kept: the refused value itself may be personal data.
    """
    errors = list(errors)
    data: Any = _UNPARSED
    if body is not None and not any(err["type"] == "json_invalid" for err in errors):
        try:  # jiter, like the validation itself: bounded depth, never a RecursionError
            data = pydantic_core.from_json(body)
        except ValueError:
            data = _UNPARSED
    merged: dict[str, FieldError] = {}
    for err in errors:
        # A missing field, or a validator's own error on a field left at its default, names a
        # field absent from the data: its last location part is kept.
        names_field = err["type"] in ("missing", "value_error", "assertion_error")
        field = _field_path(tuple(err["loc"]), data, names_field)
        seen = merged.get(field)
        reason = str(err["msg"]).removeprefix("Value error, ")  # a validator's own words
        if seen is None:
            merged[field] = FieldError(field=field, reason=reason, type=err["type"])
        elif reason not in seen.reason:
            merged[field] = FieldError(field, f"{seen.reason}; or {reason}", seen.type)
    return list(merged.values())


def validate(body: bytes, target: Target) -> BaseModel:
    try:
        return target.spec.input_model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        errors = field_errors_from(exc.errors(include_url=False, include_input=False), body)
        noun = "field" if len(errors) == 1 else "fields"
        raise BadRequest(
            f"the request does not match {target.spec.name}: {len(errors)} {noun} refused",
            field_errors=errors,
        ) from exc


# -- 4b: idempotency and store-and-forward -------------------------------------------------


def _canonical(call: Call) -> bytes:
    """The validated input as canonical JSON: serialised once, after validation (step 4)."""
    assert call.request_body is not None, "the input was not validated"
    return call.request_body


async def dedupe(gw: Gateway, request: Request, target: Target, call: Call) -> StoredReply | None:
    """Claim the call's ``Idempotency-Key``, or return the reply stored under it.

    A key first used with another request is refused (``client.idempotency_key_reused``); a key
    whose first call is still being served is ``client.idempotency_in_progress``.
    """
    raw = request.headers.get(HEADER)
    if raw is None:
        return None
    key = check_key(raw)
    spec = target.spec
    claim = await gw.idempotency_store.begin(
        call.consumer.id,
        key,
        fingerprint(target.service.name, spec.name, _canonical(call)),
        now=gw.clock.now().timestamp(),
        ttl=gw.settings.idempotency_ttl,
        lock_seconds=target.service.config.timeout + 5.0,
    )
    if isinstance(claim, Claimed):
        call.idempotency_key = key
        call.retry_safe = spec.idempotent or spec.honours_idempotency_key
        return None
    call.replay = claim.reply
    return claim.reply


async def enqueue(gw: Gateway, target: Target, payload: BaseModel, call: Call) -> DeliveryAccepted:
    """Queue the validated input durably for the delivery worker; the caller gets its id."""
    spec = target.spec
    order_key = None
    if spec.order_by is not None:
        order_key = f"{target.service.name}:{getattr(payload, spec.order_by)}"
    delivery = await gw.delivery_store.enqueue(
        NewDelivery(
            consumer=call.consumer.id,
            service=target.service.name,
            operation=spec.name,
            payload=_canonical(call),
            request_id=call.request_id,
            order_key=order_key,
            max_attempts=target.service.config.delivery.attempts,
            end_user=call.end_user,
            agency=call.consumer.agency,
        ),
        now=gw.clock.now().timestamp(),
    )
    call.delivery_id = delivery.id
    gw.deliveries_waiting.set()
    status_url = f"/v1/deliveries/{delivery.id}"
    call.reply_headers["Location"] = status_url
    return DeliveryAccepted(delivery_id=delivery.id, status_url=status_url)


# -- 5-6: dispatch and normalise ------------------------------------------------------------


def counts_against_upstream(exc: BusError) -> bool:
    """Whether a failed attempt says the upstream is unwell (for its circuit breaker): it could
    not be reached, did not answer in time, or shed the call. A refusal or fault is an answer;
    an echo of another call's failure (a shared token refresh) was counted with that call."""
    return (
        isinstance(exc, UpstreamUnavailable | UpstreamTimeout)
        and not isinstance(exc, CircuitOpen)
        and not exc.echo
    )


async def dispatch(gw: Gateway, target: Target, payload: BaseModel, call: Call) -> Any:
    """Call the adapter inside the service's bulkhead, under the operation's deadline and
    retry policy, each attempt through the upstream's circuit breaker.

    Errors are translated here, at the boundary: httpx errors to ``upstream.*``; a pydantic
    error raised inside the adapter (an upstream reply it could not read) to
    ``upstream.bad_response``.
    """
    svc = target.service
    spec = target.spec
    assert svc.resources is not None, "the gateway was not started"
    ctx = Context(
        request_id=call.request_id,
        service=svc.name,
        operation=spec.name,
        consumer=call.consumer,
        resources=svc.resources,
        upstream_exchanges=call.upstream_exchanges,
        idempotency_key=call.delivery_id or call.idempotency_key,
        delivery_id=call.delivery_id,
        end_user=call.end_user,
    )
    if svc.upstream is not None:
        call.upstream = svc.upstream.base_url
    handler = spec.bind(svc.adapter)
    breaker = svc.breaker

    async def attempt() -> Any:
        ticket = breaker.acquire() if breaker is not None else 0  # open: CircuitOpen, no call
        call.outcome.attempts += 1
        if call.upstream_started_at is None:
            call.upstream_started_at = gw.clock.now()
        failed: bool | None = True  # cancelled by the deadline: no answer in time
        try:
            result = await handler(payload, ctx)
            failed = False
            return result
        except BusError as exc:
            failed = None if exc.echo else counts_against_upstream(exc)
            raise
        except httpx.HTTPError as exc:
            error = translate_http_error(exc)
            failed = counts_against_upstream(error)
            raise error from exc
        except ValidationError as exc:
            failed = False
            raise UpstreamBadResponse(
                f"the reply of {svc.name} could not be read as {spec.name}'s output"
            ) from exc
        except Exception:
            failed = None  # a bug of the adapter says nothing about the upstream
            raise
        finally:
            call.upstream_ended_at = gw.clock.now()
            if breaker is not None:
                breaker.release(ticket, failed)

    may_retry = spec.idempotent or (
        spec.honours_idempotency_key and ctx.idempotency_key is not None
    )
    svc.bulkhead.enter()
    try:
        return await run_with_policy(attempt, svc.policy, call.outcome, gw.sleep, retry=may_retry)
    finally:
        svc.bulkhead.leave()


def normalise(target: Target, result: Any) -> BaseModel:
    """The adapter's result as an instance of the operation's output model."""
    model = target.spec.output_model
    if type(result) is model:
        return result
    try:
        return model.model_validate(result, from_attributes=False)
    except ValidationError as exc:
        raise UpstreamBadResponse(
            f"the reply for {target.spec.name} does not match its output model"
        ) from exc


# -- 7-8: record and respond ----------------------------------------------------------------


def _error_code_of(envelope: bytes) -> str | None:
    """The error code inside a stored error envelope (for the record of its replay)."""
    try:
        code = pydantic_core.from_json(envelope)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) else None


async def record(
    gw: Gateway, call: Call, status: int, error: BusError | None, reply: bytes
) -> None:
    """Step 7: the exchange record, durable in the log before the reply leaves."""
    error_code = error.code if error is not None else None
    if error is None and call.replay is not None and status >= 400:
        error_code = _error_code_of(call.replay.body)
    await gw.exchange_recorder.record(
        Exchange(
            request_id=call.request_id,
            consumer=call.consumer.id,
            service=call.service,
            operation=call.operation,
            received_at=call.received_at,
            duration_ms=round((gw.clock.monotonic() - call.started) * 1000, 3),
            outcome="ok" if status < 400 and error is None else "error",
            http_status=status,
            error_code=error_code,
            attempts=call.outcome.attempts,
            request_bytes=call.request_bytes,
            reply_bytes=len(reply),
            upstream_exchanges=tuple(call.upstream_exchanges),
            delivery_id=call.delivery_id,
            replayed=call.replay is not None,
            kind=call.kind,
            agency=call.consumer.agency,
            end_user=call.end_user,
            upstream=call.upstream,
            upstream_started_at=call.upstream_started_at,
            upstream_ended_at=call.upstream_ended_at,
            replied_at=gw.clock.now(),
            request_body=call.request_body,
            reply_body=reply,
            subjects=tuple(call.subjects),
            capture=call.capture,
            detail=call.detail,
        )
    )


def respond(body: bytes, status: int, call: Call, error: BusError | None) -> Response:
    headers = {**call.reply_headers, "X-Request-ID": call.request_id}
    if error is not None:
        headers.update(error.headers)
        if error.retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    return Response(body, status_code=status, headers=headers, media_type="application/json")


# -- the whole path ---------------------------------------------------------------------


#: Longest service or operation name echoed back or logged; longer path segments are cut.
NAME_LIMIT = 100

#: Reply headers worth replaying with a stored idempotent reply.
_REPLAYED_HEADERS = ("Location",)


async def handle_call(gw: Gateway, request: Request, service: str, operation: str) -> Response:
    service, operation = service[:NAME_LIMIT], operation[:NAME_LIMIT]
    call = Call(
        request_id=request.state.request_id,
        service=service,
        operation=operation,
        received_at=gw.clock.now(),
        started=gw.clock.monotonic(),
    )
    error: BusError | None = None
    data: BaseModel | None = None
    status = 200
    stored: StoredReply | None = None
    try:
        gw.exchange_recorder.admit()  # no exchange without its record: refused while it cannot
        call.consumer = await identify(gw, request)  # 1
        call.end_user = end_user_of(request)
        target = resolve(gw, service, operation)
        call.capture = target.service.config.audit
        await authorise(gw, call.consumer, target)  # 2
        call.reply_headers.update(await limit(gw, call.consumer, target))  # 3
        body = await read_body(request, gw.settings.max_body_bytes)
        call.request_bytes = len(body)
        call.request_body = body
        payload = validate(body, target)  # 4
        call.request_body = payload.model_dump_json().encode()
        call.subjects |= subjects_of(payload)
        stored = await dedupe(gw, request, target, call)
        if stored is not None:
            pass  # answered before: the stored reply is sent again, nothing is called
        elif target.service.mode_of(target.spec.name) == "async":
            data, status = await enqueue(gw, target, payload, call), 202
        else:
            result = await dispatch(gw, target, payload, call)  # 5
            data = normalise(target, result)  # 6
            call.subjects |= subjects_of(data)
    except BusError as exc:
        error = exc
    except Exception:  # the last net: a bug in the bus or an adapter must not reach the caller
        log.exception("call failed unexpectedly", service=service, operation=operation)
        error = InternalError()
    if stored is not None:
        body_out, status = stored.body, stored.status
        call.reply_headers.update(stored.headers)
        call.reply_headers["Idempotent-Replayed"] = "true"
    else:
        if error is not None:
            error.request_id = call.request_id
            envelope = error_envelope(call.request_id, service, operation, error)
            status = error.http_status
        else:
            envelope = Envelope(
                request_id=call.request_id,
                service=service,
                operation=operation,
                status="ok",
                data=data,
            )
        body_out = envelope.model_dump_json().encode()
    try:
        await record(gw, call, status, error, body_out)  # 7
    except Exception:  # fail closed: no reply leaves without its exchange record
        log.exception("exchange record failed; refusing the reply")
        error = InternalError("the exchange could not be recorded; the call is refused")
        error.request_id = call.request_id
        envelope = error_envelope(call.request_id, service, operation, error)
        body_out = envelope.model_dump_json().encode()
        status = error.http_status
    if call.idempotency_key is not None:
        await _settle_key(gw, call, status, error, body_out)
    return respond(body_out, status, call, error)  # 8


async def _settle_key(
    gw: Gateway, call: Call, status: int, error: BusError | None, body: bytes
) -> None:
    """Keep the reply under the caller's key, or free the key so that the caller's retry with
    it is served afresh: freed when nothing reached the upstream (an open circuit, a full
    bulkhead, a store that could not queue), or when the failure is retryable and a retry
    cannot apply a write twice. A retryable failure of a write the upstream does not
    de-duplicate (a 504 after the write may have been applied) is kept: the same key then gets
    the same answer instead of a second write."""
    assert call.idempotency_key is not None
    store = gw.idempotency_store
    free = error is not None and (
        call.outcome.attempts == 0 or (error.retryable and call.retry_safe)
    )
    try:
        if free:
            await store.release(call.consumer.id, call.idempotency_key)
        else:
            headers = {
                h: call.reply_headers[h] for h in _REPLAYED_HEADERS if h in call.reply_headers
            }
            reply = StoredReply(status=status, body=body, headers=headers)
            await store.complete(
                call.consumer.id, call.idempotency_key, reply, gw.clock.now().timestamp()
            )
    except Exception:  # the reply is sent: the key stays locked until its lock expires
        log.exception("idempotency key could not be settled", request_id=call.request_id)
