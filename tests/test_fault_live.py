"""Live fault run: the real bus in front of the real mocks, with the mocks failing on purpose.

The population database mock answers about 30 % of its SOAP requests with a 503 (NGSP passes
it back, as the real gateway passes a back end's outage) and every request waits 20-150 ms
first. Two hundred reads go through the bus, eight at a time. Every read must either succeed
or come back as a clear ``upstream.*`` error within the service's deadline; retries must lift
the success rate well above the raw 70 %. A report of the run is printed (outside pytest's
capture, so it shows without ``-s``) and repeated in any assertion message.

A second, smaller run also fails half of NGSP's token requests (503 after 20 ms), with tokens
that expire every second, so the bus must keep renewing its token while the token endpoint is
unreliable.

The faults are seeded (``/__admin/faults`` with a seed; the latency is drawn from a seeded
generator), so the sequence of faults the mocks hand out is the same on every run; which call
meets which fault still depends on the order concurrent requests arrive in.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI

from bus import create_app
from bus.audit import Exchange, MemoryRecorder
from bus.circuit import CircuitBreaker
from bus.errors import CATALOGUE
from bus.settings import Settings
from mocks.faults import FaultMiddleware
from mocks.ngsp import NgspSettings
from mocks.population import PopulationSettings
from mocks.population.seed import Citizen, Registry
from mocks.stack import DEMO_CONSUMER_KEY, DEMO_CONSUMER_SECRET, MockStack
from tests.support import running

pytestmark = [pytest.mark.anyio, pytest.mark.live]

ENV = {"NGSP_CONSUMER_KEY": DEMO_CONSUMER_KEY, "NGSP_CONSUMER_SECRET": DEMO_CONSUMER_SECRET}

SEED = 2026
ERROR_RATE = 0.3
LATENCY_MS = (20.0, 150.0)
DEADLINE = 3.0  # the service's timeout: covers every attempt and every wait between them
MARGIN = 0.5  # what the bus may add around the deadline (validation, envelope, record)
ATTEMPTS = 4
CONCURRENCY = 8
READS = 200

#: With 4 attempts at 30 % failure a read fails with probability 0.3**4 < 1 %: about 2 of 200.
#: Without retries about 60 of 200 would fail, so this bound fails if retries stop working.
MIN_SUCCESS = 0.95
#: Share of reads that needed a retry: about 30 % expected; below this the faults were not on.
MIN_RETRIED = 0.10

GENDER = {"1": "male", "2": "female"}


def bus_yaml(stack: MockStack) -> str:
    # The circuit breaker keeps the default failure rate (0.5) but judges it only from 40
    # attempts on, and opens for 2 s instead of 15. With the default minimum of 10, an upstream
    # failing 30 % of the time shows 5 failures in its first 10 attempts about one time in
    # five; and one failed token renewal counts once for every call waiting on it (8 here),
    # which with the second run's token faults opens the circuit at once. Either way the
    # circuit then refuses every call for its open period: clear errors, but the run would
    # measure the breaker, not the retries.
    return f"""\
version: 1
retry_policies:
  flaky:
    attempts: {ATTEMPTS}
    initial_wait: 0.05
    max_wait: 0.4
    jitter: 0.05
services:
  population:
    adapter: population
    upstream:
      base_url: {stack.urls["ngsp"]}
      credentials: {{consumer_key: NGSP_CONSUMER_KEY, consumer_secret: NGSP_CONSUMER_SECRET}}
    timeout: {DEADLINE:g}
    retry: flaky
    circuit_breaker:
      failure_rate: 0.5
      window: 30
      minimum_calls: 40
      open_seconds: 2
