"""The delivery worker: sends queued store-and-forward messages, with long-horizon retries.

One loop claims due messages from the :class:`~bus.delivery.store.DeliveryStore` (a lease per
message, so several workers, in the gateway processes or in ``lgsp worker`` processes, share one
queue), and sends each through the same dispatch stage as a synchronous call: bulkhead, circuit
breaker, deadline and retry policy. The delivery id is the upstream's idempotency key, the same
on every redelivery, so a message redelivered after a crash is recognised by the upstream.

After a failed attempt the message waits (exponential backoff with jitter from the service's
``delivery`` policy, stretched to the upstream's ``Retry-After``) and is tried again; after its
last attempt, or at once when the failure is not one a retry can fix, it goes to the dead-letter
state, where an operator can retry, replay or discard it (``lgsp deliveries``). An attempt refused
by an open circuit breaker is not counted: the message is given back and waits for the circuit.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import socket

import structlog
from pydantic import ValidationError

from bus.callbacks import is_event, send_event
from bus.config import DeliveryPolicyConfig
from bus.delivery.store import Delivery
from bus.errors import BadRequest, BusError, InternalError, UpstreamTimeout, UpstreamUnavailable
from bus.gateway import Gateway
from bus.pipeline import Call, dispatch, normalise, record, resolve
from bus.security import Consumer
from schemas.base import subjects_of

__all__ = ["DeliveryWorker", "next_attempt_delay"]

log = structlog.get_logger("lgsp.delivery")


def next_attempt_delay(
    policy: DeliveryPolicyConfig, attempt: int, error: BusError, rng: random.Random
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based) before the next."""
    wait = min(policy.max_wait, policy.initial_wait * 2.0 ** (attempt - 1))
    wait += rng.uniform(0, policy.jitter)
    if error.retry_after is not None:
        wait = max(wait, error.retry_after)
    return wait


