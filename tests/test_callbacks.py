"""Inbound callbacks and consumers' webhooks, independent of any national platform: the adapter
contract's ``@callback``, ``POST /v1/callbacks/{service}`` (events queued once per fact, the
exchange recorded as ``kind="callback"``), the worker's signed webhook delivery with its retries
and dead letters, :mod:`bus.webhooks`, the admin webhook routes and the adapters' state."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import respx
from fastapi import FastAPI
from pydantic import Field
from starlette.types import Message, Receive, Scope, Send

from adapters.base import (
    Adapter,
    CallbackReply,
    Context,
    Event,
    Inbound,
    Unauthenticated,
    callback,
    operation,
)
from bus import create_app
from bus.app import gateway_of
from bus.audit import Exchange, MemoryRecorder
from bus.callbacks import event_id
from bus.delivery.store import Delivery
from bus.errors import CATALOGUE
from bus.gateway import Gateway
from bus.loopback import WebhookInbox, serving
from bus.registry import AdapterRegistry
from bus.security.consumers import Consumers
from bus.security.store import SqliteConsumerStore
from bus.settings import Settings
from bus.state import MAX_KEY, MAX_VALUE, ScopedState, SqliteStateStore
from bus.webhooks import SqliteWebhookStore, check_url, register, signature
from schemas.base import CanonicalModel
from tests.support import StepClock, running
from tests.test_admin_api import TOKEN, admin_app

pytestmark = pytest.mark.anyio

SERVICE = "hooks"
CONSUMER = "one-stop"
EVENT = "thing.happened"
CRASH_TEXT = "adapter-internal-detail-do-not-echo"
HOOK_URL = "https://hooks.example.test/events"
CALLBACK = f"/v1/callbacks/{SERVICE}"


# -- a tiny adapter with an inbound handler ---------------------------------------------------


class Nothing(CanonicalModel):
    pass


class Happened(CanonicalModel):
    key: str = Field(max_length=50)
    note: str = Field(max_length=200)


class HookAdapter(Adapter):
    """Takes a platform's notice; its JSON body says how the handler behaves:
    ``{"do": "event" | "refuse" | "crash" | "hang", "key": ..., "type": ...}``."""

    requires_upstream = False
    seen: ClassVar[list[Inbound]] = []

    @operation("ping", input=Nothing, output=Nothing)
    async def ping(self, request: Nothing, ctx: Context) -> Nothing:
        """Answer nothing (an adapter needs one operation)."""
        return Nothing()

    @callback(events={EVENT: Happened})
    async def notice(self, inbound: Inbound, ctx: Context) -> CallbackReply:
        """A platform's notice of a fact."""
        type(self).seen.append(inbound)
        message = json.loads(inbound.body)
        if message["do"] == "crash":
            raise RuntimeError(CRASH_TEXT)
        if message["do"] == "hang":
            await asyncio.Event().wait()
        key = message["key"]
        event = Event(
            type=message.get("type", EVENT),
            consumer=CONSUMER,
            key=key,
            data=Happened(key=key, note="seen by the platform"),
        )
        if message["do"] == "refuse":
            return CallbackReply(
                body={"code": "97", "message": "checksum mismatch"},
                status=400,
                events=(event,),
                refused=Unauthenticated("the notice's checksum is wrong"),
                reference=key,
            )
        return CallbackReply(body={"code": "00", "message": "ok"}, events=(event,), reference=key)


class PlainAdapter(Adapter):
    """An adapter without an inbound handler."""

    requires_upstream = False

    @operation("ping", input=Nothing, output=Nothing)
    async def ping(self, request: Nothing, ctx: Context) -> Nothing:
        """Answer nothing."""
        return Nothing()


def registry() -> AdapterRegistry:
    found = AdapterRegistry()
    found.register("hooks", HookAdapter)
    found.register("plain", PlainAdapter)
    return found


