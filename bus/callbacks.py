"""Inbound callbacks: a national platform calls the bus (``POST /v1/callbacks/{service}``).

The path of one inbound message::

    admit     refused at once while the exchange log cannot be written (the platform retries)
    resolve   the service must exist and its adapter declare a handler (``adapters.base.callback``)
    read      the body, bounded by LGSP_MAX_BODY_BYTES, whatever its media type
    verify    the adapter's handler checks the platform's proof (checksum, shared key) and
              answers in the platform's own terms, naming the events to deliver
    queue     each event is queued for the consumer's webhook under an id derived from
              (service, type, key): a repeated message queues nothing new
    record    the exchange, ``kind="callback"``, durable before the reply
    reply     the adapter's body; 503 if the events could not be queued, so the platform
              sends the message again and nothing is lost

The platform is not a consumer of the bus: it holds no bus credential, and the exchange record
names it as ``platform:{service}``. What authenticates the message is the adapter's check.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime

import httpx
import structlog
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from adapters.base import CallbackReply, Context, Inbound
from bus.delivery.store import Delivery, NewDelivery
from bus.errors import (
    BadRequest,
    BusError,
    InternalError,
    UnknownService,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
    error_envelope,
)
from bus.gateway import Gateway, ServiceRuntime
from bus.pipeline import NAME_LIMIT, Call, read_any_body, record
from bus.security import Consumer
from bus.webhooks import post_event, redacted
from schemas.base import subjects_of
from schemas.event import EventEnvelope

__all__ = ["event_id", "handle_callback", "is_event", "platform_consumer", "send_event"]

log = structlog.get_logger("lgsp.callbacks")


def platform_consumer(service: str) -> Consumer:
    """How a platform calling the bus appears in the exchange log."""
    return Consumer(id=f"platform:{service}", name=f"platform of {service}")


def event_id(service: str, event_type: str, key: str) -> str:
    """The delivery id of one event: the same fact always gets the same id."""
    digest = hashlib.sha256(f"{service}\0{event_type}\0{key}".encode()).hexdigest()
    return "dlv_" + digest[:24]


def _runtime(gw: Gateway, service: str) -> ServiceRuntime:
    svc = gw.services.get(service)
    if svc is None or svc.entry.adapter.inbound_spec is None:
        raise UnknownService(f"no service named {service!r} takes callbacks")
    return svc


async def _queue_events(
    gw: Gateway, svc: ServiceRuntime, reply: CallbackReply, call: Call
) -> list[str]:
    """Queue the reply's events; the ids of those that were new."""
    queued: list[str] = []
    now = gw.clock.now().timestamp()
    for event in reply.events:
        delivery_id = event_id(svc.name, event.type, event.key)
        delivery = await gw.delivery_store.enqueue(
            NewDelivery(
                consumer=event.consumer,
                service=svc.name,
                operation=event.type,
                payload=event.data.model_dump_json().encode(),
                request_id=call.request_id,
                order_key=None if event.order_key is None else f"{svc.name}:{event.order_key}",
                max_attempts=svc.config.delivery.attempts,
                id=delivery_id,
            ),
            now=now,
        )
        if delivery.created:
            queued.append(delivery_id)
        call.subjects |= subjects_of(event.data)
    if queued:
        gw.deliveries_waiting.set()
    return queued


def _envelope(call: Call, error: BusError) -> tuple[int, bytes]:
    """The bus's own error reply to a platform (the adapter's reply could not be made)."""
    error.request_id = call.request_id
    body = error_envelope(call.request_id, call.service, "callback", error)
    return error.http_status, body.model_dump_json().encode()