class DeliveryWorker:
    """Delivers queued messages until :meth:`stop`; run it with :meth:`start` or :meth:`run`."""

    def __init__(self, gw: Gateway, *, owner: str | None = None, seed: int | None = None) -> None:
        self.gw = gw
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._rng = random.Random(seed)  # noqa: S311 -- jitter, not a secret
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        self._claims = 0
        self._owners: dict[str, str] = {}  # delivery id -> the claim that leased it
        self._main: asyncio.Task[None] | None = None
        # The lease outlives the longest call (its deadline covers every attempt), with margin.
        self._lease = max(
            (s.config.timeout + max(5.0, s.config.timeout) for s in gw.services.values()),
            default=60.0,
        )

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def start(self) -> None:
        self._main = asyncio.create_task(self.run(), name="lgsp-delivery-worker")

    async def run(self) -> None:
        gw = self.gw
        store = gw.delivery_store
        wake = gw.deliveries_waiting
        poll = gw.settings.delivery_poll_seconds
        log.info("delivery worker started", worker=self.owner)
        while not self._stopping:
            wake.clear()
            timeout = poll
            try:
                free = gw.settings.delivery_concurrency - len(self._tasks)
                if free > 0:
                    now = gw.clock.now().timestamp()
                    self._claims += 1
                    owner = f"{self.owner}/{self._claims}"  # fences this claim, not the worker
                    batch = await store.claim(owner, free, now, self._lease)
                    for delivery in batch:
                        self._spawn(delivery, owner)
                    if len(batch) < free:  # nothing else due now: sleep until the next is
                        due = await store.next_due()
                        if due is not None:
                            timeout = min(poll, max(0.0, due - gw.clock.now().timestamp()))
                    else:
                        timeout = poll  # every slot busy: a finishing delivery wakes the loop
            except Exception:  # the store failed (disk full, locked): keep trying, loudly
                log.exception("delivery loop failed; trying again", worker=self.owner)
            if self._stopping:
                break
            try:
                await asyncio.wait_for(wake.wait(), timeout)
            except TimeoutError:
                continue
        log.info("delivery worker stopped claiming", worker=self.owner)

    def _spawn(self, delivery: Delivery, owner: str) -> None:
        task = asyncio.create_task(self._deliver(delivery, owner), name=f"deliver-{delivery.id}")
        self._tasks[delivery.id] = task
        self._owners[delivery.id] = owner

        def done(finished: asyncio.Task[None]) -> None:
            if self._tasks.get(delivery.id) is finished:  # not a later claim of the same id
                del self._tasks[delivery.id]
                del self._owners[delivery.id]
            if not finished.cancelled() and finished.exception() is not None:
                log.error(
                    "delivery task failed",
                    delivery_id=delivery.id,
                    exc_info=finished.exception(),
                )
            self.gw.deliveries_waiting.set()

        task.add_done_callback(done)

    async def _record_cancelled(self, call: Call) -> None:
        cancelled = UpstreamTimeout("the attempt was cancelled when the worker stopped")
        try:
            await record(self.gw, call, cancelled.http_status, cancelled, b"")
        except Exception:
            log.exception("cancelled delivery attempt could not be recorded")

    async def _deliver(self, d: Delivery, owner: str) -> None:
        gw = self.gw
        store = gw.delivery_store
        started = gw.clock.now()
        call = Call(
            request_id=d.request_id,
            service=d.service,
            operation=d.operation,
            received_at=started,
            started=gw.clock.monotonic(),
            consumer=Consumer(id=d.consumer, name=d.consumer, agency=d.agency),
            request_bytes=len(d.payload),
            delivery_id=d.id,
            kind="delivery",
            request_body=d.payload,
            end_user=d.end_user,
        )
        error: BusError | None = None
        result: bytes | None = None
        try:
            gw.exchange_recorder.admit()
        except BusError:  # the exchange log cannot be written: nothing may reach the upstream
            now = gw.clock.now().timestamp()
            await store.release(d.id, owner, now, next_attempt_at=now + 5.0)
            return
        try:
            svc = gw.services.get(d.service)
            if svc is not None and is_event(svc, d.operation):  # an event for a webhook
                call.capture = svc.config.audit
                result = await send_event(gw, svc, d, call)
            else:
                result = await self._to_upstream(d, call)
        except UpstreamUnavailable as exc:
            if call.outcome.attempts == 0:  # an open circuit or a full bulkhead: not an attempt
                now = gw.clock.now().timestamp()
                later = now + (exc.retry_after or 1.0)
                await store.release(d.id, owner, now, next_attempt_at=later)
                return
            error = exc
        except BusError as exc:
            error = exc
        except asyncio.CancelledError:  # stopped past the grace period, mid-attempt
            if call.outcome.attempts:  # the upstream may have it: the attempt is recorded
                await asyncio.shield(self._record_cancelled(call))
            raise
        except Exception:
            log.exception("delivery failed unexpectedly", delivery_id=d.id, service=d.service)
            error = InternalError()
        now = gw.clock.now().timestamp()
        try:
            status = 200 if error is None else error.http_status
            await record(gw, call, status, error, b"" if result is None else result)
        except Exception:  # the upstream has the message: it must not be sent twice for this
            log.exception("delivery attempt could not be recorded", delivery_id=d.id)
        if error is None:
            assert result is not None
            kept = await store.complete(d.id, owner, started.timestamp(), result, now)
        else:
            attempt = d.round_attempts + 1
            next_at: float | None = None
            if error.retryable and attempt < d.max_attempts:
                policy = gw.services[d.service].config.delivery
                next_at = now + next_attempt_delay(policy, attempt, error, self._rng)
            kept = await store.fail(
                d.id, owner, started.timestamp(), error.code, error.message, next_at, now
            )
            if next_at is None and kept:
                log.warning(
                    "delivery moved to the dead-letter list",
                    delivery_id=d.id,
                    service=d.service,
                    operation=d.operation,
                    error_code=error.code,
                    attempts=d.attempts + 1,
                )
        if not kept:
            log.warning("delivery lease was lost; its outcome was not kept", delivery_id=d.id)

    async def _to_upstream(self, d: Delivery, call: Call) -> bytes:
        """One attempt of a queued operation through the dispatch stage; its canonical reply."""
        target = resolve(self.gw, d.service, d.operation)
        call.capture = target.service.config.audit
        try:
            payload = target.spec.input_model.model_validate_json(d.payload)
        except ValidationError as exc:
            raise BadRequest(
                "the queued message no longer matches the operation's input model"
            ) from exc
        call.subjects |= subjects_of(payload)
        output = normalise(target, await dispatch(self.gw, target, payload, call))
        call.subjects |= subjects_of(output)
        return output.model_dump_json().encode()

    async def stop(self, grace: float | None = None) -> None:
        """Stop claiming; let deliveries in flight finish within ``grace`` seconds; give the
        others back to the queue (their messages stay queued, nothing is lost)."""
        grace = self.gw.settings.grace_seconds if grace is None else grace
        self._stopping = True
        self.gw.deliveries_waiting.set()
        if self._main is not None:
            await self._main
        tasks = dict(self._tasks)
        owners = dict(self._owners)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks.values(), timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        store = self.gw.delivery_store
        now = self.gw.clock.now().timestamp()
        for delivery_id, task in tasks.items():
            if task in pending:
                await store.release(delivery_id, owners[delivery_id], now)
        log.info(
            "delivery worker stopped",
            worker=self.owner,
            finished=len(tasks) - len(pending),
            given_back=len(pending),
        )