def bus_yaml(timeout: float = 5) -> str:
    return f"""\
version: 1
services:
  {SERVICE}:
    adapter: hooks
    timeout: {timeout}
    delivery: {{attempts: 3, initial_wait: 0.01, max_wait: 0.05, jitter: 0}}
  plain:
    adapter: plain
"""


@pytest.fixture
def router() -> respx.MockRouter:
    return respx.MockRouter(assert_all_called=False)


def build(
    settings: Settings,
    router: respx.MockRouter | None = None,
    adapters: AdapterRegistry | None = None,
) -> tuple[FastAPI, MemoryRecorder]:
    """The bus with the test adapters; webhooks reach ``router`` if given, else the network
    (loopback only, see conftest)."""
    recorder = MemoryRecorder()
    transport = None if router is None else httpx.MockTransport(router.async_handler)
    app = create_app(
        settings, registry=adapters or registry(), recorder=recorder, transport=transport
    )
    return app, recorder


def quiet(settings_for: Callable[..., Settings], timeout: float = 5) -> Settings:
    """Settings without an in-process worker: queued events stay as they were queued."""
    return settings_for(bus_yaml(timeout), delivery_worker="off")


def working(settings_for: Callable[..., Settings]) -> Settings:
    """Settings with an in-process worker that looks for due deliveries often."""
    return settings_for(bus_yaml(), delivery_poll_seconds=0.02)


def notice(do: str = "event", key: str = "ref-0001", **extra: str) -> dict[str, str]:
    return {"do": do, "key": key, **extra}


def callbacks_of(recorder: MemoryRecorder) -> list[Exchange]:
    return [e for e in recorder.exchanges if e.kind == "callback"]


async def queued(gw: Gateway) -> list[Delivery]:
    return await gw.delivery_store.list(service=SERVICE)


async def settled(gw: Gateway, delivery_id: str, *states: str) -> Delivery:
    """Poll the store until the delivery reaches one of ``states`` (5 s at most)."""
    found = None
    for _ in range(500):
        found = await gw.delivery_store.get(delivery_id)
        if found is not None and found.state in states:
            return found
        await asyncio.sleep(0.01)
    raise AssertionError(f"{delivery_id} stayed {None if found is None else found.state}")


def assert_error_envelope(reply: httpx.Response, code: str) -> dict[str, Any]:
    """The reply is the canonical error envelope of ``code``, with its catalogue status."""
    assert reply.status_code == CATALOGUE[code].http_status, reply.text
    body = reply.json()
    assert body["status"] == "error"
    assert body["data"] is None
    assert body["error"]["code"] == code
    assert body["request_id"] == reply.headers["x-request-id"]
    error: dict[str, Any] = body["error"]
    return error


# -- 1. the adapter contract ------------------------------------------------------------------


def test_two_callback_handlers_on_one_adapter_are_refused() -> None:
    """An adapter has one inbound handler: declaring two is a TypeError naming both."""
    with pytest.raises(TypeError, match="one callback handler per adapter") as raised:

        class Twice(Adapter):
            @callback(events={"a.happened": Happened})
            async def first(self, inbound: Inbound, ctx: Context) -> CallbackReply:
                return CallbackReply(body={})

            @callback(events={"b.happened": Happened})
            async def second(self, inbound: Inbound, ctx: Context) -> CallbackReply:
                return CallbackReply(body={})

    assert "first" in str(raised.value)
    assert "second" in str(raised.value)


def test_an_event_type_named_like_an_operation_is_refused() -> None:
    """An event type equal to an operation name would make the worker send the event upstream
    as a call of that operation: the class is refused."""
    with pytest.raises(TypeError, match="both an operation and an event type"):

        class Clash(Adapter):
            @operation("ping", input=Nothing, output=Nothing)
            async def ping(self, request: Nothing, ctx: Context) -> Nothing:
                return Nothing()

            @callback(events={"ping": Happened})
            async def notice(self, inbound: Inbound, ctx: Context) -> CallbackReply:
                return CallbackReply(body={})


