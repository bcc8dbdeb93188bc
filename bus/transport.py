"""The shared client's transport: httpx-aiohttp, with aiohttp's errors mapped faithfully.

httpx-aiohttp maps a refused connection to ``httpx.ConnectTimeout`` and lets some aiohttp errors
(a malformed reply, for one) escape unmapped. The bus's error codes depend on telling "cannot
connect" (``upstream.unavailable``) from "too slow" (``upstream.timeout``), so this subclass
re-maps every aiohttp failure onto the httpx exception that says what happened.
"""

from __future__ import annotations

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

__all__ = ["BusAiohttpTransport"]


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