"""


# -- the mocks' faults ----------------------------------------------------------------------------


class JitteredLatency:
    """Stands in for a fault injector's ``sleep`` (its documented hook): every latency wait of a
    rule becomes a uniform draw between ``low_ms`` and ``high_ms`` from a seeded generator.

    ``FaultRule.latency_ms`` is one fixed value; a range is what a real platform shows. The
    rules used here have no hangs, so every wait that comes through here is a latency wait.
    """

    def __init__(self, low_ms: float, high_ms: float, seed: int) -> None:
        self.low = low_ms / 1000
        self.high = high_ms / 1000
        self._random = random.Random(seed)  # noqa: S311 - test latency, not cryptography
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        wait = self._random.uniform(self.low, self.high)
        self.waits.append(wait)
        await anyio.sleep(wait)


def jitter_latency(app: FastAPI, seed: int) -> JitteredLatency:
    """Put a :class:`JitteredLatency` under the fault middleware of a started mock."""
    middleware = app.middleware_stack  # built when the app started (its lifespan ran)
    assert isinstance(middleware, FaultMiddleware), "the mock has no fault injection in front"
    latency = JitteredLatency(*LATENCY_MS, seed=seed)
    middleware.injector.sleep = latency
    return latency


async def admin(method: str, url: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.request(method, url, **kwargs)


async def set_faults(base_url: str, rules: list[dict[str, Any]], seed: int) -> None:
    reply = await admin("PUT", f"{base_url}/__admin/faults", json={"rules": rules, "seed": seed})
    assert reply.status_code == 200, reply.text


def outage(path: str, rate: float = ERROR_RATE) -> dict[str, Any]:
    """A rule: ``rate`` of the requests on ``path`` answered 503, each one delayed."""
    return {
        "path": path,
        "error_rate": rate,
        "error_statuses": [503],
        # Under a JitteredLatency (the database) only a marker, the wait is drawn there;
        # elsewhere (NGSP's token endpoint) the wait itself.
        "latency_ms": LATENCY_MS[0],
    }


# -- the reads ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Read:
    """One read to send, and what its data must say when it succeeds."""

    operation: str
    body: dict[str, Any]
    expected: dict[str, Any]

    def problem_with(self, data: Any) -> str | None:
        for key, value in self.expected.items():
            got: Any = data
            for part in key.split("."):
                got = got.get(part) if isinstance(got, dict) else None
            if got != value:
                return f"data.{key} is not the expected value"  # the value may be personal
        return None


def reads_of(citizens: Sequence[Citizen], count: int) -> list[Read]:
    """Lookups and verifications (with the right facts) of seeded citizens, in turn. A verify
    whose facts all match is one SOAP request; a mismatch would fan out into several."""
    reads: list[Read] = []
    for i in range(count):
        person = citizens[(i // 2) % len(citizens)]
        if i % 2 == 0:
            body = {"personal_id": person.id, "full_name": person.name.full}
            expected = {"found": True, "citizen.personal_id": person.id}
            reads.append(Read("citizen.lookup", body, expected))
        else:
            body = {
                "personal_id": person.id,
                "full_name": person.name.full,
                "gender": GENDER[person.gender],
            }
            if person.birth_date_known:
                body["birth_date"] = person.birth_date.isoformat()
            reads.append(Read("citizen.verify", body, {"match": True, "mismatched_fields": []}))
    return reads


@dataclass(frozen=True)
class Result:
    index: int
    read: Read
    request_id: str
    status: int
    header_id: str | None
    body: dict[str, Any]
    elapsed: float

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.body.get("status") == "ok"

    @property
    def code(self) -> str | None:
        error = self.body.get("error")
        return error.get("code") if isinstance(error, dict) else None


async def fire(client: httpx.AsyncClient, reads: Sequence[Read]) -> list[Result]:
    """Send every read through the bus, ``CONCURRENCY`` at a time, timing each one."""
    pending: Iterator[tuple[int, Read]] = iter(enumerate(reads))
    results: list[Result] = []

    async def worker() -> None:
        for index, read in pending:  # one iterator shared by the workers: each read once
            request_id = f"fault-run-{index:04d}"
            started = time.perf_counter()
            reply = await client.post(
                f"/v1/services/population/{read.operation}",
                json=read.body,
                headers={"X-Request-ID": request_id},
            )
            elapsed = time.perf_counter() - started
            try:
                body = reply.json()
            except ValueError:
                body = {"unreadable": reply.text[:200]}
            results.append(
                Result(
                    index,
                    read,
                    request_id,
                    reply.status_code,
                    reply.headers.get("x-request-id"),
                    body if isinstance(body, dict) else {"not_an_object": body},
                    elapsed,
                )
            )

    async with asyncio.timeout(120):  # a hang is a failure, not a stuck run
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return sorted(results, key=lambda r: r.index)


def problems_of(result: Result, exchange: Exchange | None) -> list[str]:
    """What is wrong with one read's reply: nothing, for a success with the expected data or a
    clear upstream error in time."""
    where = f"read {result.index} ({result.read.operation})"
    found: list[str] = []
    if not (result.header_id == result.body.get("request_id") == result.request_id):
        found.append(
            f"{where}: X-Request-ID {result.header_id!r}, body request_id "
            f"{result.body.get('request_id')!r}, sent {result.request_id!r}"
        )
    if result.elapsed > DEADLINE + MARGIN:
        found.append(f"{where}: took {result.elapsed:.2f} s, deadline {DEADLINE:g} s")
    if exchange is None:
        found.append(f"{where}: no exchange record")
    elif not 0 <= exchange.attempts <= ATTEMPTS:
        found.append(f"{where}: {exchange.attempts} attempts, the policy allows {ATTEMPTS}")
    if result.ok:
        problem = result.read.problem_with(result.body.get("data"))
        if problem is not None:
            found.append(f"{where}: succeeded with wrong data: {problem}")
        return found
    # A clear error: an upstream.* code of the catalogue, with its HTTP status and retryable
    # flag, and a message; never bus.internal, never a 500.
    code = result.code or ""
    spec = CATALOGUE.get(code)
    error = result.body.get("error") or {}
    if (
        not code.startswith("upstream.")
        or spec is None
        or result.status != spec.http_status
        or error.get("retryable") is not spec.retryable
        or not error.get("message")
        or result.body.get("status") != "error"
    ):
        found.append(f"{where}: HTTP {result.status}, code {code or None!r}: not a clear error")
    return found


# -- the report -----------------------------------------------------------------------------------


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(math.ceil(share * len(ordered)) - 1, 0)]


def duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def counts(counter: Mapping[Any, int]) -> str:
    return "{" + ", ".join(f"{key}: {counter[key]}" for key in sorted(counter)) + "}"


@dataclass
class Run:
    """One fault run's results, exchange records and what the mocks saw."""

    label: str
    results: list[Result]
    exchanges: dict[str, Exchange]
    breaker: CircuitBreaker | None
    latency: JitteredLatency
    extra: list[str] = field(default_factory=list)

    @property
    def successes(self) -> int:
        return sum(r.ok for r in self.results)

    @property
    def success_rate(self) -> float:
        return self.successes / len(self.results)

    @property
    def attempts(self) -> Counter[int]:
        return Counter(
            self.exchanges[r.request_id].attempts
            for r in self.results
            if r.request_id in self.exchanges
        )

    @property
    def upstream_statuses(self) -> Counter[int]:
        """HTTP status of every SOAP request the bus sent, as the exchange records keep them."""
        return Counter(
            soap["http_status"]
            for exchange in self.exchanges.values()
            for soap in exchange.upstream_exchanges
        )

    def problems(self) -> list[str]:
        return [
            problem
            for result in self.results
            for problem in problems_of(result, self.exchanges.get(result.request_id))
        ]

    def report(self) -> str:
        total = len(self.results)
        errors = Counter(r.code or f"HTTP {r.status}" for r in self.results if not r.ok)
        attempts = self.attempts
        mean = sum(k * v for k, v in attempts.items()) / max(sum(attempts.values()), 1)
        elapsed = [r.elapsed for r in self.results]
        statuses = self.upstream_statuses
        soap = sum(statuses.values())
        opened = self.breaker.opened_total if self.breaker is not None else 0
        waits = self.latency.waits
        lines = [
            f"fault run: {total} reads, {ERROR_RATE:.0%} 503 + "
            f"{LATENCY_MS[0]:.0f}-{LATENCY_MS[1]:.0f} ms ({self.label}): "
            f"success {self.success_rate:.1%} ({self.successes}/{total}), "
            f"errors {counts(errors)}, attempts mean {mean:.2f} {counts(attempts)}, "
            f"latency p50 {duration(percentile(elapsed, 0.5))} "
            f"p95 {duration(percentile(elapsed, 0.95))} max {duration(max(elapsed))} "
            f"(deadline {DEADLINE:g} s)",
            f"  upstream: {soap} SOAP requests, statuses {counts(statuses)} "
            f"({statuses[503] / max(soap, 1):.1%} 503); injected waits {len(waits)}, "
            f"mean {duration(sum(waits) / max(len(waits), 1))}; "
            f"circuit opened {opened} time(s); {CONCURRENCY} at a time",
            *(f"  {line}" for line in self.extra),
        ]
        return "\n".join(lines)