async def test_a_handler_named_inbound_works_or_is_refused(
    settings_for: Callable[..., Settings],
) -> None:
    """A handler method named ``inbound`` (once the name of a class attribute) is either
    refused when the class is made, or reached by the callback route like any other."""
    try:

        class Named(Adapter):
            requires_upstream = False

            @operation("ping", input=Nothing, output=Nothing)
            async def ping(self, request: Nothing, ctx: Context) -> Nothing:
                return Nothing()

            @callback(events={EVENT: Happened})
            async def inbound(  # type: ignore[override]
                self, inbound: Inbound, ctx: Context
            ) -> CallbackReply:
                return CallbackReply(body={"code": "00"})

    except TypeError:
        return  # refused at definition: the integrator learns at once
    adapters = AdapterRegistry()
    adapters.register("hooks", Named)
    adapters.register("plain", PlainAdapter)
    app, _ = build(quiet(settings_for), adapters=adapters)
    async with running(app) as client:
        reply = await client.post(CALLBACK, json=notice())
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"code": "00"}


# -- 2..7. POST /v1/callbacks/{service} -------------------------------------------------------


@pytest.mark.parametrize("service", ["plain", "nowhere"])
async def test_a_service_that_takes_no_callbacks_is_a_404(
    service: str, settings_for: Callable[..., Settings]
) -> None:
    """A service whose adapter has no handler, and an unknown service, answer 404
    client.unknown_service with the caller's request id; never a 500."""
    app, recorder = build(quiet(settings_for))
    async with running(app) as client:
        reply = await client.post(
            f"/v1/callbacks/{service}", json=notice(), headers={"X-Request-ID": "platform-req-42"}
        )
    assert_error_envelope(reply, "client.unknown_service")
    assert reply.json()["request_id"] == "platform-req-42"
    assert reply.headers["x-request-id"] == "platform-req-42"
    [record] = callbacks_of(recorder)
    assert record.error_code == "client.unknown_service"
    assert record.consumer == f"platform:{service}"


async def test_an_event_is_queued_once_under_its_fact_id(
    settings_for: Callable[..., Settings],
) -> None:
    """The handler sees the body and lower-cased headers; its event is queued once under
    event_id(service, type, key); the platform's repeat queues nothing new. Each exchange is
    recorded as kind=callback by platform:{service}, the repeat marked as a duplicate."""
    HookAdapter.seen.clear()
    app, recorder = build(quiet(settings_for))
    async with running(app) as client:
        gw = gateway_of(app)
        first = await client.post(CALLBACK, json=notice(), headers={"X-Platform-Sig": "abc"})
        again = await client.post(CALLBACK, json=notice(), headers={"X-Platform-Sig": "abc"})
        deliveries = await queued(gw)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json() == {"code": "00", "message": "ok"}
    assert HookAdapter.seen[0].headers["x-platform-sig"] == "abc"
    assert json.loads(HookAdapter.seen[0].body) == notice()
    [delivery] = deliveries
    assert delivery.id == event_id(SERVICE, EVENT, "ref-0001")
    assert delivery.id.startswith("dlv_")
    assert (delivery.consumer, delivery.service, delivery.operation) == (CONSUMER, SERVICE, EVENT)
    assert delivery.state == "queued"
    assert delivery.request_id == first.headers["x-request-id"]
    assert delivery.max_attempts == 3
    assert json.loads(delivery.payload) == {"key": "ref-0001", "note": "seen by the platform"}
    records = callbacks_of(recorder)
    assert [r.request_id for r in records] == [
        first.headers["x-request-id"],
        again.headers["x-request-id"],
    ]
    for r in records:
        assert (r.consumer, r.service, r.operation) == (f"platform:{SERVICE}", SERVICE, "callback")
        assert (r.outcome, r.http_status, r.error_code) == ("ok", 200, None)
    assert records[0].detail == {
        "reference": "ref-0001",
        "events": [EVENT],
        "queued": 1,
        "duplicate": False,
    }
    assert records[1].detail == {
        "reference": "ref-0001",
        "events": [EVENT],
        "queued": 0,
        "duplicate": True,
    }