async def handle_callback(gw: Gateway, request: Request, service: str) -> Response:
    service = service[:NAME_LIMIT]
    call = Call(
        request_id=request.state.request_id,
        service=service,
        operation="callback",
        received_at=gw.clock.now(),
        started=gw.clock.monotonic(),
        consumer=platform_consumer(service),
        kind="callback",
    )
    error: BusError | None = None
    reply: CallbackReply | None = None
    try:
        gw.exchange_recorder.admit()
        svc = _runtime(gw, service)
        spec = svc.entry.adapter.inbound_spec
        assert spec is not None
        assert svc.resources is not None
        call.capture = svc.config.audit
        body = await read_any_body(request, gw.settings.max_body_bytes)
        call.request_bytes = len(body)
        inbound = Inbound(
            body=body,
            headers={k.lower(): v for k, v in request.headers.items()},
            client=request.client.host if request.client else None,
        )
        ctx = Context(
            request_id=call.request_id,
            service=svc.name,
            operation="callback",
            consumer=call.consumer,
            resources=svc.resources,
            upstream_exchanges=call.upstream_exchanges,
        )
        try:
            reply = await asyncio.wait_for(spec.bind(svc.adapter)(inbound, ctx), svc.config.timeout)
        except TimeoutError as exc:
            raise UpstreamTimeout("the callback handler did not finish in time") from exc
        error = reply.refused
        # The record keeps the body as the adapter allows (a shared key removed); a message
        # whose handler failed keeps none: it may hold a secret the handler never got to remove.
        call.request_body = body if reply.recorded_body is None else reply.recorded_body
        detail: dict[str, object] = {}
        if reply.reference is not None:
            detail["reference"] = reply.reference
        if reply.refused is None and reply.events:
            undeclared = sorted({e.type for e in reply.events} - set(spec.events))
            if undeclared:  # an adapter bug: never queue what the worker would send upstream
                log.error("callback handler named undeclared events", events=undeclared)
                raise InternalError("the callback handler named events it does not declare")
            try:
                queued = await _queue_events(gw, svc, reply, call)
            except Exception as exc:  # the store failed: the platform must send it again
                log.exception("callback events could not be queued", service=service)
                raise UpstreamUnavailable(
                    "the bus could not keep the message; send it again"
                ) from exc
            detail["events"] = [e.type for e in reply.events]
            detail["queued"] = len(queued)
            detail["duplicate"] = not queued
        call.detail = detail
    except BusError as exc:
        error, reply = exc, None
    except Exception:  # a bug in the bus or the adapter: never a stack trace to the platform
        log.exception("callback failed unexpectedly", service=service)
        error, reply = InternalError(), None
    if reply is not None:
        status = reply.status
        body_out = json.dumps(reply.body, ensure_ascii=False).encode()
    else:
        assert error is not None
        status, body_out = _envelope(call, error)
    try:
        await record(gw, call, status, error, body_out)
    except Exception:  # fail closed: the platform will send the message again
        log.exception("callback exchange record failed; refusing the reply")
        failed = InternalError("the exchange could not be recorded; send the message again")
        status, body_out = _envelope(call, failed)
    headers = {"X-Request-ID": call.request_id}
    return Response(body_out, status_code=status, headers=headers, media_type="application/json")


def is_event(svc: ServiceRuntime, name: str) -> bool:
    """Whether a queued message of ``svc`` named ``name`` is an event for a webhook."""
    inbound = svc.entry.adapter.inbound_spec
    return inbound is not None and name in inbound.events


async def send_event(gw: Gateway, svc: ServiceRuntime, d: Delivery, call: Call) -> bytes:
    """One delivery attempt of a queued event to its consumer's webhook; the result to keep."""
    inbound = svc.entry.adapter.inbound_spec
    assert inbound is not None
    try:
        data = inbound.events[d.operation].model_validate_json(d.payload)
    except ValidationError as exc:
        raise BadRequest("the queued event no longer matches its payload model") from exc
    call.subjects |= subjects_of(data)
    webhook = await gw.webhook_store.get(d.consumer)
    if webhook is None:
        raise UpstreamRejected(
            f"consumer {d.consumer!r} has no webhook; register one (lgsp consumers webhook) "
            "and retry the delivery (lgsp deliveries retry)"
        )
    call.upstream = redacted(webhook.url)
    envelope = EventEnvelope(
        id=d.id,
        type=d.operation,
        service=d.service,
        time=datetime.fromtimestamp(d.created_at, UTC),
        data=data,
    )
    body = envelope.model_dump_json().encode()
    assert gw.http is not None, "the gateway was not started"
    call.outcome.attempts += 1
    call.upstream_started_at = gw.clock.now()
    try:
        status = await post_event(
            gw.http,
            webhook,
            d.id,
            body,
            int(gw.clock.now().timestamp()),
            httpx.Timeout(svc.config.timeout, connect=svc.config.connect_timeout),
        )
    finally:
        call.upstream_ended_at = gw.clock.now()
    return json.dumps({"webhook": call.upstream, "http_status": status}).encode()
