"""Step 5: deadline and retry policy around the adapter, upstream failures translated."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx
from fastapi import FastAPI

from bus import create_app
from bus.audit import MemoryRecorder
from bus.registry import AdapterRegistry
from bus.settings import Settings
from tests.support import running
from tests.test_plugin_entry_point import ENV

pytestmark = pytest.mark.anyio

URL = "https://parcels.example.test/api/parcels/12-0034"
PARCEL = {"id": "12-0034", "area": 512, "use": "ODT"}


def yaml_with(retry: str = "default", timeout: float = 5) -> str:
    return f"""\
version: 1
retry_policies:
  quick: {{attempts: 3, initial_wait: 0.01, max_wait: 0.02, jitter: 0}}
services:
  land:
    adapter: parcels
    upstream:
      base_url: https://parcels.example.test/api
      credentials: {{api_key: PARCELS_API_KEY}}
    timeout: {timeout}
    retry: {retry}
"""


class Sleeps:
    """A sleep that records what it was asked and returns at once."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def router() -> respx.MockRouter:
    return respx.MockRouter(assert_all_called=False)


def make(
    registry: AdapterRegistry,
    settings: Settings,
    router: respx.MockRouter,
    **kwargs: Any,
) -> tuple[FastAPI, MemoryRecorder]:
    recorder = MemoryRecorder()
    app = create_app(
        settings,
        registry=registry,
        environ=ENV,
        transport=httpx.MockTransport(router.async_handler),
        recorder=recorder,
        **kwargs,
    )
    return app, recorder


async def test_retry_then_success(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
) -> None:
    """A connection error then a 200: the caller gets the data; two attempts are recorded."""
    route = router.get(URL).mock(
        side_effect=[httpx.ConnectError("refused"), httpx.Response(200, json=PARCEL)]
    )
    sleeps = Sleeps()
    app, recorder = make(example_plugin, settings_for(yaml_with("quick")), router, sleep=sleeps)
    async with running(app) as client:
        reply = await client.post("/v1/services/land/parcel.get", json={"parcel_id": "12-0034"})
    assert reply.status_code == 200
    assert route.call_count == 2
    assert len(sleeps.calls) == 1
    assert recorder.exchanges[-1].attempts == 2


async def test_exhaustion_is_upstream_unavailable(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
) -> None:
    """Three 503s with a three-attempt policy: upstream.unavailable, retryable, after 3 calls."""
    route = router.get(URL).respond(503)
    app, recorder = make(example_plugin, settings_for(yaml_with("quick")), router, sleep=Sleeps())
    async with running(app) as client:
        reply = await client.post("/v1/services/land/parcel.get", json={"parcel_id": "12-0034"})
    assert reply.status_code == 503
    assert reply.json()["error"]["code"] == "upstream.unavailable"
    assert reply.json()["error"]["retryable"] is True
    assert route.call_count == 3
    assert recorder.exchanges[-1].attempts == 3


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, "upstream.rejected"), (404, "upstream.rejected"), (500, "upstream.fault")],
)
async def test_no_retry_on_client_errors_and_faults(
    status: int,
    code: str,
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
) -> None:
    """4xx and 500 are answered at once, never retried."""
    route = router.get(URL).respond(status)
    app, _ = make(example_plugin, settings_for(yaml_with("quick")), router, sleep=Sleeps())
    async with running(app) as client:
        reply = await client.post("/v1/services/land/parcel.get", json={"parcel_id": "12-0034"})
    assert reply.json()["error"]["code"] == code
    assert route.call_count == 1


async def test_non_idempotent_operation_is_not_retried(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
) -> None:
    """A write marked idempotent=False is tried once, even on a retryable error."""
    route = router.post(URL + "/notes").respond(503)
    app, _ = make(example_plugin, settings_for(yaml_with("quick")), router, sleep=Sleeps())
    async with running(app) as client:
        reply = await client.post(
            "/v1/services/land/parcel.note", json={"parcel_id": "12-0034", "text": "ok"}
        )
    assert reply.json()["error"]["code"] == "upstream.unavailable"
    assert route.call_count == 1


async def test_retry_after_is_honoured(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
) -> None:
    """A 429 with Retry-After: 1 makes the next wait at least one second."""
    router.get(URL).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "1"}),
            httpx.Response(200, json=PARCEL),
        ]
    )
    sleeps = Sleeps()
    app, _ = make(example_plugin, settings_for(yaml_with("quick")), router, sleep=sleeps)
    async with running(app) as client:
        reply = await client.post("/v1/services/land/parcel.get", json={"parcel_id": "12-0034"})
    assert reply.status_code == 200
    assert sleeps.calls == [pytest.approx(1.0, abs=0.001)]


async def test_retry_after_beyond_the_deadline_is_not_waited_for(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
) -> None:
    """A Retry-After longer than the deadline ends the call now, passing Retry-After on."""
    route = router.get(URL).respond(429, headers={"Retry-After": "30"})
    sleeps = Sleeps()
    app, _ = make(example_plugin, settings_for(yaml_with("quick", timeout=5)), router, sleep=sleeps)
    async with running(app) as client:
        reply = await client.post("/v1/services/land/parcel.get", json={"parcel_id": "12-0034"})
    assert reply.status_code == 503
    assert reply.headers["retry-after"] == "30"
    assert route.call_count == 1
    assert sleeps.calls == []


async def test_deadline_covers_the_call(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
) -> None:
    """An upstream slower than the operation's deadline gives upstream.timeout."""

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json=PARCEL)

    router.get(URL).mock(side_effect=slow)
    app, _ = make(example_plugin, settings_for(yaml_with("none", timeout=0.05)), router)
    async with running(app) as client:
        reply = await client.post("/v1/services/land/parcel.get", json={"parcel_id": "12-0034"})
    assert reply.status_code == 504
    assert reply.json()["error"]["code"] == "upstream.timeout"
    assert "deadline of 0.05 s" in reply.json()["error"]["message"]


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (httpx.ConnectError("refused"), "upstream.unavailable"),
        (httpx.ReadTimeout("slow"), "upstream.timeout"),
        (httpx.RemoteProtocolError("garbage"), "upstream.unavailable"),
    ],
)
async def test_transport_errors_are_translated(
    failure: Exception,
    code: str,
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
) -> None:
    """httpx exceptions escaping the adapter become upstream.* codes at the boundary."""
    router.get(URL).mock(side_effect=failure)
    app, _ = make(example_plugin, settings_for(yaml_with("none")), router)
    async with running(app) as client:
        reply = await client.post("/v1/services/land/parcel.get", json={"parcel_id": "12-0034"})
    assert reply.json()["error"]["code"] == code


async def test_unreadable_upstream_reply_is_bad_response(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
) -> None:
    """An upstream 200 whose content breaks the output model is upstream.bad_response."""
    router.get(URL).respond(200, json={"id": "12-0034", "area": -3, "use": "ODT"})
    app, _ = make(example_plugin, settings_for(yaml_with("none")), router)
    async with running(app) as client:
        reply = await client.post("/v1/services/land/parcel.get", json={"parcel_id": "12-0034"})
    assert reply.status_code == 502
    assert reply.json()["error"]["code"] == "upstream.bad_response"
