"""Steps 1-3 of the pipeline: identify the consumer, authorise the operation, apply its limits.

Each step is a small interface so the embedded defaults can be replaced (a JWT verifier, a rights
table, a Redis-backed limiter) without touching the pipeline. The defaults in this module are the
*open* placeholders of the first release: every caller is the anonymous consumer, may call every
operation, without limit. They must not face an untrusted network; consumer credentials, rights
and rate limits replace them (issue 4).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "ANONYMOUS",
    "AccessPolicy",
    "AllowAll",
    "Authenticator",
    "Consumer",
    "NoLimit",
    "OpenAuthenticator",
    "RateLimiter",
    "Security",
]


@dataclass(frozen=True, slots=True)
class Consumer:
    """A calling provincial system, as the bus identified it."""

    id: str
    name: str
    agency: str | None = None
    authenticated: bool = True


ANONYMOUS = Consumer(id="anonymous", name="Anonymous caller", authenticated=False)


class Authenticator(Protocol):
    """Step 1: who is calling? Raises :class:`bus.errors.Unauthenticated` when unknown."""

    async def identify(self, headers: Mapping[str, str]) -> Consumer: ...


class AccessPolicy(Protocol):
    """Step 2: may this consumer call service.operation? Raises :class:`bus.errors.Forbidden`."""

    async def authorise(self, consumer: Consumer, service: str, operation: str) -> None: ...


class RateLimiter(Protocol):
    """Step 3: is the consumer within its rate and quota? Raises :class:`bus.errors.RateLimited`."""

    async def limit(self, consumer: Consumer, service: str, operation: str) -> None: ...


class OpenAuthenticator:
    """Placeholder: every caller is :data:`ANONYMOUS`."""

    async def identify(self, headers: Mapping[str, str]) -> Consumer:
        return ANONYMOUS


class AllowAll:
    """Placeholder: every consumer may call every operation."""

    async def authorise(self, consumer: Consumer, service: str, operation: str) -> None:
        return None


class NoLimit:
    """Placeholder: no rate limit, no quota."""

    async def limit(self, consumer: Consumer, service: str, operation: str) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Security:
    """The three security stages the pipeline runs, in order."""

    authenticator: Authenticator = field(default_factory=OpenAuthenticator)
    policy: AccessPolicy = field(default_factory=AllowAll)
    limiter: RateLimiter = field(default_factory=NoLimit)
