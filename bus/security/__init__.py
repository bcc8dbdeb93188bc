"""Steps 1-3 of the pipeline: identify the consumer, authorise the operation, apply its limits.

Each step is a small interface so implementations can be replaced (a Redis-backed limiter for
several gateway processes, an external identity provider) without touching the pipeline. The
real ones are in :mod:`bus.security.auth` (bearer JWTs and API keys checked against the consumer
store, per-operation rights, token-bucket rate and daily quotas). The *open* ones in this module
(every caller is the anonymous consumer, may call everything, without limit) serve only
``LGSP_AUTH=open`` for development and tests that are not about security.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from bus.security.store import Limits, covers

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
    """A calling provincial system, as the bus identified it for one call."""

    id: str
    name: str
    agency: str | None = None
    authenticated: bool = True
    #: (service, operation) pairs this call may use; operation "*" is every operation of the
    #: service. None: unrestricted (open mode only).
    rights: frozenset[tuple[str, str]] | None = None
    limits: Limits | None = None

    def may_call(self, service: str, operation: str) -> bool:
        if self.rights is None:
            return True
        return covers(self.rights, service, operation)


ANONYMOUS = Consumer(id="anonymous", name="Anonymous caller", authenticated=False)


class Authenticator(Protocol):
    """Step 1: who is calling? Raises :class:`bus.errors.Unauthenticated` when unknown."""

    async def identify(self, headers: Mapping[str, str]) -> Consumer: ...


class AccessPolicy(Protocol):
    """Step 2: may this consumer call service.operation? Raises :class:`bus.errors.Forbidden`."""

    async def authorise(self, consumer: Consumer, service: str, operation: str) -> None: ...


class RateLimiter(Protocol):
    """Step 3: is the consumer within its rate and quota? Raises :class:`bus.errors.RateLimited`
    (with ``Retry-After`` and ``RateLimit-*`` headers); otherwise returns the ``RateLimit-*``
    headers to send with the reply."""

    async def limit(
        self, consumer: Consumer, service: str, operation: str
    ) -> Mapping[str, str]: ...


class OpenAuthenticator:
    """Open mode: every caller is :data:`ANONYMOUS`."""

    async def identify(self, headers: Mapping[str, str]) -> Consumer:
        return ANONYMOUS


class AllowAll:
    """Open mode: every consumer may call every operation."""

    async def authorise(self, consumer: Consumer, service: str, operation: str) -> None:
        return None


class NoLimit:
    """Open mode: no rate limit, no quota."""

    async def limit(self, consumer: Consumer, service: str, operation: str) -> Mapping[str, str]:
        return {}


@dataclass(frozen=True, slots=True)
class Security:
    """The three security stages the pipeline runs, in order."""

    authenticator: Authenticator = field(default_factory=OpenAuthenticator)
    policy: AccessPolicy = field(default_factory=AllowAll)
    limiter: RateLimiter = field(default_factory=NoLimit)
