"""The bus owns one long-lived HTTP client and lends it to every call."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from bus import create_app
from bus.gateway import make_http_client
from bus.registry import AdapterRegistry
from bus.settings import Settings
from bus.transport import BusAiohttpTransport
from tests.support import SpyAdapter, running

pytestmark = pytest.mark.anyio


async def test_one_client_for_all_calls_closed_at_shutdown(
    settings_for: Callable[..., Settings],
) -> None:
    """Every call's context holds the same client; it is closed when the app stops."""
    registry = AdapterRegistry()
    registry.register("spy", SpyAdapter, "tests")
    SpyAdapter.contexts.clear()
    app = create_app(
        settings_for("version: 1\nservices:\n  spy: {adapter: spy}\n"), registry=registry
    )
    async with running(app) as client:
        for _ in range(3):
            assert (await client.post("/v1/services/spy/spy", json={})).status_code == 200
    clients = {id(ctx.http) for ctx in SpyAdapter.contexts}
    assert len(clients) == 1
    assert SpyAdapter.contexts[0].http.is_closed
    assert len({ctx.request_id for ctx in SpyAdapter.contexts}) == 3


async def test_transport_follows_the_setting() -> None:
    """LGSP_HTTP_TRANSPORT picks httpx-aiohttp (the measured default) or httpx's own pool."""
    default = make_http_client(Settings())
    plain = make_http_client(Settings(http_transport="httpx"))
    try:
        assert isinstance(default._transport, BusAiohttpTransport)
        assert isinstance(plain._transport, httpx.AsyncHTTPTransport)
    finally:
        await default.aclose()
        await plain.aclose()
