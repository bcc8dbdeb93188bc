"""/healthz answers while the process lives; /readyz probes upstreams at most once per interval."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
import respx

from bus import create_app
from bus.registry import AdapterRegistry
from bus.settings import Settings
from tests.support import StepClock, running
from tests.test_plugin_entry_point import ENV, PARCELS_YAML

pytestmark = pytest.mark.anyio


async def test_healthz(settings_for: Callable[..., Settings]) -> None:
    """/healthz is a plain liveness answer."""
    app = create_app(settings_for("version: 1\n"))
    async with running(app) as client:
        reply = await client.get("/healthz")
    assert reply.status_code == 200
    assert reply.json() == {"status": "alive"}


async def test_readyz_is_cached_between_probes(
    example_plugin: AdapterRegistry, settings_for: Callable[..., Settings]
) -> None:
    """Many /readyz calls within the cache interval cost the upstream one probe; after the
    interval, one more."""
    router = respx.MockRouter()
    probe = router.get("https://parcels.example.test/api/").respond(404)
    clock = StepClock()
    app = create_app(
        settings_for(PARCELS_YAML, ready_cache_seconds=5),
        registry=example_plugin,
        environ=ENV,
        transport=httpx.MockTransport(router.async_handler),
        clock=clock,
    )
    async with running(app) as client:
        for _ in range(10):
            reply = await client.get("/readyz")
        assert probe.call_count == 1
        body = reply.json()
        assert body["status"] == "ready"
        assert body["upstreams"]["land"]["reachable"] is True
        assert body["upstreams"]["land"]["detail"] == "HTTP 404"
        clock.t += 6
        await client.get("/readyz")
        assert probe.call_count == 2


async def test_readyz_reports_unreachable_upstream(
    example_plugin: AdapterRegistry, settings_for: Callable[..., Settings]
) -> None:
    """An unreachable upstream makes the bus 'degraded' (200), or 503 with ?strict=true."""
    router = respx.MockRouter()
    router.get("https://parcels.example.test/api/").mock(side_effect=httpx.ConnectError("down"))
    app = create_app(
        settings_for(PARCELS_YAML, ready_cache_seconds=0),
        registry=example_plugin,
        environ=ENV,
        transport=httpx.MockTransport(router.async_handler),
    )
    async with running(app) as client:
        lenient = await client.get("/readyz")
        strict = await client.get("/readyz?strict=true")
    assert lenient.status_code == 200
    assert lenient.json()["status"] == "degraded"
    land = lenient.json()["upstreams"]["land"]
    assert {k: land[k] for k in ("url", "reachable", "detail", "latency_ms")} == {
        "url": "https://parcels.example.test/api/",
        "reachable": False,
        "detail": "ConnectError",
        "latency_ms": None,
    }
    assert land["circuit"]["state"] == "closed"  # a probe is not a call: it moves no circuit
    assert strict.status_code == 503