def show(report: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Print the report past pytest's capture, so that it shows in the normal output."""
    with capsys.disabled():
        print(f"\n{report}")


def check(run: Run, min_success: float) -> None:
    """The assertions every fault run shares; each message carries the report."""
    report = run.report()
    problems = run.problems()
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:20]) + f"\n{report}"
    assert run.success_rate >= min_success, f"success below {min_success:.0%}\n{report}"
    retried = sum(v for k, v in run.attempts.items() if k > 1)
    assert retried >= MIN_RETRIED * len(run.results), f"too few retries: faults off?\n{report}"
    statuses = run.upstream_statuses
    share = statuses[503] / max(sum(statuses.values()), 1)
    assert 0.15 <= share <= 0.45, f"503 share {share:.1%}, not about {ERROR_RATE:.0%}\n{report}"
    assert len(run.latency.waits) >= sum(statuses.values()), f"latency not injected\n{report}"
    fastest = min(r.elapsed for r in run.results if r.ok)
    assert fastest >= LATENCY_MS[0] / 1000, f"a success faster than the latency\n{report}"


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def register(sensitive: Callable[[str], str]) -> Callable[[Registry, int], list[Citizen]]:
    """The first ``count`` seeded citizens, their ids and names registered as never to be
    logged in clear (the whole session's captured output is scanned for them)."""

    def pick(registry: Registry, count: int) -> list[Citizen]:
        people = registry.citizens[:count]
        for person in people:
            sensitive(person.id)
            sensitive(person.name.full)
        sensitive(DEMO_CONSUMER_SECRET)
        return people

    return pick


