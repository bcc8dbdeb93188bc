"""Step 5 of the pipeline: call the adapter under a deadline and a named retry policy.

Policies from bus.yaml are composed from tenacity's pieces: ``stop_after_attempt`` or'd with
``stop_before_delay`` (no retry is started whose wait would pass the deadline), exponential
backoff with jitter, stretched to an upstream's ``Retry-After``, and a predicate that retries only
retryable upstream errors (connection errors, timeouts, 429, 502/503/504). The deadline covers
every attempt and wait. Whether a call may be retried at all is decided per call: reads always,
writes only when they carry an idempotency key the upstream honours. An open circuit breaker
ends the retries at once: an attempt it refuses is not an attempt worth repeating.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity
from tenacity.wait import wait_base

from bus.circuit import CircuitOpen
from bus.config import RetryPolicyConfig
from bus.errors import UpstreamError, UpstreamTimeout

__all__ = ["CallPolicy", "Outcome", "run_with_policy"]

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


class _WaitRetryAfter(wait_base):
    """Wait as ``fallback`` says, or longer if the upstream asked for it with Retry-After."""

    def __init__(self, fallback: wait_base) -> None:
        self.fallback = fallback

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        wait = self.fallback(retry_state)
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, UpstreamError) and exc.retry_after is not None:
            return max(wait, exc.retry_after)
        return wait


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, UpstreamError) and exc.retryable and not isinstance(exc, CircuitOpen)


class CallPolicy:
    """How one operation of one service is called: deadline and retry policy.

    The tenacity pieces are built once here; each call gets its own ``AsyncRetrying`` (tenacity
    keeps per-run state in it). Calls that may not be retried skip tenacity altogether.
    """

    __slots__ = ("_retry", "_stop", "_wait", "attempts", "deadline", "retry")

    def __init__(self, deadline: float, retry: RetryPolicyConfig) -> None:
        self.deadline = deadline
        self.retry = retry
        self.attempts = retry.attempts
        self._stop = tenacity.stop_after_attempt(self.attempts)
        self._wait = _WaitRetryAfter(
            tenacity.wait_exponential_jitter(
                multiplier=retry.initial_wait, max=retry.max_wait, jitter=retry.jitter
            )
        )
        self._retry = tenacity.retry_if_exception(_retryable)

    def retrying(self, sleep: Sleep, spent: float = 0.0) -> tenacity.AsyncRetrying:
        """The retries of one call that has already spent ``spent`` seconds of its deadline."""
        stop = self._stop | tenacity.stop_before_delay(self.deadline - spent)
        return tenacity.AsyncRetrying(
            stop=stop, wait=self._wait, retry=self._retry, sleep=sleep, reraise=True
        )


@dataclass(slots=True)
class Outcome:
    """How many upstream attempts a call made (the attempt function counts them, so a call
    refused by an open circuit counts none); read by the exchange record."""

    attempts: int = 0


async def run_with_policy(
    attempt: Callable[[], Awaitable[T]],
    policy: CallPolicy,
    outcome: Outcome,
    sleep: Sleep = asyncio.sleep,
    *,
    retry: bool = True,
) -> T:
    """Run ``attempt`` until it succeeds, the policy gives up, or the deadline passes;
    ``retry=False``: one attempt only."""
    deadline = asyncio.timeout(policy.deadline)
    try:
        async with deadline:
            if not retry or policy.attempts == 1:
                return await attempt()
            # Most calls end at their first attempt: tenacity is set up only after it fails.
            started = time.monotonic()
            try:
                return await attempt()
            except Exception as exc:
                if not _retryable(exc):
                    raise
                first: Exception = exc
            replayed = False

            async def again() -> T:
                nonlocal replayed
                if not replayed:  # tenacity's attempt 1 is the failure already seen
                    replayed = True
                    raise first
                return await attempt()

            async for try_ in policy.retrying(sleep, spent=time.monotonic() - started):
                with try_:
                    return await again()
    except TimeoutError as exc:
        if not deadline.expired():  # a timeout raised inside the adapter, not the deadline
            raise UpstreamTimeout("the national platform did not answer in time") from exc
        raise UpstreamTimeout(
            f"no answer within the operation's deadline of {policy.deadline:g} s "
            f"({outcome.attempts} attempt{'s' if outcome.attempts != 1 else ''})"
        ) from exc
    raise AssertionError("unreachable: tenacity either returns, or re-raises the last error")
