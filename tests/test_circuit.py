"""The circuit breaker and the bulkhead (bus.circuit), driven by a stepping clock."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from structlog.testing import capture_logs
from structlog.typing import EventDict

from bus.circuit import Bulkhead, CircuitBreaker, CircuitOpen
from bus.config import CircuitBreakerConfig
from bus.errors import UpstreamUnavailable
from tests.support import StepClock

START = 1000.0


@pytest.fixture(autouse=True)
def logs() -> Iterator[list[EventDict]]:
    """Every log line of the test, captured whatever level or stream an earlier test
    configured structlog with (an app's lifespan may have pointed it at a closed stream)."""
    wrapper = structlog.get_config()["wrapper_class"]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with capture_logs() as captured:
            yield captured
    finally:
        structlog.configure(wrapper_class=wrapper)


def make(clock: StepClock | None = None, **overrides: float) -> tuple[CircuitBreaker, StepClock]:
    values: dict[str, float] = {
        "failure_rate": 0.5,
        "window": 30.0,
        "minimum_calls": 10,
        "open_seconds": 15.0,
        "half_open_probes": 1,
    }
    values.update(overrides)
    clock = clock or StepClock(START)
    return CircuitBreaker("population", CircuitBreakerConfig.model_validate(values), clock), clock


def call(breaker: CircuitBreaker, failed: bool) -> None:
    """One call that went through the breaker, as the pipeline makes it."""
    ticket = breaker.acquire()
    breaker.release(ticket, failed)


def calls(breaker: CircuitBreaker, *, failures: int = 0, successes: int = 0) -> None:
    for _ in range(successes):
        call(breaker, failed=False)
    for _ in range(failures):
        call(breaker, failed=True)


def open_breaker(**overrides: float) -> tuple[CircuitBreaker, StepClock]:
    breaker, clock = make(**overrides)
    calls(breaker, failures=breaker.config.minimum_calls)
    assert breaker.state == "open"
    return breaker, clock


# -- closed ----------------------------------------------------------------------------------------


def test_a_new_breaker_is_closed_and_lets_calls_through() -> None:
    breaker, _ = make()
    assert breaker.state == "closed"
    ticket = breaker.acquire()
    assert isinstance(ticket, int)
    breaker.release(ticket, failed=False)
    assert breaker.state == "closed"


def test_stays_closed_below_minimum_calls_even_when_every_call_fails() -> None:
    breaker, _ = make(minimum_calls=10)
    calls(breaker, failures=9)
    assert breaker.state == "closed"
    assert breaker.snapshot()["failure_rate"] == 1.0
    call(breaker, failed=True)  # the 10th call: now the rate is judged
    assert breaker.state == "open"


def test_opens_at_the_threshold_rate() -> None:
    breaker, _ = make(failure_rate=0.5, minimum_calls=10)
    calls(breaker, successes=5, failures=5)
    assert breaker.state == "open"
    assert breaker.opened_total == 1


def test_stays_closed_just_below_the_threshold_rate() -> None:
    breaker, _ = make(failure_rate=0.5, minimum_calls=10)
    calls(breaker, successes=6, failures=4)  # 4 / 10
    assert breaker.state == "closed"
    calls(breaker, failures=1)  # 5 / 11
    assert breaker.state == "closed"
    calls(breaker, failures=1)  # 6 / 12
    assert breaker.state == "open"


@pytest.mark.parametrize(("rate", "failures"), [(0.1, 1), (0.3, 3), (0.7, 7), (1.0, 10)])
def test_the_threshold_is_exact_for_decimal_rates(rate: float, failures: int) -> None:
    """k/10 failures open a circuit whose rate is k/10, and k-1 do not (no float rounding)."""
    below, _ = make(failure_rate=rate, minimum_calls=10)
    calls(below, successes=10 - failures + 1, failures=failures - 1)
    assert below.state == "closed"
    at, _ = make(failure_rate=rate, minimum_calls=10)
    calls(at, successes=10 - failures, failures=failures)
    assert at.state == "open"


def test_a_success_that_reaches_minimum_calls_can_open_the_circuit() -> None:
    """The rate is judged after every outcome, not only after failures."""
    breaker, _ = make(minimum_calls=10)
    calls(breaker, failures=9)
    call(breaker, failed=False)  # 9 / 10
    assert breaker.state == "open"


def test_outcomes_older_than_the_window_slide_out() -> None:
    breaker, clock = make(window=30.0, minimum_calls=10)
    calls(breaker, failures=9)
    clock.t += 31  # the 9 failures are 31 s old in a 30 s window
    assert breaker.snapshot()["calls"] == 0
    call(breaker, failed=True)
    assert breaker.state == "closed"
    assert breaker.snapshot()["calls"] == 1


def test_outcomes_inside_the_window_still_count() -> None:
    breaker, clock = make(window=30.0, minimum_calls=10)
    calls(breaker, failures=9)
    clock.t += 29
    call(breaker, failed=True)
    assert breaker.state == "open"


def test_the_window_slides_bucket_by_bucket() -> None:
    breaker, clock = make(window=30.0, minimum_calls=100)
    for second in range(40):
        clock.t = START + second
        call(breaker, failed=second % 2 == 0)
    snap = breaker.snapshot()
    assert snap["calls"] == 30  # seconds 10..39
    assert snap["failures"] == 15
    clock.t = START + 39 + 15
    assert breaker.snapshot()["calls"] == 15  # seconds 25..39
    clock.t = START + 39 + 30
    assert breaker.snapshot()["calls"] == 0


def test_a_short_window_uses_sub_second_buckets() -> None:
    """In a 2 s window, an outcome 1.6 s old still counts (two 1 s buckets would drop it)."""
    breaker, clock = make(window=2.0, minimum_calls=5)
    clock.t = START + 0.9
    calls(breaker, failures=4)
    clock.t = START + 2.5
    assert breaker.snapshot()["calls"] == 4
    call(breaker, failed=True)
    assert breaker.state == "open"


def test_a_short_window_still_forgets_old_outcomes() -> None:
    breaker, clock = make(window=2.0, minimum_calls=5)
    calls(breaker, failures=4)
    clock.t += 2.1
    call(breaker, failed=True)
    assert breaker.state == "closed"
    assert breaker.snapshot()["calls"] == 1


def test_a_long_idle_gap_empties_the_window() -> None:
    breaker, clock = make(window=30.0, minimum_calls=10)
    calls(breaker, failures=9)
    clock.t += 10_000
    calls(breaker, failures=9)
    assert breaker.state == "closed"
    assert breaker.snapshot()["calls"] == 9


# -- open ------------------------------------------------------------------------------------------


def test_an_open_circuit_refuses_at_once_with_upstream_unavailable() -> None:
    breaker, clock = open_breaker(open_seconds=15.0)
    clock.t += 4.96
    with pytest.raises(UpstreamUnavailable) as caught:
        breaker.acquire()
    error = caught.value
    assert isinstance(error, CircuitOpen)  # not retried nor counted by the pipeline
    assert error.code == "upstream.unavailable"
    assert error.http_status == 503
    assert error.retryable
    assert "population" in error.message
    assert "circuit" in error.message
    assert "open" in error.message
    assert error.retry_after == pytest.approx(10.04)
    assert error.detail == {"circuit": "open", "retry_in": 10.0}


def test_open_refusals_do_not_extend_the_open_period() -> None:
    breaker, clock = open_breaker(open_seconds=15.0)
    for _ in range(14):
        clock.t += 1
        with pytest.raises(UpstreamUnavailable):
            breaker.acquire()
    clock.t += 1
    breaker.acquire()
    assert breaker.state == "half_open"


def test_half_open_after_open_seconds() -> None:
    breaker, clock = open_breaker(open_seconds=15.0)
    clock.t += 14.9
    assert breaker.state == "open"
    with pytest.raises(UpstreamUnavailable):
        breaker.acquire()
    clock.t += 0.1
    breaker.acquire()
    assert breaker.state == "half_open"


def test_state_reports_half_open_once_open_seconds_are_over() -> None:
    """No acquire is needed for the state (and /readyz) to show that probes may go out."""
    breaker, clock = open_breaker(open_seconds=15.0)
    clock.t += 15
    assert breaker.state == "half_open"
    assert breaker.snapshot()["retry_in"] is None
    breaker.acquire()  # the probe slot is still free
    assert breaker.state == "half_open"


# -- half-open -------------------------------------------------------------------------------------


def test_half_open_lets_at_most_half_open_probes_out() -> None:
    breaker, clock = open_breaker(half_open_probes=2)
    clock.t += 15
    breaker.acquire()
    breaker.acquire()
    with pytest.raises(UpstreamUnavailable) as caught:
        breaker.acquire()
    error = caught.value
    assert isinstance(error, CircuitOpen)
    assert error.code == "upstream.unavailable"
    assert "population" in error.message
    assert error.detail["circuit"] == "half_open"
    assert error.retry_after is not None
    assert error.retry_after > 0
    assert breaker.state == "half_open"


def test_a_finished_probe_frees_its_slot() -> None:
    breaker, clock = open_breaker(half_open_probes=2)
    clock.t += 15
    first = breaker.acquire()
    breaker.acquire()
    breaker.release(first, failed=False)  # 1 of 2 successes: still half-open
    assert breaker.state == "half_open"
    breaker.acquire()  # the freed slot
    with pytest.raises(UpstreamUnavailable):
        breaker.acquire()


def test_a_failed_probe_reopens_for_a_full_open_period() -> None:
    breaker, clock = open_breaker(open_seconds=15.0)
    clock.t += 15
    probe = breaker.acquire()
    clock.t += 5  # the probe took 5 s to fail
    breaker.release(probe, failed=True)
    assert breaker.state == "open"
    assert breaker.opened_total == 2
    with pytest.raises(UpstreamUnavailable) as caught:
        breaker.acquire()
    assert caught.value.retry_after == pytest.approx(15.0)
    assert caught.value.detail == {"circuit": "open", "retry_in": 15.0}
    clock.t += 14.9
    assert breaker.state == "open"
    clock.t += 0.1
    assert breaker.state == "half_open"


def test_one_failed_probe_among_several_reopens() -> None:
    breaker, clock = open_breaker(half_open_probes=3)
    clock.t += 15
    a, b, c = breaker.acquire(), breaker.acquire(), breaker.acquire()
    breaker.release(a, failed=False)
    breaker.release(b, failed=True)
    assert breaker.state == "open"
    breaker.release(c, failed=False)  # from the half-open generation: stale now
    assert breaker.state == "open"


def test_successful_probes_close_the_circuit_with_an_empty_window() -> None:
    breaker, clock = open_breaker(half_open_probes=2, window=60.0, open_seconds=15.0)
    assert breaker.snapshot()["calls"] == 10
    clock.t += 15
    a, b = breaker.acquire(), breaker.acquire()
    breaker.release(a, failed=False)
    assert breaker.state == "half_open"
    breaker.release(b, failed=False)
    assert breaker.state == "closed"
    snap = breaker.snapshot()
    assert snap["calls"] == 0
    assert snap["failures"] == 0
    assert snap["failure_rate"] is None
    # The old failures (still inside the 60 s window in time) must not reopen it.
    calls(breaker, successes=1)
    assert breaker.state == "closed"
    calls(breaker, failures=8)
    assert breaker.state == "closed"
    assert breaker.snapshot()["calls"] == 9


def test_probe_results_are_not_counted_in_the_window() -> None:
    breaker, clock = open_breaker(half_open_probes=1)
    clock.t += 15
    call(breaker, failed=False)
    assert breaker.state == "closed"
    assert breaker.snapshot()["calls"] == 0


def test_a_probe_released_twice_counts_once() -> None:
    breaker, clock = open_breaker(half_open_probes=2)
    clock.t += 15
    probe = breaker.acquire()
    breaker.release(probe, failed=False)
    breaker.release(probe, failed=False)  # a caller bug: must not complete the second probe
    assert breaker.state == "half_open"


# -- generations -----------------------------------------------------------------------------------


def test_every_state_change_starts_a_new_generation() -> None:
    breaker, clock = make(minimum_calls=1)
    seen = [breaker.generation]
    closed = breaker.acquire()
    assert closed == breaker.generation
    breaker.release(closed, failed=True)
    assert breaker.state == "open"
    seen.append(breaker.generation)
    clock.t += 15
    assert breaker.state == "half_open"
    seen.append(breaker.generation)
    probe = breaker.acquire()
    assert probe == breaker.generation
    breaker.release(probe, failed=False)
    assert breaker.state == "closed"
    seen.append(breaker.generation)
    again = breaker.acquire()
    assert again == breaker.generation
    assert seen == sorted(set(seen))  # four states, four increasing generations
    assert len({closed, probe, again}) == 3


def test_a_slow_call_from_before_opening_is_not_a_probe_result() -> None:
    breaker, clock = make(minimum_calls=10, open_seconds=15.0, half_open_probes=1)
    slow = breaker.acquire()  # started while closed
    calls(breaker, failures=10)
    assert breaker.state == "open"
    clock.t += 15
    probe = breaker.acquire()
    breaker.release(slow, failed=False)  # ends now: not the probe's success
    assert breaker.state == "half_open"
    with pytest.raises(UpstreamUnavailable):  # nor did it free the probe's slot
        breaker.acquire()
    breaker.release(probe, failed=False)
    assert breaker.state == "closed"


def test_a_slow_failing_call_from_before_opening_does_not_reopen() -> None:
    breaker, clock = make(minimum_calls=10)
    slow = breaker.acquire()
    calls(breaker, failures=10)
    clock.t += 15
    probe = breaker.acquire()
    breaker.release(slow, failed=True)
    assert breaker.state == "half_open"
    assert breaker.opened_total == 1
    breaker.release(probe, failed=False)
    assert breaker.state == "closed"


def test_a_call_from_before_closing_does_not_land_in_the_new_window() -> None:
    breaker, clock = open_breaker(half_open_probes=2)
    clock.t += 15
    a, b = breaker.acquire(), breaker.acquire()
    breaker.release(a, failed=False)
    third = breaker.acquire()  # takes the slot a freed
    breaker.release(b, failed=False)
    assert breaker.state == "closed"
    breaker.release(third, failed=True)  # a half-open ticket, ending after the close
    assert breaker.snapshot()["calls"] == 0


def test_a_slow_call_that_ends_while_open_is_ignored() -> None:
    breaker, _ = make(minimum_calls=10)
    slow = breaker.acquire()
    calls(breaker, failures=10)
    before = breaker.snapshot()
    breaker.release(slow, failed=True)
    assert breaker.snapshot() == before


def test_calls_that_stay_in_one_generation_all_count() -> None:
    """Tickets out at once while closed are all recorded (the generation only moves on change)."""
    breaker, _ = make(minimum_calls=3)
    tickets = [breaker.acquire() for _ in range(3)]
    for ticket in tickets[:2]:
        breaker.release(ticket, failed=False)
    breaker.release(tickets[2], failed=True)
    assert breaker.snapshot()["calls"] == 3
    assert breaker.state == "closed"


# -- counters, snapshot, logs ----------------------------------------------------------------------


def test_opened_total_counts_every_opening() -> None:
    breaker, clock = make(minimum_calls=2, open_seconds=10.0)
    assert breaker.opened_total == 0
    calls(breaker, failures=2)
    assert breaker.opened_total == 1
    clock.t += 10
    call(breaker, failed=True)  # failed probe
    assert breaker.opened_total == 2
    clock.t += 10
    call(breaker, failed=False)  # closes
    assert breaker.opened_total == 2
    calls(breaker, failures=2)
    assert breaker.opened_total == 3
    assert breaker.snapshot()["opened_total"] == 3


def test_snapshot_of_a_fresh_breaker() -> None:
    breaker, _ = make()
    assert breaker.snapshot() == {
        "state": "closed",
        "failure_rate": None,
        "calls": 0,
        "failures": 0,
        "retry_in": None,
        "opened_total": 0,
        "config": {
            "failure_rate": 0.5,
            "window": 30.0,
            "minimum_calls": 10,
            "open_seconds": 15.0,
            "half_open_probes": 1,
        },
    }


def test_snapshot_while_closed_measures_the_window() -> None:
    breaker, _ = make(minimum_calls=100)
    calls(breaker, successes=2, failures=1)
    snap = breaker.snapshot()
    assert snap["state"] == "closed"
    assert snap["calls"] == 3
    assert snap["failures"] == 1
    assert snap["failure_rate"] == 0.333
    assert snap["retry_in"] is None


def test_snapshot_while_open() -> None:
    breaker, clock = open_breaker(open_seconds=15.0)
    clock.t += 2.26
    snap = breaker.snapshot()
    assert snap["state"] == "open"
    assert snap["retry_in"] == 12.7
    assert snap["calls"] == 10
    assert snap["failures"] == 10
    assert snap["failure_rate"] == 1.0
    assert snap["opened_total"] == 1
    assert json.loads(json.dumps(snap)) == snap


def test_transitions_are_logged(logs: list[EventDict]) -> None:
    breaker, clock = make(minimum_calls=2)
    calls(breaker, failures=2)
    clock.t += 15
    call(breaker, failed=False)
    events = [(e["event"], e["log_level"]) for e in logs]
    assert events == [
        ("circuit opened", "warning"),
        ("circuit half-open", "info"),
        ("circuit closed", "info"),
    ]
    assert all(e["upstream"] == "population" for e in logs)
    assert logs[0]["failure_rate"] == 1.0
    assert logs[0]["calls"] == 2


# -- bulkhead --------------------------------------------------------------------------------------


def test_bulkhead_lets_max_in_flight_calls_through() -> None:
    bulkhead = Bulkhead("population", max_in_flight=3)
    for expected in (1, 2, 3):
        bulkhead.enter()
        assert bulkhead.in_flight == expected
    assert bulkhead.rejected_total == 0


def test_bulkhead_rejects_the_call_over_the_limit() -> None:
    bulkhead = Bulkhead("population", max_in_flight=2)
    bulkhead.enter()
    bulkhead.enter()
    with pytest.raises(UpstreamUnavailable) as caught:
        bulkhead.enter()
    error = caught.value
    assert type(error) is UpstreamUnavailable  # shed by the bus, not a circuit refusal
    assert error.code == "upstream.unavailable"
    assert error.http_status == 503
    assert "too many calls in flight to population (limit 2)" in error.message
    assert error.retry_after == 1.0
    assert error.detail == {"bulkhead": "full", "max_in_flight": 2}
    assert bulkhead.in_flight == 2  # the refused call took no slot


def test_bulkhead_leave_frees_a_slot() -> None:
    bulkhead = Bulkhead("population", max_in_flight=1)
    bulkhead.enter()
    with pytest.raises(UpstreamUnavailable):
        bulkhead.enter()
    bulkhead.leave()
    assert bulkhead.in_flight == 0
    bulkhead.enter()
    assert bulkhead.in_flight == 1


def test_bulkhead_counts_rejections() -> None:
    bulkhead = Bulkhead("population", max_in_flight=1)
    bulkhead.enter()
    for _ in range(3):
        with pytest.raises(UpstreamUnavailable):
            bulkhead.enter()
    assert bulkhead.rejected_total == 3
    assert bulkhead.snapshot() == {"in_flight": 1, "max_in_flight": 1, "rejected_total": 3}


def test_bulkhead_leave_never_goes_below_zero() -> None:
    bulkhead = Bulkhead("population", max_in_flight=1)
    bulkhead.leave()
    assert bulkhead.in_flight == 0
    bulkhead.enter()
    with pytest.raises(UpstreamUnavailable):
        bulkhead.enter()


def test_bulkhead_as_a_context_manager_leaves_on_error() -> None:
    bulkhead = Bulkhead("population", max_in_flight=1)
    with bulkhead:
        assert bulkhead.in_flight == 1
    assert bulkhead.in_flight == 0
    with pytest.raises(RuntimeError), bulkhead:
        raise RuntimeError("the upstream call failed")
    assert bulkhead.in_flight == 0


def test_bulkhead_context_manager_does_not_leave_a_slot_it_never_took() -> None:
    bulkhead = Bulkhead("population", max_in_flight=1)
    bulkhead.enter()
    with pytest.raises(UpstreamUnavailable), bulkhead:
        pass  # pragma: no cover - never entered
    assert bulkhead.in_flight == 1


def test_bulkhead_needs_a_positive_limit() -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        Bulkhead("population", max_in_flight=0)


def test_neutral_release_frees_the_probe_without_closing() -> None:
    """A probe that failed for a reason unrelated to the upstream (an adapter bug) frees its
    slot but neither closes nor reopens the circuit."""
    clock = StepClock()
    breaker = CircuitBreaker(
        "ngsp",
        CircuitBreakerConfig(failure_rate=0.5, window=10, minimum_calls=2, open_seconds=5),
        clock,
    )
    for _ in range(2):
        breaker.release(breaker.acquire(), failed=True)
    assert breaker.state == "open"
    clock.t += 5
    ticket = breaker.acquire()
    breaker.release(ticket, failed=None)
    assert breaker.state == "half_open"
    breaker.release(breaker.acquire(), failed=False)  # the slot was freed: a new probe passes
    assert breaker.state == "closed"
