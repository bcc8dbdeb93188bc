"""The default transport (httpx-aiohttp) against real loopback sockets: failures keep their
meaning (refused -> unavailable, slow -> timeout, garbage -> unavailable), never bus.internal."""

from __future__ import annotations

import asyncio
import base64
import gzip
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


# -- the shared client's direct path (BusHttpClient): same behaviour as httpx's own ---------


class Recorder:
    """A loopback HTTP/1.1 server answering every request with ``reply`` and keeping each
    request's head and body as received."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.requests: list[tuple[bytes, bytes]] = []

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            length = 0
            for line in head.lower().split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length)
            self.requests.append((head.lower(), body))
            writer.write(self.reply)
            await writer.drain()


def http_reply(body: bytes, *headers: str) -> bytes:
    lines = ["HTTP/1.1 200 OK", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def test_post_body_reaches_upstream_and_gzip_reply_is_decoded() -> None:
    server = Recorder(http_reply(gzip.compress(b'{"ok": true}'), "Content-Encoding: gzip"))
    async with raw_server(server) as port, make_http_client(Settings()) as client:
        reply = await client.post(f"http://127.0.0.1:{port}/x", json={"so": "it is"})
    assert reply.json() == {"ok": True}
    assert reply.request.url.path == "/x"
    head, body = server.requests[0]
    assert head.startswith(b"post /x http/1.1")
    assert body == b'{"so":"it is"}'


async def test_upstream_cookie_never_rides_on_the_next_call() -> None:
    """One client serves every consumer: a Set-Cookie from one call is not sent on the next."""
    server = Recorder(http_reply(b"{}", "Set-Cookie: session=consumer-a"))
    async with raw_server(server) as port, make_http_client(Settings()) as client:
        await client.get(f"http://127.0.0.1:{port}/a")
        await client.get(f"http://127.0.0.1:{port}/b")
    assert len(server.requests) == 2
    assert b"cookie" not in server.requests[1][0]


async def test_auth_flow_and_streaming_still_work() -> None:
    """Calls that need httpx's machinery (an auth flow, a streamed reply) take its path."""
    server = Recorder(http_reply(b"streamed body"))
    async with raw_server(server) as port, make_http_client(Settings()) as client:
        await client.post(f"http://127.0.0.1:{port}/token", auth=("client", "secret"))
        async with client.stream("GET", f"http://127.0.0.1:{port}/big") as reply:
            chunks = [chunk async for chunk in reply.aiter_bytes()]
    expected = base64.b64encode(b"client:secret").lower()
    assert b"authorization: basic " + expected in server.requests[0][0]
    assert b"".join(chunks) == b"streamed body"
