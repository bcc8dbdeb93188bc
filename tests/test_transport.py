"""The default transport (httpx-aiohttp) against real loopback sockets: failures keep their
meaning (refused -> unavailable, slow -> timeout, garbage -> unavailable), never bus.internal."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from bus import create_app
from bus.gateway import make_http_client
from bus.registry import AdapterRegistry
from bus.settings import Settings
from tests.support import running
from tests.test_plugin_entry_point import ENV

pytestmark = [pytest.mark.anyio, pytest.mark.live]

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[int]:
    """A TCP server on a free loopback port running ``handler`` per connection; on exit every
    connection is closed and every handler cancelled, so no socket outlives the test."""
    tasks: set[asyncio.Task[None]] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(tracked, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(1024)
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    await writer.drain()
    writer.close()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(1024)
    await asyncio.sleep(10)


async def dripping(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers the status line at once, then one body byte every 0.2 s."""
    await reader.read(1024)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
    for _ in range(100):
        writer.write(b"x")
        await writer.drain()
        await asyncio.sleep(0.2)


def refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_refused_connection_is_connect_error() -> None:
    """Nothing listening: httpx.ConnectError (not ConnectTimeout, as httpx-aiohttp says)."""
    client = make_http_client(Settings())
    async with client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{refused_port()}/")


async def test_garbage_reply_is_protocol_error() -> None:
    """A reply that is not HTTP: httpx.RemoteProtocolError, not an aiohttp exception."""
    async with raw_server(garbage) as port, make_http_client(Settings()) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(f"http://127.0.0.1:{port}/")


async def test_silent_upstream_is_timeout() -> None:
    """No answer within the read timeout: an httpx.TimeoutException."""
    async with raw_server(silent) as port, make_http_client(Settings()) as client:
        with pytest.raises(httpx.TimeoutException):
            await client.get(f"http://127.0.0.1:{port}/", timeout=0.2)


def land_yaml(port: int) -> str:
    return f"""\
version: 1
services:
  land:
    adapter: parcels
    upstream:
      base_url: http://127.0.0.1:{port}/api
      credentials: {{api_key: PARCELS_API_KEY}}
    timeout: 2
    retry: none
"""


@pytest.mark.parametrize(
    ("handler", "code"),
    [
        (None, "upstream.unavailable"),
        (garbage, "upstream.unavailable"),
        (silent, "upstream.timeout"),
    ],
)
async def test_call_through_default_transport(
    handler: Handler | None,
    code: str,
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
) -> None:
    """Through the whole bus on the default transport, each failure has its catalogue code."""

    async def call(port: int) -> httpx.Response:
        app = create_app(settings_for(land_yaml(port)), registry=example_plugin, environ=ENV)
        async with running(app) as client:
            return await client.post("/v1/services/land/parcel.get", json={"parcel_id": "12-0034"})

    if handler is None:
        reply = await call(refused_port())
    else:
        async with raw_server(handler) as port:
            reply = await call(port)
    assert reply.json()["error"]["code"] == code


@pytest.mark.parametrize("handler", [garbage, dripping, silent])
async def test_readyz_survives_hostile_upstreams(
    handler: Handler, example_plugin: AdapterRegistry, settings_for: Callable[..., Settings]
) -> None:
    """A garbage, dripping or silent upstream makes /readyz 'degraded' within the probe
    timeout (the dripping body is not read), never a 500."""
    async with raw_server(handler) as port:
        settings = settings_for(land_yaml(port), ready_probe_timeout=0.5, ready_cache_seconds=0)
        app = create_app(settings, registry=example_plugin, environ=ENV)
        async with running(app) as client:
            reply = await asyncio.wait_for(client.get("/readyz"), timeout=5)
    assert reply.status_code == 200
    state = reply.json()["upstreams"]["land"]
    if handler is dripping:
        assert state["reachable"] is True
        assert state["detail"] == "HTTP 200"
    else:
        assert state["reachable"] is False
        assert reply.json()["status"] == "degraded"