async def test_a_repeat_with_the_same_request_id_is_still_a_duplicate(
    settings_for: Callable[..., Settings],
) -> None:
    """A platform that resends a message with the same X-Request-ID header queues nothing new,
    and the record says so (duplicate=true, queued=0)."""
    app, recorder = build(quiet(settings_for))
    headers = {"X-Request-ID": "paygov-msg-000123"}
    async with running(app) as client:
        await client.post(CALLBACK, json=notice(), headers=headers)
        await client.post(CALLBACK, json=notice(), headers=headers)
        assert len(await queued(gateway_of(app))) == 1
    repeat = callbacks_of(recorder)[1]
    assert repeat.detail is not None
    assert (repeat.detail["duplicate"], repeat.detail["queued"]) == (True, 0)


async def test_an_undeclared_event_type_is_not_queued(
    settings_for: Callable[..., Settings],
) -> None:
    """A handler emitting an event type it did not declare is an adapter bug: the message is
    not acknowledged and nothing undeliverable is queued."""
    app, recorder = build(quiet(settings_for))
    async with running(app) as client:
        reply = await client.post(CALLBACK, json=notice(type="thing.undeclared"))
        deliveries = await queued(gateway_of(app))
    assert deliveries == []
    assert reply.status_code >= 500
    assert callbacks_of(recorder)[0].outcome == "error"


async def test_a_refused_message_gets_the_handlers_answer_and_queues_nothing(
    settings_for: Callable[..., Settings],
) -> None:
    """A CallbackReply with ``refused``: the platform gets the handler's own body and status,
    the exchange is an error with the refusal's code, and its events are not queued."""
    app, recorder = build(quiet(settings_for))
    async with running(app) as client:
        reply = await client.post(CALLBACK, json=notice("refuse"))
        deliveries = await queued(gateway_of(app))
    assert reply.status_code == 400
    assert reply.json() == {"code": "97", "message": "checksum mismatch"}
    assert deliveries == []
    [record] = callbacks_of(recorder)
    assert (record.outcome, record.http_status) == ("error", 400)
    assert record.error_code == "client.unauthenticated"
    assert record.detail == {"reference": "ref-0001"}


async def test_a_crashing_handler_is_a_500_without_its_details(
    settings_for: Callable[..., Settings],
) -> None:
    """An unexpected exception in the handler: 500 bus.internal envelope, no stack trace nor
    exception text in the body, and the exchange is recorded."""
    app, recorder = build(quiet(settings_for))
    async with running(app) as client:
        reply = await client.post(CALLBACK, json=notice("crash"))
    assert_error_envelope(reply, "bus.internal")
    assert CRASH_TEXT not in reply.text
    assert "Traceback" not in reply.text
    assert "RuntimeError" not in reply.text
    [record] = callbacks_of(recorder)
    assert (record.outcome, record.error_code) == ("error", "bus.internal")


async def test_a_handler_slower_than_the_timeout_is_upstream_timeout(
    settings_for: Callable[..., Settings],
) -> None:
    """A handler still running at the service's timeout is cut off: upstream.timeout envelope,
    recorded, nothing queued."""
    app, recorder = build(quiet(settings_for, timeout=0.2))
    async with running(app) as client:
        reply = await client.post(CALLBACK, json=notice("hang"))
        deliveries = await queued(gateway_of(app))
    assert_error_envelope(reply, "upstream.timeout")
    assert deliveries == []
    [record] = callbacks_of(recorder)
    assert record.error_code == "upstream.timeout"