async def run_reads(
    stack: MockStack,
    settings_for: Callable[..., Settings],
    reads: Sequence[Read],
    label: str,
    latency: JitteredLatency,
) -> tuple[Run, FastAPI]:
    recorder = MemoryRecorder()
    app = create_app(settings_for(bus_yaml(stack)), environ=ENV, recorder=recorder)
    async with running(app) as client:
        results = await fire(client, reads)
    service = app.state.gateway.services["population"]
    exchanges = {e.request_id: e for e in recorder.exchanges}
    return Run(label, results, exchanges, service.breaker, latency), app


# -- the runs -------------------------------------------------------------------------------------


async def test_reads_succeed_or_fail_clearly_in_time_under_faults(
    settings_for: Callable[..., Settings],
    register: Callable[[Registry, int], list[Citizen]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """200 reads against a database failing 30 % of the time with 20-150 ms latency: each one
    succeeds with the right data or is an upstream.* error within the deadline, and retries
    bring the success rate above 95 %."""
    with MockStack(ngsp=NgspSettings(), population=PopulationSettings()) as stack:
        people = register(stack.apps["population"].state.registry, READS // 2)
        latency = jitter_latency(stack.apps["population"], SEED)
        await set_faults(stack.urls["population"], [outage("/soap")], SEED)
        run, _ = await run_reads(
            stack, settings_for, reads_of(people, READS), "database /soap", latency
        )
    show(run.report(), capsys)
    check(run, MIN_SUCCESS)


async def test_token_endpoint_faults_are_clear_errors_too(
    settings_for: Callable[..., Settings],
    register: Callable[[Registry, int], list[Citizen]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """NGSP's token endpoint fails half of its requests and its tokens live one second, so the
    bus keeps renewing its token through the faults: every read is still a success or a clear
    upstream.* error in time, and most succeed."""
    ngsp = NgspSettings(expires_in=1)
    with MockStack(ngsp=ngsp, population=PopulationSettings()) as stack:
        people = register(stack.apps["population"].state.registry, 40)
        latency = jitter_latency(stack.apps["population"], SEED)
        await set_faults(stack.urls["population"], [outage("/soap")], SEED)
        await set_faults(stack.urls["ngsp"], [outage("/token", 0.5)], SEED + 1)
        stats = f"{stack.urls['ngsp']}/__admin/stats"
        before = (await admin("GET", stats)).json()["tokens_issued"]
        run, app = await run_reads(
            stack, settings_for, reads_of(people, 80), "database /soap, NGSP /token 50%", latency
        )
        issued = (await admin("GET", stats)).json()["tokens_issued"] - before
    asked = app.state.gateway.services["population"].adapter.tokens.requests
    run.extra.append(f"tokens: {asked} requested by the bus, {issued} issued by NGSP")
    show(run.report(), capsys)
    check(run, 0.85)
    assert asked > issued >= 2, f"the token endpoint's faults were not met\n{run.report()}"
