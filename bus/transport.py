"""The shared HTTP client of the bus and its transport.

:class:`BusHttpClient` is an ``httpx.AsyncClient`` whose ``send`` goes straight to the transport
when nothing needs httpx's per-request machinery (no auth flow, no redirect following, no event
hooks): adapters keep httpx's whole API, and a call does not pay for the auth generator, the
redirect loop, the cookie jar (one client serves every consumer: it must keep no cookies anyway)
and the per-request log line. ``bench/run.py`` measures what it saves.

httpx-aiohttp maps a refused connection to ``httpx.ConnectTimeout`` and lets some aiohttp errors
(a malformed reply, for one) escape unmapped. The bus's error codes depend on telling "cannot
connect" (``upstream.unavailable``) from "too slow" (``upstream.timeout``), so this subclass
re-maps every aiohttp failure onto the httpx exception that says what happened.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import httpx
from httpx._client import UseClientDefault  # the type of httpx.USE_CLIENT_DEFAULT (public)
from httpx._types import AuthTypes  # the type of send's auth in httpx's own signature
from httpx_aiohttp import AiohttpTransport

__all__ = ["BusAiohttpTransport", "BusHttpClient"]


def _mapped(exc: BaseException, request: httpx.Request) -> httpx.TransportError | None:
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ClientSSLError):
        return httpx.ConnectError(f"cannot connect: {type(exc).__name__}", request=request)
    if isinstance(exc, aiohttp.ServerTimeoutError | aiohttp.SocketTimeoutError):
        return httpx.ReadTimeout(f"timed out: {type(exc).__name__}", request=request)
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(f"bad reply: {type(exc).__name__}", request=request)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return httpx.ReadError(f"reply cut short: {type(exc).__name__}", request=request)
    if isinstance(exc, aiohttp.ClientError):
        return httpx.NetworkError(f"transport failed: {type(exc).__name__}", request=request)
    return None


class BusAiohttpTransport(AiohttpTransport):
    def get_client(self) -> aiohttp.ClientSession:
        """The aiohttp session behind the transport: the pool limits httpx was given, and no
        cookie jar, because one client serves every consumer."""
        connector = aiohttp.TCPConnector(
            limit=self.limits.max_connections or 0,  # 0: aiohttp's "no limit"
            keepalive_timeout=self.limits.keepalive_expiry or 15.0,
            ssl=self.ssl_context,
        )
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

    async def send_buffered(self, request: httpx.Request, body: bytes) -> httpx.Response:
        """Send ``request`` (whose body is ``body``) and read the whole reply in one go: what a
        call that does not stream needs, without a byte stream over aiohttp's chunk iterator."""
        if not isinstance(self.client, aiohttp.ClientSession):
            self.client = self.get_client()
        timeout = request.extensions.get("timeout", {})
        try:
            async with self.client.request(
                request.method,
                str(request.url),
                headers=request.headers,
                data=body or None,
                allow_redirects=False,
                auto_decompress=False,  # httpx decodes Content-Encoding, as it would
                compress=False,
                timeout=aiohttp.ClientTimeout(
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                    connect=timeout.get("pool"),
                ),
                server_hostname=request.extensions.get("sni_hostname"),
            ) as reply:
                content = await reply.read()
        except aiohttp.ClientError as exc:
            mapped = _mapped(exc, request)
            assert mapped is not None  # every ClientError maps, at worst to NetworkError
            raise mapped from exc
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if reply.reason:
            extensions["reason_phrase"] = reply.reason.encode()
        return httpx.Response(
            reply.status,
            headers=reply.raw_headers,
            content=content,
            request=request,
            extensions=extensions,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.TransportError as exc:
            better = _mapped(exc.__cause__, request) if exc.__cause__ is not None else None
            if better is None:
                raise
            raise better from exc.__cause__
        except aiohttp.ClientError as exc:
            mapped = _mapped(exc, request)
            assert mapped is not None  # every ClientError maps, at worst to NetworkError
            raise mapped from exc


class BusHttpClient(httpx.AsyncClient):
    """The one long-lived client of a gateway process (see the module's documentation)."""

    def __init__(self, *, transport: httpx.AsyncBaseTransport, **kwargs: Any) -> None:
        super().__init__(transport=transport, **kwargs)
        self._direct = transport

    async def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: AuthTypes | UseClientDefault | None = httpx.USE_CLIENT_DEFAULT,
        follow_redirects: bool | UseClientDefault = httpx.USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        plain = (
            auth is httpx.USE_CLIENT_DEFAULT
            and self.auth is None
            and follow_redirects is not True
            and not self.follow_redirects
            and not any(self.event_hooks.values())
        )
        if not plain:
            return await super().send(
                request, stream=stream, auth=auth, follow_redirects=follow_redirects
            )
        direct = self._direct
        # (a body httpx holds whole, not a streamed one)
        if (
            not stream
            and isinstance(direct, BusAiohttpTransport)
            and isinstance(request.stream, httpx.ByteStream)
        ):
            return await direct.send_buffered(request, request.content)
        response = await direct.handle_async_request(request)
        response.request = request
        if not stream:
            try:
                await response.aread()
            except BaseException:
                await response.aclose()
                raise
        return response
