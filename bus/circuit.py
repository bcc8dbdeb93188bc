"""Per-upstream circuit breaker and bulkhead: pure in-process bookkeeping, no I/O.

**Circuit breaker.** Three states, as in the classic pattern (and resilience4j's time-based
variant):

``closed``
    Every call is let through. Outcomes are counted in a sliding window of ``window`` seconds,
    kept as a ring of time buckets (1 s wide, narrower for windows under 10 s so that there are
    always at least ten): memory is fixed by the window, whatever the call rate, and running
    totals make the failure rate O(1) to read. An outcome counts for between ``window`` minus
    one bucket and ``window`` seconds, never longer. Once the window holds ``minimum_calls``
    outcomes and ``failures / calls >= failure_rate``, the circuit opens.
``open``
    Calls are refused at once with :class:`CircuitOpen`, an
    :class:`~bus.errors.UpstreamUnavailable` (503 ``upstream.unavailable``, with a
    ``Retry-After`` of the time left) for ``open_seconds``; the upstream gets time to recover
    and callers do not queue behind a dead platform.
``half_open``
    After ``open_seconds`` the circuit lets up to ``half_open_probes`` trial calls out at once
    and refuses the rest. One failed probe reopens it for a full ``open_seconds``; once
    ``half_open_probes`` probes have succeeded it closes with an empty window.

The move from open to half-open is made lazily by whoever looks first after ``open_seconds``
(:meth:`CircuitBreaker.acquire`, :attr:`~CircuitBreaker.state` or
:meth:`~CircuitBreaker.snapshot`): there is no timer.

Every state change starts a new *generation*. :meth:`CircuitBreaker.acquire` returns the
generation as a ticket and :meth:`CircuitBreaker.release` drops outcomes whose ticket is from an
older one: a slow call started while closed that ends after the circuit opened is neither a
probe result nor frees a probe slot, and a call started before the circuit closed does not land
in the fresh window. Callers release every ticket exactly once, in a ``finally``, with
``failed=True`` for timeouts and cancellation as well as upstream failures.

**Bulkhead.** A cap on calls in flight to one upstream. There is no waiting queue: a call over
the cap is shed at once with a 503 rather than holding a worker while a slow platform drains.

Both classes are meant for one event loop: they never await, so each method runs atomically
with respect to other tasks. They are not thread-safe.
"""

from __future__ import annotations

import math
from types import TracebackType
from typing import Any, Literal

import structlog

from bus.clock import Clock
from bus.config import CircuitBreakerConfig
from bus.errors import UpstreamUnavailable

__all__ = ["Bulkhead", "CircuitBreaker", "CircuitOpen", "CircuitState"]

log = structlog.get_logger("lgsp.circuit")

CircuitState = Literal["closed", "open", "half_open"]

#: Windows shorter than this many seconds get this many buckets, narrower than 1 s.
_MIN_BUCKETS = 10
#: Retry-After of a call refused while the half-open probes are out: their outcome comes soon.
_HALF_OPEN_RETRY_AFTER = 1.0


class CircuitOpen(UpstreamUnavailable):
    """Refused by an open circuit (or a half-open one whose probes are all out): the upstream
    was not called. Still ``upstream.unavailable`` on the wire; the distinct class lets the
    pipeline neither retry it within the request nor count it against the upstream."""


class _Window:
    """Call and failure counts over the last ``seconds``, in a ring of time buckets."""

    __slots__ = ("_calls", "_failures", "_head", "calls", "failures", "size", "width")

    def __init__(self, seconds: float) -> None:
        self.size = max(_MIN_BUCKETS, math.ceil(seconds))
        self.width = seconds / self.size
        self._calls = [0] * self.size
        self._failures = [0] * self.size
        self._head: int | None = None  # index (time // width) of the newest bucket
        self.calls = 0
        self.failures = 0

    def advance(self, now: float) -> None:
        """Drop the buckets that have slid out of the window at ``now``."""
        index = math.floor(now / self.width)
        if self._head is None:
            self._head = index
            return
        if index <= self._head:  # same bucket (or a clock that went back: stay put)
            return
        if index - self._head >= self.size:
            self.clear()
        else:
            for i in range(self._head + 1, index + 1):
                slot = i % self.size
                self.calls -= self._calls[slot]
                self.failures -= self._failures[slot]
                self._calls[slot] = 0
                self._failures[slot] = 0
        self._head = index

    def record(self, now: float, failed: bool) -> None:
        self.advance(now)
        assert self._head is not None
        slot = self._head % self.size
        self._calls[slot] += 1
        self.calls += 1
        if failed:
            self._failures[slot] += 1
            self.failures += 1

    def clear(self) -> None:
        self._calls = [0] * self.size
        self._failures = [0] * self.size
        self.calls = 0
        self.failures = 0

    @property
    def rate(self) -> float | None:
        return self.failures / self.calls if self.calls else None