async def test_a_store_that_cannot_queue_makes_the_platform_retry(
    settings_for: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The delivery store fails: 503 upstream.unavailable (the platform sends the message
    again), recorded; once the store works, the platform's repeat queues the event."""
    app, recorder = build(quiet(settings_for))
    async with running(app) as client:
        gw = gateway_of(app)

        async def broken(*args: Any, **kwargs: Any) -> Delivery:
            raise OSError("disk full")

        monkeypatch.setattr(gw.delivery_store, "enqueue", broken)
        refused = await client.post(CALLBACK, json=notice())
        monkeypatch.undo()
        accepted = await client.post(CALLBACK, json=notice())
        deliveries = await queued(gw)
    error = assert_error_envelope(refused, "upstream.unavailable")
    assert error["retryable"] is True
    assert "disk full" not in refused.text
    assert accepted.status_code == 200
    assert [d.id for d in deliveries] == [event_id(SERVICE, EVENT, "ref-0001")]
    first, second = callbacks_of(recorder)
    assert (first.outcome, first.error_code) == ("error", "upstream.unavailable")
    assert (second.outcome, second.detail and second.detail["duplicate"]) == ("ok", False)


# -- 8, 9. delivery to the consumer's webhook -------------------------------------------------


class Tap:
    """An ASGI app that keeps each request's headers and body, then hands it to ``inbox``."""

    def __init__(self, inbox: WebhookInbox) -> None:
        self.app = inbox.app
        self.requests: list[tuple[dict[str, str], bytes]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self.requests.append((headers, body))
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


@asynccontextmanager
async def with_inbox() -> AsyncIterator[tuple[WebhookInbox, Tap, str]]:
    inbox = WebhookInbox()
    tap = Tap(inbox)
    async with serving(tap) as url:
        yield inbox, tap, f"{url}/events"


@pytest.mark.live
async def test_the_worker_delivers_a_signed_event_to_the_webhook(
    settings_for: Callable[..., Settings],
) -> None:
    """A consumer's webhook on a real loopback port: the worker POSTs the event with a valid
    Standard Webhooks signature, an envelope of id/type/service/time/data, and the delivery
    ends ``delivered`` with the webhook's HTTP status in its result."""
    app, recorder = build(working(settings_for))
    async with with_inbox() as (inbox, tap, url), running(app) as client:
        gw = gateway_of(app)
        hook = await register(gw.webhook_store, CONSUMER, url, gw.clock.now().timestamp())
        inbox.secret = hook.secret
        reply = await client.post(CALLBACK, json=notice())
        assert reply.status_code == 200
        received = await inbox.wait_for(EVENT, within=10)
        delivery = await settled(gw, event_id(SERVICE, EVENT, "ref-0001"), "delivered")
    assert received.signature_ok
    assert received.id == delivery.id
    assert received.data == {"key": "ref-0001", "note": "seen by the platform"}
    [(headers, body)] = tap.requests
    assert inbox.verify(headers, body)
    assert headers["webhook-id"] == delivery.id
    assert headers["webhook-signature"].startswith("v1,")
    envelope = json.loads(body)
    assert set(envelope) == {"id", "type", "service", "time", "data"}
    assert (envelope["id"], envelope["type"], envelope["service"]) == (delivery.id, EVENT, SERVICE)
    assert datetime.fromisoformat(envelope["time"]).timestamp() == delivery.created_at
    assert delivery.attempts == 1
    assert delivery.result is not None
    assert json.loads(delivery.result) == {"webhook": url, "http_status": 200}
    [attempt] = [e for e in recorder.exchanges if e.kind == "delivery"]
    assert (attempt.consumer, attempt.operation, attempt.outcome) == (CONSUMER, EVENT, "ok")
    assert attempt.upstream == url


@pytest.mark.live
async def test_a_tampered_event_fails_the_inbox_check(
    settings_for: Callable[..., Settings],
) -> None:
    """The signature covers the body: the same request with one byte changed does not verify,
    nor does it verify under another secret."""
    app, _ = build(working(settings_for))
    async with with_inbox() as (inbox, tap, url), running(app) as client:
        gw = gateway_of(app)
        hook = await register(gw.webhook_store, CONSUMER, url, gw.clock.now().timestamp())
        inbox.secret = hook.secret
        await client.post(CALLBACK, json=notice())
        await inbox.wait_for(EVENT, within=10)
    [(headers, body)] = tap.requests
    assert inbox.verify(headers, body)
    assert not inbox.verify(headers, body.replace(b"ref-0001", b"ref-0002"))
    other = WebhookInbox(secret="whsec_" + base64.b64encode(b"k" * 32).decode())
    assert not other.verify(headers, body)


async def test_a_failing_webhook_is_retried_until_it_takes_the_event(
    settings_for: Callable[..., Settings], router: respx.MockRouter
) -> None:
    """The webhook answers 500, then 200: the event is sent again and delivered, two attempts,
    the same webhook-id both times."""
    route = router.post(HOOK_URL).mock(side_effect=[httpx.Response(500), httpx.Response(200)])
    app, _ = build(working(settings_for), router)
    async with running(app) as client:
        gw = gateway_of(app)
        await register(gw.webhook_store, CONSUMER, HOOK_URL, gw.clock.now().timestamp())
        await client.post(CALLBACK, json=notice())
        delivery = await settled(gw, event_id(SERVICE, EVENT, "ref-0001"), "delivered")
        attempts = await gw.delivery_store.attempts(delivery.id)
    assert route.call_count == 2
    assert {c.request.headers["webhook-id"] for c in route.calls} == {delivery.id}
    assert delivery.attempts == 2
    assert [a.outcome for a in attempts] == ["error", "ok"]
    assert attempts[0].error_code == "upstream.unavailable"
    assert delivery.result is not None
    assert json.loads(delivery.result)["http_status"] == 200


async def test_a_webhook_answering_410_is_dead_at_once(
    settings_for: Callable[..., Settings], router: respx.MockRouter
) -> None:
    """410 Gone: the receiver will never take the event; dead after one attempt with
    upstream.rejected."""
    route = router.post(HOOK_URL).respond(410)
    app, _ = build(working(settings_for), router)
    async with running(app) as client:
        gw = gateway_of(app)
        await register(gw.webhook_store, CONSUMER, HOOK_URL, gw.clock.now().timestamp())
        await client.post(CALLBACK, json=notice())
        dead = await settled(gw, event_id(SERVICE, EVENT, "ref-0001"), "dead", "delivered")
    assert dead.state == "dead"
    assert route.call_count == 1
    assert dead.attempts == 1
    assert dead.last_error_code == "upstream.rejected"


async def test_an_event_without_a_webhook_waits_dead_until_one_is_registered(
    settings_for: Callable[..., Settings], router: respx.MockRouter
) -> None:
    """No webhook for the consumer: dead with a message saying to register one; once one is
    registered, the operator's retry delivers it."""
    route = router.post(HOOK_URL).respond(204)
    app, _ = build(working(settings_for), router)
    async with running(app) as client:
        gw = gateway_of(app)
        await client.post(CALLBACK, json=notice())
        delivery_id = event_id(SERVICE, EVENT, "ref-0001")
        dead = await settled(gw, delivery_id, "dead", "delivered")
        assert route.call_count == 0
        await register(gw.webhook_store, CONSUMER, HOOK_URL, gw.clock.now().timestamp())
        await gw.delivery_store.retry(delivery_id, gw.clock.now().timestamp())
        gw.deliveries_waiting.set()
        delivered = await settled(gw, delivery_id, "delivered", "dead")
    assert dead.state == "dead"
    assert dead.attempts == 1
    assert dead.last_error_code == "upstream.rejected"
    assert dead.last_error_message is not None
    assert "register one" in dead.last_error_message
    assert CONSUMER in dead.last_error_message
    assert delivered.state == "delivered"
    assert route.call_count == 1
    assert delivered.result is not None
    assert json.loads(delivered.result)["http_status"] == 204


# -- 10. bus.webhooks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example.test/events",
        "javascript:alert(1)",
        "hooks.example.test/events",
        "http:///events",
        "https://",
        "https://user:pass@hooks.example.test/events",
        "https://token@hooks.example.test/events",
        "https://:pass@hooks.example.test/events",
        "https://hooks.example.test/" + "x" * 2000,
    ],
)
def test_check_url_refuses_what_cannot_be_a_webhook(url: str) -> None:
    """Only an http(s) URL with a host, without credentials and not too long, is a webhook."""
    with pytest.raises(ValueError, match="webhook"):
        check_url(url)


