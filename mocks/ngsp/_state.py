"""The NGSP mock's memory: issued tokens, per-consumer throttle windows and counters.

Pure logic on an injected clock (seconds, any origin), no HTTP: tests step the clock.
"""

from __future__ import annotations

import math
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


@dataclass(frozen=True)
class _Grant:
    consumer: str
    expires_at: float


class TokenStore:
    """Opaque bearer tokens, each owned by one consumer key and valid for ``lifetime`` seconds."""

    def __init__(self, lifetime: float, clock: Clock) -> None:
        self._lifetime = lifetime
        self._clock = clock
        self._grants: dict[str, _Grant] = {}
        self.issued = 0

    def issue(self, consumer: str) -> str:
        now = self._clock()
        self._grants = {t: g for t, g in self._grants.items() if g.expires_at > now}
        token = secrets.token_urlsafe(24)
        self._grants[token] = _Grant(consumer, now + self._lifetime)
        self.issued += 1
        return token

    def owner(self, token: str) -> str | None:
        """The consumer holding ``token``; ``None`` if it is unknown or has expired."""
        grant = self._grants.get(token)
        if grant is None:
            return None
        if grant.expires_at <= self._clock():
            del self._grants[token]
            return None
        return grant.consumer

    def expire_all(self) -> int:
        """Forget every token; returns how many were still held."""
        count = len(self._grants)
        self._grants.clear()
        return count


class FixedWindowThrottle:
    """At most ``limit`` requests per consumer in each window of ``window`` seconds.

    A consumer's window opens with its first request and lasts ``window`` seconds, whatever
    happens inside it; the next request after it opens a new one.
    """

    def __init__(self, limit: int, clock: Clock, window: float = 60.0) -> None:
        self._limit = limit
        self._clock = clock
        self._window = window
        self._windows: dict[str, tuple[float, int]] = {}  # consumer -> (opened at, count)

    def admit(self, consumer: str) -> int | None:
        """``None`` if the request may pass, else the whole seconds (>= 1) until the window
        resets, for ``Retry-After``."""
        now = self._clock()
        opened, count = self._windows.get(consumer, (now, 0))
        if now - opened >= self._window:
            opened, count = now, 0
        if count >= self._limit:
            return max(1, math.ceil(opened + self._window - now))
        self._windows[consumer] = (opened, count + 1)
        return None


class Stats:
    """What ``GET /__admin/stats`` reports."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()  # authenticated API requests, throttled included
        self.throttled = 0
