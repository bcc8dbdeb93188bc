"""The request id: taken from X-Request-ID when well formed, else generated; echoed everywhere."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
import structlog
from structlog.testing import capture_logs

from bus import create_app
from bus.settings import Settings
from tests.support import running

pytestmark = pytest.mark.anyio

ECHO = "version: 1\nservices:\n  echo: {adapter: echo}\n"


async def test_well_formed_id_is_echoed(settings_for: Callable[..., Settings]) -> None:
    """A caller's well-formed id comes back in the header and the body."""
    app = create_app(settings_for(ECHO))
    async with running(app) as client:
        reply = await client.post(
            "/v1/services/echo/echo",
            json={"message": "hi"},
            headers={"X-Request-ID": "mot-cua-2026.11:0001"},
        )
    assert reply.headers["x-request-id"] == "mot-cua-2026.11:0001"
    assert reply.json()["request_id"] == "mot-cua-2026.11:0001"


@pytest.mark.parametrize(
    "sent",
    ["short", "has space in it", "x" * 129, "<script>alert(1)</script>", "-starts-with-dash"],
)
async def test_malformed_id_is_replaced(sent: str, settings_for: Callable[..., Settings]) -> None:
    """A malformed id is not trusted: the bus generates a UUID and uses it consistently."""
    app = create_app(settings_for(ECHO))
    async with running(app) as client:
        reply = await client.post(
            "/v1/services/echo/echo", json={"message": "hi"}, headers={"X-Request-ID": sent}
        )
    generated = reply.headers["x-request-id"]
    assert generated != sent
    assert str(uuid.UUID(generated)) == generated
    assert reply.json()["request_id"] == generated


async def test_every_route_echoes_an_id(settings_for: Callable[..., Settings]) -> None:
    """Metaservices, health and unknown routes carry the header too."""
    app = create_app(settings_for(ECHO))
    async with running(app) as client:
        for path in ("/v1/services", "/v1/services/echo", "/healthz", "/readyz", "/nowhere"):
            reply = await client.get(path, headers={"X-Request-ID": "route-check-01"})
            assert reply.headers["x-request-id"] == "route-check-01", path


async def test_request_id_is_bound_into_log_lines(settings_for: Callable[..., Settings]) -> None:
    """Log lines written while serving a call carry its request id."""
    app = create_app(settings_for(ECHO))
    async with running(app) as client:
        with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
            await client.post(
                "/v1/services/echo/echo",
                json={"message": "hi"},
                headers={"X-Request-ID": "bound-id-0001"},
            )
    exchange = [entry for entry in logs if entry["event"] == "exchange"]
    assert exchange, logs
    assert all(entry["request_id"] == "bound-id-0001" for entry in logs)