def test_check_url_accepts_http_and_https_and_strips_blanks() -> None:
    assert check_url(" https://hooks.example.test/events?x=1 ") == (
        "https://hooks.example.test/events?x=1"
    )
    assert check_url("http://127.0.0.1:8080/hook") == "http://127.0.0.1:8080/hook"


def test_signature_is_the_standard_webhooks_scheme() -> None:
    """``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body`` keyed with the base64-decoded
    bytes after ``whsec_``, computed here independently."""
    key = bytes(range(32))
    secret = "whsec_" + base64.b64encode(key).decode()
    body = b'{"id":"dlv_1","data":{"x":"\xc3\xa9"}}'
    expected = base64.b64encode(
        hmac.new(key, b"dlv_1.1700000000." + body, hashlib.sha256).digest()
    ).decode()
    assert signature(secret, "dlv_1", 1_700_000_000, body) == "v1," + expected
    assert signature(secret, "dlv_1", 1_700_000_001, body) != "v1," + expected
    assert signature(secret, "dlv_2", 1_700_000_000, body) != "v1," + expected


async def test_register_keeps_the_secret_unless_rotated() -> None:
    """Changing the URL keeps the signing secret; rotate=True makes a new one; a bad URL is a
    ValueError and changes nothing."""
    store = SqliteWebhookStore(":memory:")
    try:
        first = await register(store, CONSUMER, "https://a.example.test/hook", 1.0)
        assert first.secret.startswith("whsec_")
        assert len(base64.b64decode(first.secret.removeprefix("whsec_"))) == 32
        moved = await register(store, CONSUMER, "https://b.example.test/hook", 2.0)
        assert (moved.url, moved.secret, moved.updated_at) == (
            "https://b.example.test/hook",
            first.secret,
            2.0,
        )
        rotated = await register(store, CONSUMER, "https://b.example.test/hook", 3.0, rotate=True)
        assert rotated.secret != first.secret
        with pytest.raises(ValueError, match="webhook"):
            await register(store, CONSUMER, "ftp://c.example.test/hook", 4.0)
        assert await store.get(CONSUMER) == rotated
        other = await register(store, "land-office", "https://a.example.test/hook", 5.0)
        assert other.secret not in (first.secret, rotated.secret)
    finally:
        await store.close()


