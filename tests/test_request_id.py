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


@pytest.mark.parametrize(
    "sent",
    [
        "hs-079123456789",  # a citizen id (12 digits)
        "dossier-012345678-01",  # an old id (9 digits)
        "call-0912345678",  # a phone
        "sms:84912345678",  # a phone in the international form
    ],
)
async def test_an_id_holding_a_personal_number_is_replaced(
    sent: str, settings_for: Callable[..., Settings]
) -> None:
    """The request id is logged in clear and kept in the exchange record: an id numbered after
    a citizen is not adopted, the call gets a generated one, and no log line holds the number;
    the warning says why without the value."""
    app = create_app(settings_for(ECHO))
    async with running(app) as client:
        with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
            reply = await client.post(
                "/v1/services/echo/echo", json={"message": "hi"}, headers={"X-Request-ID": sent}
            )
    generated = reply.headers["x-request-id"]
    assert str(uuid.UUID(generated)) == generated
    assert reply.json()["request_id"] == generated
    digits = "".join(ch for ch in sent if ch.isdigit())
    for entry in logs:
        assert entry["request_id"] == generated
        flat = "".join(ch for ch in repr(entry) if ch.isdigit())
        assert digits not in flat, entry
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert [w["event"].split(":")[0] for w in warnings] == ["X-Request-ID refused"]


@pytest.mark.parametrize(
    "sent",
    [
        "01234567-89ab-7def-8123-456789012345",  # a UUID whose groups hold long digit runs
        "ho-so-2026-11-21-000123",  # dates and a counter: no run of 9 to 12 digits
        "000.00.00.H00-261121-0001",  # a dossier code: groups of digits, no long run
        "trace:1732233600123",  # a 13-digit millisecond time: longer than any personal number
        "job-1732233600-7",  # 10 digits not from a 0: a Unix time, not a phone
    ],
)
async def test_ids_without_a_personal_number_are_kept(
    sent: str, settings_for: Callable[..., Settings]
) -> None:
    app = create_app(settings_for(ECHO))
    async with running(app) as client:
        reply = await client.post(
            "/v1/services/echo/echo", json={"message": "hi"}, headers={"X-Request-ID": sent}
        )
    assert reply.headers["x-request-id"] == sent
    assert reply.json()["request_id"] == sent
