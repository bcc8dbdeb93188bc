"""Upstream authentication: the province's OAuth2 client-credentials token for NGSP.

A provincial LGSP is itself one consumer of NGSP: it holds one consumer key and secret, asks
for a token once, shares it between every call, refreshes it shortly before it expires, and never
asks for a token per call. :class:`TokenProvider` does exactly that:

- the token is cached until ``expires_in`` minus a refresh margin;
- concurrent callers that find no valid token share ONE refresh (single flight), and its error;
- after a refusal with ``Retry-After`` the platform is not asked again before that time;
- :meth:`TokenProvider.call` retries a request once with a fresh token when the upstream answers
  401 (the token was revoked or expired early), and only once.

Token endpoint failures are translated into the error catalogue: refused credentials are
``upstream.rejected`` (an operator must fix the bus's configuration), throttling and outages
are ``upstream.unavailable`` with ``Retry-After`` kept.

The caching, single flight and ``Retry-After`` logic is :class:`CachedCredential`, whose
subclasses only say how one credential is fetched (``_fetch``): :class:`TokenProvider` asks an
OAuth2 token endpoint; an adapter whose platform hands out login sessions instead (the National
Public Service Portal) subclasses it with its own login.
"""

from __future__ import annotations

import asyncio
import math
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ClassVar

import httpx
import structlog

from bus.clock import Clock
from bus.errors import BusError, UpstreamBadResponse, UpstreamRejected, UpstreamUnavailable
from bus.upstream import raise_for_upstream_status, translate_http_error

__all__ = ["MAX_LIFETIME", "AccessToken", "CachedCredential", "TokenProvider"]

#: A token is never kept longer than this, whatever ``expires_in`` says (seconds).
MAX_LIFETIME = 86_400.0

log = structlog.get_logger("lgsp.upstream_auth")


@dataclass(frozen=True, slots=True)
class AccessToken:
    value: str
    expires_at: float  # on the clock's monotonic scale

    def __repr__(self) -> str:  # never show the token itself
        return f"AccessToken(expires_at={self.expires_at:.0f})"


def _consume_outcome(future: asyncio.Future[AccessToken]) -> None:
    """Mark a refresh's error as seen even if every waiter gave up (no asyncio warning)."""
    if not future.cancelled():
        future.exception()


class CachedCredential(ABC):
    """A cached, shared, single-flight credential (a token, a session) for one platform.

    Subclasses implement :meth:`_fetch`, which asks the platform for a new credential and
    returns it with its expiry (:meth:`_expiring` computes one from a lifetime), or raises a
    :class:`BusError`; one carrying ``retry_after`` keeps every caller away until then.
    """

    #: What the credential is called in error messages ("a token", "a session").
    noun: ClassVar[str] = "a credential"

    def __init__(self, clock: Clock, *, refresh_margin: float = 60.0) -> None:
        self._clock = clock
        self._margin = refresh_margin
        self._token: AccessToken | None = None
        self._refresh: asyncio.Future[AccessToken] | None = None
        self._blocked: tuple[float, BusError] | None = None
        self.requests = 0  # credentials asked for since start, for tests and metrics

    def _valid(self, token: AccessToken) -> bool:
        return self._clock.monotonic() < token.expires_at

    async def token(self) -> str:
        """A credential valid for at least the refresh margin, fetching one if needed.

        Single flight: concurrent callers share one refresh task and all get its result or its
        error; a caller giving up (its deadline) does not cancel the refresh for the others.
        After a refusal that carries ``Retry-After``, callers fail at once until it has passed.
        """
        current = self._token
        if current is not None and self._valid(current):
            return current.value
        now = self._clock.monotonic()
        if self._blocked is not None and now < self._blocked[0]:
            raise UpstreamUnavailable(
                f"the national platform asked the bus to wait before asking for {self.noun} again",
                retry_after=self._blocked[0] - now,
            )
        leader = self._refresh is None
        if leader:
            self._refresh = asyncio.ensure_future(self._refresh_once())
            self._refresh.add_done_callback(_consume_outcome)
        assert self._refresh is not None
        try:
            token = await asyncio.shield(self._refresh)
        except BusError as exc:
            if leader:
                raise
            # The callers that joined the refresh get their own copy, marked as an echo: one
            # failed refresh is one failure of the platform, not one per waiting call.
            echo = type(exc)(exc.message, retry_after=exc.retry_after, detail=exc.detail)
            echo.echo = True
            raise echo from exc
        return token.value

    async def _refresh_once(self) -> AccessToken:
        self.requests += 1
        try:
            self._token = await self._fetch()
            self._blocked = None
            return self._token
        except BusError as exc:
            if exc.retry_after:
                self._blocked = (self._clock.monotonic() + exc.retry_after, exc)
            raise
        finally:
            self._refresh = None

    def invalidate(self, value: str) -> None:
        """Forget ``value`` if it is still the cached credential (the platform refused it)."""
        if self._token is not None and self._token.value == value:
            self._token = None

    def _expiring(self, value: str, started: float, lifetime: float) -> AccessToken:
        """``value`` asked for at ``started`` and living ``lifetime`` seconds (a day at most),
        to be renewed the refresh margin ahead of expiry, or at half its life if that is
        shorter."""
        lifetime = min(lifetime, MAX_LIFETIME)
        margin = min(self._margin, lifetime / 2)
        return AccessToken(value, started + lifetime - margin)

    @abstractmethod
    async def _fetch(self) -> AccessToken:
        """Ask the platform for a new credential; raise a :class:`BusError` on failure."""


class TokenProvider(CachedCredential):
    """A cached, shared, single-flight client-credentials token for one platform."""

    noun = "a token"

    def __init__(
        self,
        http: httpx.AsyncClient,
        token_url: str,
        client_id: str,
        client_secret: str,
        clock: Clock,
        *,
        refresh_margin: float = 60.0,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(clock, refresh_margin=refresh_margin)
        self._http = http
        self._url = token_url
        self._auth = httpx.BasicAuth(client_id, client_secret)
        self._timeout = timeout

    async def call(self, send: Callable[[str], Awaitable[httpx.Response]]) -> httpx.Response:
        """``send(token)``, and once more with a fresh token if the upstream answers 401."""
        value = await self.token()
        response = await send(value)
        if response.status_code != 401:
            return response
        log.info("upstream refused the token; fetching a new one", url=self._url)
        self.invalidate(value)
        return await send(await self.token())

    async def _fetch(self) -> AccessToken:
        started = self._clock.monotonic()
        try:
            response = await self._http.post(
                self._url,
                data={"grant_type": "client_credentials"},
                auth=self._auth,
                timeout=self._timeout,
            )
        except httpx.HTTPError as exc:
            raise translate_http_error(exc) from exc
        if response.status_code in (400, 401):
            log.error("the platform refused the bus's client credentials", url=self._url)
            raise UpstreamRejected(
                "the national platform refused the province's client credentials; "
                "an operator must check them"
            )
        raise_for_upstream_status(response)
        try:
            body = response.json()
            value = body["access_token"]
            lifetime = float(body.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError, AttributeError):
            value, lifetime = None, 0.0
        if not isinstance(value, str) or not value or not math.isfinite(lifetime) or lifetime <= 0:
            raise UpstreamBadResponse("the token endpoint answered without a usable token")
        return self._expiring(value, started, lifetime)