class CircuitBreaker:
    """Takes one upstream out of the path while it fails; see the module docstring."""

    __slots__ = (
        "_clock",
        "_generation",
        "_opened_at",
        "_probes_ok",
        "_probes_out",
        "_state",
        "_window",
        "config",
        "name",
        "opened_total",
    )

    def __init__(self, name: str, config: CircuitBreakerConfig, clock: Clock) -> None:
        self.name = name
        self.config = config
        self._clock = clock
        self._window = _Window(config.window)
        self._state: CircuitState = "closed"
        self._generation = 0
        self._opened_at = 0.0
        self._probes_out = 0
        self._probes_ok = 0
        #: How many times the circuit opened since start (reopenings after a failed probe too).
        self.opened_total = 0

    @property
    def state(self) -> CircuitState:
        """The state now (an open circuit whose ``open_seconds`` are over is half-open)."""
        return self._current(self._clock.monotonic())

    @property
    def generation(self) -> int:
        """Incremented on every state change; the value :meth:`acquire` hands out as a ticket."""
        return self._generation

    def acquire(self) -> int:
        """Let one call through and return its ticket, or raise :class:`CircuitOpen`."""
        now = self._clock.monotonic()
        state = self._current(now)
        if state == "open":
            left = self._retry_in(now)
            raise CircuitOpen(
                f"the circuit to {self.name} is open after repeated failures; "
                f"try again in {max(round(left, 1), 0.1):g} s",
                retry_after=left,
                detail={"circuit": "open", "retry_in": round(left, 1)},
            )
        if state == "half_open":
            if self._probes_out >= self.config.half_open_probes:
                retry = min(_HALF_OPEN_RETRY_AFTER, self.config.open_seconds)
                raise CircuitOpen(
                    f"the circuit to {self.name} is half-open: trial calls are under way; "
                    "try again shortly",
                    retry_after=retry,
                    detail={"circuit": "half_open", "retry_in": round(retry, 1)},
                )
            self._probes_out += 1
        return self._generation

    def release(self, ticket: int, failed: bool | None) -> None:
        """Record the outcome of the call that got ``ticket``; stale tickets are ignored.

        ``failed=None``: the call says nothing about the upstream (a bug in the adapter): its
        probe slot is freed, and nothing is counted either way.
        """
        if ticket != self._generation:
            return
        now = self._clock.monotonic()
        if failed is None:
            if self._state == "half_open" and self._probes_out > 0:
                self._probes_out -= 1
            return
        if self._state == "closed":
            self._window.record(now, failed)
            if (
                self._window.calls >= self.config.minimum_calls
                and self._window.failures / self._window.calls >= self.config.failure_rate
            ):
                self._open(now, reason="failure rate")
        elif self._state == "half_open":
            if self._probes_out <= 0:  # released twice: not a probe any more
                return
            self._probes_out -= 1
            if failed:
                self._open(now, reason="probe failed")
            else:
                self._probes_ok += 1
                if self._probes_ok >= self.config.half_open_probes:
                    self._close(now)
        # open: no ticket of an open generation is ever handed out.

    def snapshot(self) -> dict[str, Any]:
        """The state as JSON-able values, for ``/readyz`` and the CLI."""
        now = self._clock.monotonic()
        state = self._current(now)
        self._window.advance(now)
        rate = self._window.rate
        return {
            "state": state,
            "failure_rate": None if rate is None else round(rate, 3),
            "calls": self._window.calls,
            "failures": self._window.failures,
            "retry_in": round(self._retry_in(now), 1) if state == "open" else None,
            "opened_total": self.opened_total,
            "config": self.config.model_dump(mode="json"),
        }

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self._state!r})"

    # -- transitions -----------------------------------------------------------------------------

    def _current(self, now: float) -> CircuitState:
        if self._state == "open" and now - self._opened_at >= self.config.open_seconds:
            self._change("half_open")
            self._probes_out = 0
            self._probes_ok = 0
            log.info("circuit half-open", upstream=self.name, probes=self.config.half_open_probes)
        return self._state

    def _retry_in(self, now: float) -> float:
        return max(self.config.open_seconds - (now - self._opened_at), 0.0)

    def _open(self, now: float, reason: str) -> None:
        self._window.advance(now)
        rate = self._window.rate
        self._change("open")
        self._opened_at = now
        self.opened_total += 1
        log.warning(
            "circuit opened",
            upstream=self.name,
            reason=reason,
            failure_rate=None if rate is None else round(rate, 3),
            calls=self._window.calls,
            open_seconds=self.config.open_seconds,
        )

    def _close(self, now: float) -> None:
        self._change("closed")
        self._window.clear()
        self._window.advance(now)
        log.info("circuit closed", upstream=self.name, probes=self._probes_ok)

    def _change(self, state: CircuitState) -> None:
        self._state = state
        self._generation += 1


class Bulkhead:
    """At most ``max_in_flight`` calls to one upstream at once; the rest are shed, not queued.

    Use :meth:`enter` and :meth:`leave` (in a ``finally``), or ``with bulkhead:``.
    """

    __slots__ = ("in_flight", "max_in_flight", "name", "rejected_total")

    def __init__(self, name: str, max_in_flight: int) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        self.name = name
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        #: Calls refused because the bulkhead was full, since start.
        self.rejected_total = 0

    def enter(self) -> None:
        """Take a slot, or raise ``UpstreamUnavailable`` at once when none is free."""
        if self.in_flight >= self.max_in_flight:
            self.rejected_total += 1
            raise UpstreamUnavailable(
                f"too many calls in flight to {self.name} (limit {self.max_in_flight}); "
                "try again shortly",
                retry_after=1.0,
                detail={"bulkhead": "full", "max_in_flight": self.max_in_flight},
            )
        self.in_flight += 1

    def leave(self) -> None:
        """Give the slot back; an unmatched call is ignored rather than going below zero."""
        if self.in_flight > 0:
            self.in_flight -= 1

    def snapshot(self) -> dict[str, Any]:
        """The counters as JSON-able values."""
        return {
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "rejected_total": self.rejected_total,
        }

    def __enter__(self) -> Bulkhead:
        self.enter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.leave()

    def __repr__(self) -> str:
        return f"Bulkhead({self.name!r}, in_flight={self.in_flight}/{self.max_in_flight})"
