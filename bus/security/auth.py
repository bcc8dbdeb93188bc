"""The real security stages: who is calling (bearer JWT or API key, checked against the consumer
store), may it call this operation (its rights, narrowed by the token's scopes), and is it within
its limits (a token bucket for the rate, a daily quota per operation).

Consumer records are cached for a few seconds (``cache_seconds``), so the store is not read on
every call; a suspension, a revoked right or a revoked key takes effect within that time.
The limiter is in-process (the embedded default); a shared implementation of
:class:`bus.security.RateLimiter` serves several gateway processes.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, TypeVar
from zoneinfo import ZoneInfo

from bus.clock import Clock
from bus.errors import Forbidden, RateLimited, Unauthenticated
from bus.security import Consumer
from bus.security.credentials import TokenError, TokenSigner, parse_api_key, verify_api_secret
from bus.security.store import ApiKeyRecord, ConsumerRecord, ConsumerStore, covers

__all__ = ["LocalRateLimiter", "RightsPolicy", "StoreAuthenticator", "effective_rights"]

V = TypeVar("V")
VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="lgsp", error="invalid_token"'}


def effective_rights(
    rights: frozenset[tuple[str, str]], scopes: frozenset[str] | None
) -> frozenset[tuple[str, str]]:
    """The consumer's rights narrowed to a token's scopes (``service/operation`` or
    ``service/*``); without scopes (an API key), the rights themselves."""
    if scopes is None:
        return rights
    granted = frozenset(
        (service, operation)
        for scope in scopes
        for service, _, operation in [scope.partition("/")]
        if operation
    )
    return frozenset(
        {r for r in rights if covers(granted, *r)} | {g for g in granted if covers(rights, *g)}
    )


class _TtlCache(Generic[V]):
    """Store reads kept for a few seconds; only found records are kept (bounded in size)."""

    def __init__(
        self, clock: Clock, seconds: float, load: Callable[[str], Awaitable[V | None]]
    ) -> None:
        self._clock = clock
        self._seconds = seconds
        self._load = load
        self._items: dict[str, tuple[float, V]] = {}

    async def get(self, key: str) -> V | None:
        hit = self._items.get(key)
        if hit is not None and self._clock.monotonic() - hit[0] <= self._seconds:
            return hit[1]
        value = await self._load(key)
        if value is not None:
            if len(self._items) > 10_000:  # a bound: the cache must not grow for ever
                self._items.clear()
            self._items[key] = (self._clock.monotonic(), value)
        return value


class StoreAuthenticator:
    """Step 1: ``Authorization: Bearer <token>``, or ``X-API-Key`` / ``Authorization: ApiKey``."""

    def __init__(
        self, store: ConsumerStore, signer: TokenSigner, clock: Clock, cache_seconds: float = 5.0
    ) -> None:
        self._store = store
        self._signer = signer
        self._clock = clock
        self._consumers = _TtlCache[ConsumerRecord](clock, cache_seconds, store.get)
        self._keys = _TtlCache[ApiKeyRecord](clock, cache_seconds, store.get_key)

    async def identify(self, headers: Mapping[str, str]) -> Consumer:
        authorization = headers.get("authorization", "")
        scheme, _, credential = authorization.partition(" ")
        api_key = headers.get("x-api-key")
        if scheme.lower() == "bearer" and credential.strip():
            try:
                claims = self._signer.verify(credential.strip(), self._clock.now().timestamp())
            except TokenError as exc:
                raise Unauthenticated(str(exc), headers=_CHALLENGE) from None
            return await self._consumer(claims.consumer_id, claims.scopes)
        if api_key is None and scheme.lower() == "apikey":
            api_key = credential.strip()
        if api_key:
            parsed = parse_api_key(api_key.strip())
            key = await self._keys.get(parsed[0]) if parsed else None
            if parsed is None or key is None or not verify_api_secret(parsed[1], key.key_hash):
                raise Unauthenticated("the API key is not valid")
            if key.revoked_at is not None:
                raise Unauthenticated("the API key has been revoked")
            return await self._consumer(key.consumer_id, None)
        if authorization:
            raise Unauthenticated(
                "unsupported Authorization scheme: use Bearer <token> or ApiKey <key>",
                headers=_CHALLENGE,
            )
        raise Unauthenticated(
            "no credential: send Authorization: Bearer <token> (from POST /v1/token) "
            "or X-API-Key: <key>",
            headers={"WWW-Authenticate": 'Bearer realm="lgsp"'},
        )

    async def _consumer(self, consumer_id: str, scopes: frozenset[str] | None) -> Consumer:
        record = await self._consumers.get(consumer_id)
        if record is None:
            raise Unauthenticated("the credential names an unknown consumer")
        if not record.active:
            raise Unauthenticated(f"consumer {record.id!r} is suspended")
        return Consumer(
            id=record.id,
            name=record.name,
            agency=record.agency,
            rights=effective_rights(record.rights, scopes),
            limits=record.limits,
        )


class RightsPolicy:
    """Step 2: the consumer's (scope-narrowed) rights decide, per service and operation."""

    async def authorise(self, consumer: Consumer, service: str, operation: str) -> None:
        if not consumer.may_call(service, operation):
            raise Forbidden(f"consumer {consumer.id!r} may not call {service}/{operation}")


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class LocalRateLimiter:
    """Step 3, in process: a token bucket per consumer (rate with a burst) and a daily quota per
    consumer and operation, the day ending at midnight in Vietnam. Answers ``RateLimit-Limit``,
    ``RateLimit-Remaining`` and ``RateLimit-Reset`` (draft-ietf-httpapi-ratelimit-headers) on
    every reply, and ``Retry-After`` when refusing."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._used: dict[tuple[str, str, str], int] = {}
        self._day = ""

    def _seconds_to_midnight(self, now: datetime) -> int:
        local = now.astimezone(VIETNAM)
        midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        return max(1, math.ceil((midnight - local).total_seconds()))

    async def limit(self, consumer: Consumer, service: str, operation: str) -> Mapping[str, str]:
        limits = consumer.limits
        if limits is None:
            return {}
        now = self._clock.monotonic()
        bucket = self._buckets.get(consumer.id)
        if bucket is None:
            bucket = self._buckets[consumer.id] = _Bucket(float(limits.burst), now)
        bucket.tokens = min(
            float(limits.burst), bucket.tokens + (now - bucket.updated) * limits.rate_per_second
        )
        bucket.updated = now
        if bucket.tokens < 1:
            wait = (1 - bucket.tokens) / limits.rate_per_second
            headers = {
                "RateLimit-Limit": str(limits.burst),
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": str(max(1, math.ceil(wait))),
            }
            raise RateLimited(
                f"consumer {consumer.id!r} exceeded {limits.rate_per_second:g} requests/s",
                retry_after=wait,
                headers=headers,
            )
        quota = limits.quota_for(service, operation)
        headers = {
            "RateLimit-Limit": str(limits.burst),
            "RateLimit-Remaining": str(int(bucket.tokens - 1)),
            "RateLimit-Reset": str(
                max(1, math.ceil((limits.burst - bucket.tokens + 1) / limits.rate_per_second))
            ),
        }
        if quota is not None:
            wall = self._clock.now()
            day = wall.astimezone(VIETNAM).date().isoformat()
            if day != self._day:  # a new day: yesterday's counts are dropped
                self._day, self._used = day, {}
            key = (consumer.id, f"{service}/{operation}", day)
            used = self._used.get(key, 0)
            reset = self._seconds_to_midnight(wall)
            if used >= quota:
                raise RateLimited(
                    f"consumer {consumer.id!r} used its daily quota of {quota} calls to "
                    f"{service}/{operation}",
                    retry_after=reset,
                    headers={
                        "RateLimit-Limit": str(quota),
                        "RateLimit-Remaining": "0",
                        "RateLimit-Reset": str(reset),
                    },
                )
            self._used[key] = used + 1
            if quota - used - 1 < bucket.tokens - 1:  # report whichever runs out first
                headers = {
                    "RateLimit-Limit": str(quota),
                    "RateLimit-Remaining": str(quota - used - 1),
                    "RateLimit-Reset": str(reset),
                }
        bucket.tokens -= 1
        return headers
