"""The bus's login session on the National Public Service Portal: one session shared by every
call, opened once, renewed before it is thought to expire, and on the portal's word that it has.

:class:`SessionProvider` is a :class:`bus.upstream_auth.CachedCredential`: the cache, the single
flight of concurrent renewals and the respect of ``Retry-After`` are the NGSP token's; only the
login differs. The portal's login reply carries no lifetime (an ``expires_in`` is honoured if
one ever appears), so a session is trusted for ``lifetime`` seconds (the adapter's
``session_ttl`` option) less the refresh margin.
"""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import structlog

from bus.clock import Clock
from bus.errors import UpstreamBadResponse, UpstreamRejected
from bus.upstream import raise_for_upstream_status, translate_http_error
from bus.upstream_auth import AccessToken, CachedCredential

__all__ = ["SessionProvider", "is_zero"]

log = structlog.get_logger("lgsp.adapters.dvcqg")


def is_zero(code: Any) -> bool:
    """Whether an ``error_code`` says success: 0 as a number or "0"/"00" as a string."""
    if isinstance(code, bool):
        return False
    if isinstance(code, int):
        return code == 0
    return isinstance(code, str) and code.strip() in ("0", "00")


class SessionProvider(CachedCredential):
    """A cached, shared, single-flight login session (``POST {login_url}``)."""

    noun = "a session"

    def __init__(
        self,
        http: httpx.AsyncClient,
        login_url: str,
        username: str,
        password: str,
        clock: Clock,
        *,
        lifetime: float,
        refresh_margin: float = 60.0,
        timeout: httpx.Timeout | float = 10.0,
    ) -> None:
        super().__init__(clock, refresh_margin=refresh_margin)
        self._http = http
        self._url = login_url
        self._body = json.dumps({"username": username, "password": password}).encode()
        self._lifetime = lifetime
        self._timeout = timeout

    def __repr__(self) -> str:  # never show the account
        return f"SessionProvider(url={self._url!r})"

    async def _fetch(self) -> AccessToken:
        started = self._clock.monotonic()
        try:
            response = await self._http.post(
                self._url,
                content=self._body,
                headers={"Content-Type": "application/json"},
                timeout=self._timeout,
            )
        except httpx.HTTPError as exc:
            raise translate_http_error(exc) from exc
        if response.status_code in (400, 401, 403):
            raise self._refused(None)
        raise_for_upstream_status(response)
        try:
            reply = response.json()
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            raise UpstreamBadResponse("the portal's login answered without a usable session")
        code = reply.get("error_code")
        session = reply.get("session")
        if is_zero(code) and isinstance(session, str) and session:
            return self._expiring(session, started, self._lifetime_of(reply))
        if code is not None and not is_zero(code):
            raise self._refused(code)
        raise UpstreamBadResponse("the portal's login answered without a usable session")

    def _lifetime_of(self, reply: dict[str, Any]) -> float:
        given = reply.get("expires_in")
        if isinstance(given, bool) or not isinstance(given, int | float):
            return self._lifetime
        return float(given) if math.isfinite(given) and given > 0 else self._lifetime

    def _refused(self, code: Any) -> UpstreamRejected:
        log.error("the portal refused the bus's account", url=self._url)
        return UpstreamRejected(
            "the National Public Service Portal refused the province's account; an operator "
            "must check it",
            detail={} if code is None else {"error_code": str(code)},
        )