# -- 11. the admin API's webhook routes -------------------------------------------------------


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the admin API with the right token and one consumer, ``one-stop``."""
    store = SqliteConsumerStore(tmp_path / "consumers.db")
    consumers = Consumers(store)
    await consumers.create(CONSUMER, "Một cửa tỉnh", "H01", [])
    transport = httpx.ASGITransport(app=admin_app(consumers, TOKEN))
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://bus/v1/admin",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as client:
        yield client
    await store.close()


async def test_admin_webhook_put_shows_the_secret_get_hides_it_delete_removes(
    admin: httpx.AsyncClient,
) -> None:
    """PUT answers the webhook with its secret (once); GET shows it without the secret;
    PUT again keeps the secret unless rotate_secret; DELETE removes it, then GET is a 404."""
    path = f"/consumers/{CONSUMER}/webhook"
    put = await admin.put(path, json={"url": HOOK_URL})
    assert put.status_code == 200, put.text
    created = put.json()["data"]
    assert created["consumer_id"] == CONSUMER
    assert created["url"] == HOOK_URL
    assert created["secret"].startswith("whsec_")
    shown = await admin.get(path)
    assert shown.status_code == 200
    assert "secret" not in shown.json()["data"]
    assert created["secret"] not in shown.text
    assert shown.json()["data"]["url"] == HOOK_URL
    kept = (await admin.put(path, json={"url": HOOK_URL + "/v2"})).json()["data"]
    assert kept["secret"] == created["secret"]
    rotated = (await admin.put(path, json={"url": HOOK_URL, "rotate_secret": True})).json()
    assert rotated["data"]["secret"] != created["secret"]
    removed = await admin.delete(path)
    assert removed.status_code == 200
    assert removed.json()["data"] == {"consumer_id": CONSUMER, "removed": True}
    gone = await admin.get(path)
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "client.not_found"
    again = await admin.delete(path)
    assert again.status_code == 404


async def test_admin_webhook_refuses_a_bad_url_naming_the_field(admin: httpx.AsyncClient) -> None:
    """A URL that cannot be a webhook: 400 client.bad_request naming the field ``url``;
    nothing is stored."""
    path = f"/consumers/{CONSUMER}/webhook"
    reply = await admin.put(path, json={"url": "https://user:pw@hooks.example.test/x"})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["code"] == "client.bad_request"
    assert [f["field"] for f in error["field_errors"]] == ["url"]
    assert "pw@" not in reply.text
    assert (await admin.get(path)).status_code == 404


@pytest.mark.parametrize("method", ["PUT", "GET", "DELETE"])
async def test_admin_webhook_of_an_unknown_consumer_is_a_404(
    method: str, admin: httpx.AsyncClient
) -> None:
    body = {"url": HOOK_URL} if method == "PUT" else None
    reply = await admin.request(method, "/consumers/nobody-here/webhook", json=body)
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "client.not_found"


# -- 12. the adapters' state ------------------------------------------------------------------


@pytest.fixture
async def state_store(tmp_path: Path) -> AsyncIterator[SqliteStateStore]:
    store = SqliteStateStore(tmp_path / "state.db")
    try:
        yield store
    finally:
        await store.close()


async def test_scoped_state_keeps_services_apart_and_overwrites(
    state_store: SqliteStateStore,
) -> None:
    """Each service sees only its own keys; put on an existing key replaces its value."""
    clock = StepClock()
    pay = ScopedState(state_store, "paygov", clock)
    tax = ScopedState(state_store, "tax", clock)
    await pay.put("payment:R1", '{"consumer": "one-stop"}')
    assert await pay.get("payment:R1") == '{"consumer": "one-stop"}'
    assert await tax.get("payment:R1") is None
    await tax.put("payment:R1", '{"consumer": "land-office"}')
    assert await pay.get("payment:R1") == '{"consumer": "one-stop"}'
    clock.t += 1
    await pay.put("payment:R1", '{"consumer": "dms"}')
    assert await pay.get("payment:R1") == '{"consumer": "dms"}'
    assert await tax.get("payment:R1") == '{"consumer": "land-office"}'
    assert await pay.get("payment:R2") is None


@pytest.mark.parametrize(
    ("key", "value"),
    [("", "{}"), ("k" * (MAX_KEY + 1), "{}"), ("payment:R1", "x" * (MAX_VALUE + 1))],
    ids=["empty-key", "long-key", "long-value"],
)
async def test_scoped_state_refuses_empty_or_oversized_entries(
    key: str, value: str, state_store: SqliteStateStore
) -> None:
    """An empty key, a key over MAX_KEY or a value over MAX_VALUE is a ValueError; nothing is
    stored. The limits themselves are accepted."""
    state = ScopedState(state_store, "paygov", StepClock())
    with pytest.raises(ValueError, match="state"):
        await state.put(key, value)
    assert await state.get(key) is None
    await state.put("k" * MAX_KEY, "x" * MAX_VALUE)
    assert await state.get("k" * MAX_KEY) == "x" * MAX_VALUE
