"""The security stages are separate, replaceable, and stop a call before any upstream call."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import httpx
import pytest
import respx

from bus import create_app
from bus.audit import MemoryRecorder
from bus.config import parse_config
from bus.errors import BadRequest, Forbidden, RateLimited, Unauthenticated, UnknownOperation
from bus.gateway import build_gateway
from bus.pipeline import resolve, validate
from bus.registry import AdapterRegistry, discover
from bus.security import AllowAll, Consumer, NoLimit, OpenAuthenticator, Security
from bus.settings import Settings
from tests.support import running
from tests.test_plugin_entry_point import ENV, PARCELS_YAML

pytestmark = pytest.mark.anyio

OFFICE = Consumer(id="mot-cua", name="One-stop-shop", agency="000.00.00.H01")


class KeyAuthenticator:
    async def identify(self, headers: Mapping[str, str]) -> Consumer:
        if headers.get("x-api-key") != "good":
            raise Unauthenticated("unknown API key")
        return OFFICE


class DenyParcels:
    async def authorise(self, consumer: Consumer, service: str, operation: str) -> None:
        if service == "land":
            raise Forbidden(f"{consumer.id} may not call {service}.{operation}")


class Exhausted:
    async def limit(self, consumer: Consumer, service: str, operation: str) -> None:
        raise RateLimited("quota used", retry_after=60)


@pytest.mark.parametrize(
    ("security", "headers", "status", "code"),
    [
        (Security(KeyAuthenticator(), AllowAll(), NoLimit()), {}, 401, "client.unauthenticated"),
        (
            Security(KeyAuthenticator(), DenyParcels(), NoLimit()),
            {"x-api-key": "good"},
            403,
            "client.forbidden",
        ),
        (Security(OpenAuthenticator(), AllowAll(), Exhausted()), {}, 429, "client.rate_limited"),
    ],
)
async def test_refusals_never_reach_the_upstream(
    security: Security,
    headers: dict[str, str],
    status: int,
    code: str,
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
) -> None:
    """Identify, authorise and limit each refuse with their code; respx sees no call, and the
    refusal is still recorded."""
    router = respx.MockRouter()
    upstream = router.route().respond(200, json={})
    recorder = MemoryRecorder()
    app = create_app(
        settings_for(PARCELS_YAML),
        registry=example_plugin,
        environ=ENV,
        transport=httpx.MockTransport(router.async_handler),
        security=security,
        recorder=recorder,
    )
    async with running(app) as client:
        reply = await client.post(
            "/v1/services/land/parcel.get", json={"parcel_id": "12-0034"}, headers=headers
        )
    assert reply.status_code == status
    assert reply.json()["error"]["code"] == code
    assert upstream.call_count == 0
    [exchange] = recorder.exchanges
    assert exchange.error_code == code
    assert exchange.attempts == 0


async def test_identified_consumer_reaches_the_record(
    settings_for: Callable[..., Settings],
) -> None:
    """The consumer found by identify is the one the adapter sees and the record names."""
    recorder = MemoryRecorder()
    app = create_app(
        settings_for("version: 1\nservices:\n  echo: {adapter: echo}\n"),
        security=Security(KeyAuthenticator()),
        recorder=recorder,
    )
    async with running(app) as client:
        reply = await client.post(
            "/v1/services/echo/echo", json={"message": "hi"}, headers={"x-api-key": "good"}
        )
    assert reply.json()["data"]["consumer"] == "mot-cua"
    assert recorder.exchanges[0].consumer == "mot-cua"


def test_resolve_and_validate_alone() -> None:
    """resolve() and validate() work without an app: unknown operation, then field errors."""
    gw = build_gateway(
        Settings(), parse_config("version: 1\nservices:\n  echo: {adapter: echo}\n"), discover()
    )
    with pytest.raises(UnknownOperation):
        resolve(gw, "echo", "nope")
    target = resolve(gw, "echo", "echo")
    assert validate(b'{"message": "  hi  "}', target).model_dump() == {"message": "hi"}
    with pytest.raises(BadRequest) as caught:
        validate(b'{"message": 5}', target)
    assert [f.field for f in caught.value.field_errors] == ["message"]


async def test_failing_recorder_fails_the_call_closed(
    settings_for: Callable[..., Settings],
) -> None:
    """If the exchange cannot be recorded, the caller gets bus.internal, not the data."""

    class BrokenRecorder:
        async def record(self, exchange: object) -> None:
            raise OSError("disk full")

    app = create_app(
        settings_for("version: 1\nservices:\n  echo: {adapter: echo}\n"),
        recorder=BrokenRecorder(),
    )
    async with running(app) as client:
        reply = await client.post("/v1/services/echo/echo", json={"message": "hi"})
    assert reply.status_code == 500
    assert reply.json()["error"]["code"] == "bus.internal"
    assert reply.json()["data"] is None
