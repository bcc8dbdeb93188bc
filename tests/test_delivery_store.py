"""The durable delivery queue: states, claim and lease, fencing, ordering, operator actions."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bus.delivery.store import (
    CLAIM_SQL,
    LOST_ERROR_CODE,
    LOST_MESSAGE,
    STATES,
    Attempt,
    Delivery,
    DeliveryStoreError,
    NewDelivery,
    SqliteDeliveryStore,
)

pytestmark = pytest.mark.anyio

T0 = 1_700_000_000.0
LEASE = 30.0


def new(
    order_key: str | None = None,
    *,
    service: str = "dvcqg",
    consumer: str = "c1",
    max_attempts: int = 3,
    payload: bytes = b'{"a":1}',
) -> NewDelivery:
    return NewDelivery(
        consumer=consumer,
        service=service,
        operation="submit",
        payload=payload,
        request_id="req-1",
        order_key=order_key,
        max_attempts=max_attempts,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteDeliveryStore]:
    s = SqliteDeliveryStore(tmp_path / "lgsp.db")
    yield s
    await s.close()


async def state_of(store: SqliteDeliveryStore, delivery_id: str) -> str:
    found = await store.get(delivery_id)
    assert found is not None
    return found.state


# -- enqueue, get, durability -----------------------------------------------------------------


async def test_enqueue_get_round_trip_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "lgsp.db"
    first = SqliteDeliveryStore(path)
    a = await first.enqueue(new("k:1", payload=b'{"x":"\xc3\xa9"}'), T0)
    b = await first.enqueue(new(None, max_attempts=7), T0 + 1)

    assert re.fullmatch(r"dlv_[0-9a-f]{24}", a.id)
    assert a.id != b.id
    assert b.seq > a.seq
    assert a.state == "queued"
    assert (a.attempts, a.round_attempts, a.max_attempts) == (0, 0, 3)
    assert (a.next_attempt_at, a.created_at, a.updated_at) == (T0, T0, T0)
    assert (a.delivered_at, a.result, a.lease_owner, a.lease_until) == (None, None, None, None)
    assert a.payload == b'{"x":"\xc3\xa9"}'
    assert a.order_key == "k:1"
    assert b.order_key is None
    assert b.max_attempts == 7
    assert await first.get(a.id) == a
    assert await first.get("dlv_" + "0" * 24) is None
    await first.close()

    reopened = SqliteDeliveryStore(path)
    try:
        assert await reopened.get(a.id) == a
        assert await reopened.get(b.id) == b
    finally:
        await reopened.close()


async def test_store_file_is_synchronous_full(store: SqliteDeliveryStore) -> None:
    synchronous = await store._run(lambda db: db.execute("PRAGMA synchronous").fetchone()[0])
    assert synchronous == 2  # FULL


def test_new_delivery_needs_at_least_one_attempt() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        new(max_attempts=0)


# -- claim ------------------------------------------------------------------------------------


async def test_claim_takes_only_due_rows_oldest_due_first_up_to_limit(
    store: SqliteDeliveryStore,
) -> None:
    early = await store.enqueue(new(), T0)
    mid = await store.enqueue(new(), T0 + 10)
    late = await store.enqueue(new(), T0 + 20)

    assert await store.claim("w1", 10, T0 - 1, LEASE) == []
    got = await store.claim("w1", 1, T0 + 15, LEASE)
    assert [d.id for d in got] == [early.id]
    assert got[0].state == "in_flight"
    assert (got[0].lease_owner, got[0].lease_until) == ("w1", T0 + 15 + LEASE)
    assert await store.get(early.id) == got[0]

    got = await store.claim("w1", 10, T0 + 15, LEASE)
    assert [d.id for d in got] == [mid.id]  # late is not due yet

    # A retried row is ordered by its new due time, not by its seq.
    assert await store.fail(mid.id, "w1", T0 + 15, "upstream.timeout", "slow", T0 + 25, T0 + 16)
    got = await store.claim("w1", 10, T0 + 30, LEASE)
    assert [d.id for d in got] == [late.id, mid.id]
    assert await store.claim("w1", 10, T0 + 30, LEASE) == []
    assert await store.claim("w1", 0, T0 + 30, LEASE) == []


async def test_in_flight_rows_are_not_claimed_again_until_the_lease_expires(
    store: SqliteDeliveryStore,
) -> None:
    d = await store.enqueue(new(max_attempts=3), T0)
    [first] = await store.claim("w1", 10, T0 + 1, LEASE)

    assert await store.claim("w2", 10, T0 + 2, LEASE) == []
    assert await store.claim("w2", 10, T0 + 0.999 + LEASE, LEASE) == []

    [again] = await store.claim("w2", 10, T0 + 1 + LEASE, LEASE)  # the lease ends at lease_until
    assert again.id == d.id
    assert (again.state, again.lease_owner) == ("in_flight", "w2")
    assert (again.attempts, again.round_attempts) == (1, 1)
    assert again.last_error_code == LOST_ERROR_CODE
    assert await store.attempts(d.id) == [
        Attempt(
            delivery_id=d.id,
            number=1,
            worker="w1",
            started_at=T0 + 1,
            ended_at=first.lease_until or 0.0,
            outcome="lost",
            error_code=LOST_ERROR_CODE,
            message=LOST_MESSAGE,
        )
    ]


async def test_lost_attempt_that_exhausts_max_attempts_goes_dead(
    store: SqliteDeliveryStore,
) -> None:
    d = await store.enqueue(new(max_attempts=2), T0)
    await store.claim("w1", 10, T0, LEASE)
    [_] = await store.claim("w2", 10, T0 + LEASE + 1, LEASE)  # first loss: claimed again
    assert await store.claim("w3", 10, T0 + 3 * LEASE, LEASE) == []  # second loss: dead

    dead = await store.get(d.id)
    assert dead is not None
    assert dead.state == "dead"
    assert (dead.attempts, dead.round_attempts) == (2, 2)
    assert (dead.lease_owner, dead.lease_until) == (None, None)
    assert dead.last_error_message == LOST_MESSAGE
    assert [(a.number, a.worker, a.outcome) for a in await store.attempts(d.id)] == [
        (1, "w1", "lost"),
        (2, "w2", "lost"),
    ]


# -- complete, fail, release ------------------------------------------------------------------


async def test_complete_stores_the_result(store: SqliteDeliveryStore) -> None:
    d = await store.enqueue(new(), T0)
    await store.claim("w1", 1, T0, LEASE)
    assert await store.complete(d.id, "w1", T0 + 1, b'{"ok":true}', T0 + 2)

    done = await store.get(d.id)
    assert done is not None
    assert done.state == "delivered"
    assert (done.result, done.delivered_at, done.updated_at) == (b'{"ok":true}', T0 + 2, T0 + 2)
    assert (done.attempts, done.round_attempts) == (1, 1)
    assert (done.lease_owner, done.lease_until) == (None, None)
    assert await store.attempts(d.id) == [Attempt(d.id, 1, "w1", T0 + 1, T0 + 2, "ok", None, None)]
    assert await store.claim("w1", 10, T0 + 1000, LEASE) == []


async def test_fail_with_a_retry_time_requeues_for_that_time(store: SqliteDeliveryStore) -> None:
    d = await store.enqueue(new(max_attempts=3), T0)
    await store.claim("w1", 1, T0, LEASE)
    assert await store.fail(d.id, "w1", T0 + 1, "upstream.unavailable", "503", T0 + 60, T0 + 2)

    queued = await store.get(d.id)
    assert queued is not None
    assert (queued.state, queued.next_attempt_at) == ("queued", T0 + 60)
    assert (queued.attempts, queued.round_attempts) == (1, 1)
    assert (queued.last_error_code, queued.last_error_message) == ("upstream.unavailable", "503")
    assert (queued.lease_owner, queued.lease_until) == (None, None)
    assert await store.attempts(d.id) == [
        Attempt(d.id, 1, "w1", T0 + 1, T0 + 2, "error", "upstream.unavailable", "503")
    ]
    assert await store.claim("w1", 1, T0 + 59, LEASE) == []
    assert [x.id for x in await store.claim("w1", 1, T0 + 60, LEASE)] == [d.id]


async def test_fail_on_the_last_attempt_goes_dead(store: SqliteDeliveryStore) -> None:
    d = await store.enqueue(new(max_attempts=2), T0)
    await store.claim("w1", 1, T0, LEASE)
    assert await store.fail(d.id, "w1", T0, "upstream.timeout", "t1", T0 + 10, T0 + 1)
    assert await state_of(store, d.id) == "queued"
    await store.claim("w1", 1, T0 + 10, LEASE)
    assert await store.fail(d.id, "w1", T0 + 10, "upstream.timeout", "t2", T0 + 20, T0 + 11)

    dead = await store.get(d.id)
    assert dead is not None
    assert (dead.state, dead.attempts, dead.round_attempts) == ("dead", 2, 2)
    assert dead.last_error_message == "t2"
    assert await store.claim("w1", 1, T0 + 1000, LEASE) == []


async def test_fail_without_a_retry_time_is_dead_at_once(store: SqliteDeliveryStore) -> None:
    d = await store.enqueue(new(max_attempts=5), T0)
    await store.claim("w1", 1, T0, LEASE)
    assert await store.fail(d.id, "w1", T0, "upstream.rejected", "no such dossier", None, T0 + 1)
    dead = await store.get(d.id)
    assert dead is not None
    assert (dead.state, dead.attempts, dead.round_attempts) == ("dead", 1, 1)


async def test_release_gives_the_row_back_without_counting(store: SqliteDeliveryStore) -> None:
    d = await store.enqueue(new(), T0)
    await store.claim("w1", 1, T0, LEASE)
    assert await store.release(d.id, "w1", T0 + 5)

    back = await store.get(d.id)
    assert back is not None
    assert (back.state, back.next_attempt_at, back.attempts) == ("queued", T0 + 5, 0)
    assert (back.lease_owner, back.lease_until) == (None, None)
    assert await store.attempts(d.id) == []
    assert [x.id for x in await store.claim("w2", 1, T0 + 5, LEASE)] == [d.id]

    # Given back for later (e.g. the circuit is open): due then, still no attempt counted.
    assert await store.release(d.id, "w2", T0 + 6, next_attempt_at=T0 + 100)
    later = await store.get(d.id)
    assert later is not None
    assert (later.state, later.next_attempt_at, later.attempts) == ("queued", T0 + 100, 0)
    assert await store.claim("w2", 1, T0 + 99, LEASE) == []
    assert [x.id for x in await store.claim("w2", 1, T0 + 100, LEASE)] == [d.id]
    assert await store.attempts(d.id) == []


@pytest.mark.parametrize("action", ["complete", "fail", "release"])
async def test_only_the_lease_holder_may_finish(store: SqliteDeliveryStore, action: str) -> None:
    async def act(delivery_id: str, owner: str, now: float) -> bool:
        if action == "complete":
            return await store.complete(delivery_id, owner, now, b"{}", now)
        if action == "fail":
            return await store.fail(delivery_id, owner, now, "x", "y", now + 5, now)
        return await store.release(delivery_id, owner, now)

    d = await store.enqueue(new(max_attempts=5), T0)
    assert await act(d.id, "w1", T0) is False  # queued: nobody holds a lease

    [held] = await store.claim("w1", 1, T0, LEASE)
    assert await act(d.id, "intruder", T0 + 1) is False
    assert await store.get(d.id) == held
    assert await store.attempts(d.id) == []

    # w1's lease runs out and w2 takes the row over: w1 can no longer finish it.
    [taken] = await store.claim("w2", 1, T0 + LEASE + 1, LEASE)
    before = await store.attempts(d.id)
    assert await act(d.id, "w1", T0 + LEASE + 2) is False
    assert await store.get(d.id) == taken
    assert await store.attempts(d.id) == before
    assert await act(d.id, "w2", T0 + LEASE + 3) is True

    assert await act(d.id, "w2", T0 + LEASE + 4) is False  # no longer in flight
    assert await act("dlv_" + "0" * 24, "w2", T0) is False


# -- ordering ---------------------------------------------------------------------------------


async def test_same_key_is_delivered_strictly_in_order(store: SqliteDeliveryStore) -> None:
    a1 = await store.enqueue(new("A"), T0)
    a2 = await store.enqueue(new("A"), T0)
    b1 = await store.enqueue(new("B"), T0)

    assert [d.id for d in await store.claim("w1", 10, T0, LEASE)] == [a1.id, b1.id]
    assert await store.claim("w1", 10, T0 + 1, LEASE) == []
    assert await store.complete(b1.id, "w1", T0, b"{}", T0 + 1)

    # A#1 failing with a later retry time still holds A#2 back.
    assert await store.fail(a1.id, "w1", T0, "upstream.timeout", "t", T0 + 50, T0 + 2)
    assert await store.claim("w1", 10, T0 + 10, LEASE) == []
    assert await store.next_due() == T0 + 50  # the blocked A#2 does not count as due

    assert [d.id for d in await store.claim("w1", 10, T0 + 50, LEASE)] == [a1.id]
    assert await store.complete(a1.id, "w1", T0 + 50, b"{}", T0 + 51)
    assert [d.id for d in await store.claim("w1", 10, T0 + 52, LEASE)] == [a2.id]


@pytest.mark.parametrize("operator_action", ["retry", "discard"])
async def test_a_dead_head_blocks_its_key_until_an_operator_acts(
    store: SqliteDeliveryStore, operator_action: str
) -> None:
    a1 = await store.enqueue(new("A", max_attempts=1), T0)
    a2 = await store.enqueue(new("A"), T0)
    free = await store.enqueue(new(None), T0)

    assert [d.id for d in await store.claim("w1", 10, T0, LEASE)] == [a1.id, free.id]
    assert await store.fail(a1.id, "w1", T0, "upstream.timeout", "t", T0 + 5, T0 + 1)
    assert await state_of(store, a1.id) == "dead"
    assert await store.complete(free.id, "w1", T0, b"{}", T0 + 1)

    assert await store.claim("w1", 10, T0 + 1000, LEASE) == []
    assert await store.next_due() is None  # nothing can become due without an operator

    if operator_action == "retry":
        await store.retry(a1.id, T0 + 1000)
        assert [d.id for d in await store.claim("w1", 10, T0 + 1000, LEASE)] == [a1.id]
        assert await store.complete(a1.id, "w1", T0 + 1000, b"{}", T0 + 1001)
    else:
        await store.discard(a1.id, T0 + 1000)
    assert [d.id for d in await store.claim("w1", 10, T0 + 1002, LEASE)] == [a2.id]


# -- operator actions -------------------------------------------------------------------------


async def make_dead(store: SqliteDeliveryStore, service: str = "dvcqg") -> Delivery:
    """A dead delivery, made before anything else is due (its times are in the past)."""
    early = T0 - 10_000
    d = await store.enqueue(new(service=service, max_attempts=1), early)
    [claimed] = await store.claim("w1", 1, early, LEASE)
    assert claimed.id == d.id
    assert await store.fail(d.id, "w1", early, "upstream.rejected", "no", None, early + 1)
    return d


async def test_retry_requeues_dead_and_hurries_queued(store: SqliteDeliveryStore) -> None:
    dead = await make_dead(store)
    retried = await store.retry(dead.id, T0 + 100)
    assert (retried.state, retried.round_attempts, retried.attempts) == ("queued", 0, 1)
    assert (retried.next_attempt_at, retried.updated_at) == (T0 + 100, T0 + 100)
    assert retried.last_error_code == "upstream.rejected"  # the history stays
    assert await store.get(dead.id) == retried

    # A queued row waiting for a retry time is made due now.
    q = await store.enqueue(new(max_attempts=5), T0 + 100)
    claimed = await store.claim("w1", 10, T0 + 100, LEASE)
    assert [d.id for d in claimed] == [dead.id, q.id]
    assert await store.complete(dead.id, "w1", T0 + 100, b"{}", T0 + 101)
    assert await store.fail(q.id, "w1", T0 + 100, "upstream.timeout", "t", T0 + 9999, T0 + 101)
    assert await store.claim("w1", 10, T0 + 102, LEASE) == []
    hurried = await store.retry(q.id, T0 + 102)
    assert (hurried.state, hurried.next_attempt_at) == ("queued", T0 + 102)
    assert (hurried.attempts, hurried.round_attempts) == (1, 0)
    assert [d.id for d in await store.claim("w1", 10, T0 + 102, LEASE)] == [q.id]


async def test_retry_and_discard_refuse_other_states(store: SqliteDeliveryStore) -> None:
    in_flight = await store.enqueue(new(), T0)
    await store.claim("w1", 1, T0, LEASE)
    delivered = await store.enqueue(new(), T0 + 1)
    await store.claim("w1", 1, T0 + 1, LEASE)
    assert await store.complete(delivered.id, "w1", T0 + 1, b"{}", T0 + 2)
    discarded = await make_dead(store)
    await store.discard(discarded.id, T0 + 3)

    cases = [(in_flight.id, "in flight"), (delivered.id, "delivered"), (discarded.id, "discarded")]
    for delivery_id, words in cases:
        before = await store.get(delivery_id)
        with pytest.raises(
            DeliveryStoreError,
            match=rf"^delivery {delivery_id} is {words}; only dead or queued deliveries can be "
            "retried$",
        ):
            await store.retry(delivery_id, T0 + 10)
        with pytest.raises(DeliveryStoreError, match="can be discarded"):
            await store.discard(delivery_id, T0 + 10)
        assert await store.get(delivery_id) == before

    unknown = "dlv_" + "f" * 24
    with pytest.raises(DeliveryStoreError, match="no delivery with id"):
        await store.retry(unknown, T0)
    with pytest.raises(DeliveryStoreError, match="no delivery with id"):
        await store.discard(unknown, T0)


async def test_discard_gives_up_on_dead_or_queued(store: SqliteDeliveryStore) -> None:
    dead = await make_dead(store)
    queued = await store.enqueue(new(), T0 + 5)

    gone = await store.discard(dead.id, T0 + 10)
    assert (gone.state, gone.updated_at) == ("discarded", T0 + 10)
    assert await store.get(dead.id) == gone
    assert (await store.discard(queued.id, T0 + 11)).state == "discarded"
    assert await store.claim("w1", 10, T0 + 1000, LEASE) == []


async def test_replay_dead_requeues_every_dead_row_or_one_service(
    store: SqliteDeliveryStore,
) -> None:
    x1 = await make_dead(store, "x")
    x2 = await make_dead(store, "x")
    y1 = await make_dead(store, "y")
    live = await store.enqueue(new(service="x"), T0 + 2)

    assert await store.replay_dead(T0 + 50, service="x") == 2
    for d in (x1, x2):
        replayed = await store.get(d.id)
        assert replayed is not None
        assert (replayed.state, replayed.round_attempts, replayed.next_attempt_at) == (
            "queued",
            0,
            T0 + 50,
        )
    assert await state_of(store, y1.id) == "dead"
    untouched = await store.get(live.id)
    assert untouched is not None
    assert untouched.next_attempt_at == T0 + 2

    assert await store.replay_dead(T0 + 60) == 1
    assert await state_of(store, y1.id) == "queued"
    assert await store.replay_dead(T0 + 70) == 0


# -- listing, counts, next_due ----------------------------------------------------------------


async def test_list_filters_newest_first_with_a_cursor(store: SqliteDeliveryStore) -> None:
    made = [
        await store.enqueue(new(service=svc, consumer=cons), T0 + i)
        for i, (svc, cons) in enumerate(
            [("x", "c1"), ("y", "c1"), ("x", "c2"), ("y", "c2"), ("x", "c1")]
        )
    ]
    dead = await make_dead(store, "x")

    everything = await store.list()
    assert [d.id for d in everything] == [d.id for d in reversed([*made, dead])]
    assert [d.id for d in await store.list(state="dead")] == [dead.id]
    assert [d.id for d in await store.list(service="y")] == [made[3].id, made[1].id]
    assert [d.id for d in await store.list(consumer="c2")] == [made[3].id, made[2].id]
    assert [d.id for d in await store.list(state="queued", service="x", consumer="c1")] == [
        made[4].id,
        made[0].id,
    ]
    assert [d.id for d in await store.list(limit=2)] == [dead.id, made[4].id]

    pages: list[list[str]] = []
    cursor: int | None = None
    for _ in range(5):  # bounded: a cursor that does not advance must fail, not hang
        page = await store.list(service="x", after_seq=cursor, limit=2)
        if not page:
            break
        pages.append([d.id for d in page])
        cursor = page[-1].seq
    assert pages == [[dead.id, made[4].id], [made[2].id, made[0].id]]


async def test_counts_cover_every_state(store: SqliteDeliveryStore) -> None:
    assert await store.counts() == dict.fromkeys(STATES, 0)

    for _ in range(3):
        await store.enqueue(new(max_attempts=1), T0)
    [a, b] = await store.claim("w1", 2, T0, LEASE)
    assert await store.complete(a.id, "w1", T0, b"{}", T0 + 1)
    assert await store.fail(b.id, "w1", T0, "e", "m", None, T0 + 1)
    assert await store.counts() == {
        "queued": 1,
        "in_flight": 0,
        "delivered": 1,
        "dead": 1,
        "discarded": 0,
    }
    await store.discard(b.id, T0 + 2)
    await store.claim("w1", 1, T0 + 2, LEASE)
    assert await store.counts() == {
        "queued": 0,
        "in_flight": 1,
        "delivered": 1,
        "dead": 0,
        "discarded": 1,
    }


async def test_next_due(store: SqliteDeliveryStore) -> None:
    assert await store.next_due() is None
    later = await store.enqueue(new(), T0 + 100)
    assert await store.next_due() == T0 + 100
    sooner = await store.enqueue(new(), T0 + 50)
    assert await store.next_due() == T0 + 50

    [claimed] = await store.claim("w1", 1, T0 + 60, 5.0)
    assert claimed.id == sooner.id
    assert await store.next_due() == T0 + 65  # the lease runs out before `later` is due
    assert await store.complete(sooner.id, "w1", T0 + 61, b"{}", T0 + 62)
    assert await store.next_due() == T0 + 100

    await store.claim("w1", 1, T0 + 100, LEASE)
    assert await store.complete(later.id, "w1", T0 + 100, b"{}", T0 + 101)
    assert await store.next_due() is None


async def test_a_claim_at_next_due_finds_the_expired_lease(store: SqliteDeliveryStore) -> None:
    d = await store.enqueue(new(), T0)
    await store.claim("w1", 1, T0, 5.0)
    due = await store.next_due()
    assert due == T0 + 5
    assert [x.id for x in await store.claim("w2", 1, due, LEASE)] == [d.id]


# -- several workers --------------------------------------------------------------------------


async def test_two_stores_on_one_file_never_share_a_row(tmp_path: Path) -> None:
    path = tmp_path / "lgsp.db"
    first, second = SqliteDeliveryStore(path), SqliteDeliveryStore(path)
    try:
        ids = {(await first.enqueue(new(), T0)).id for _ in range(200)}

        async def work(store: SqliteDeliveryStore, owner: str) -> list[str]:
            mine: list[str] = []
            for _ in range(40):  # 200 rows, 10 a claim: 20 claims at most for one worker
                batch = await store.claim(owner, 10, T0 + 1, 3600.0)
                if not batch:
                    break
                for d in batch:
                    assert d.lease_owner == owner
                    mine.append(d.id)
                    assert await store.complete(d.id, owner, T0 + 1, b"{}", T0 + 2)
            return mine

        got_first, got_second = await asyncio.gather(work(first, "w1"), work(second, "w2"))
        assert len(got_first) == len(set(got_first))
        assert len(got_second) == len(set(got_second))
        assert not set(got_first) & set(got_second)
        assert set(got_first) | set(got_second) == ids
        assert (await first.counts())["delivered"] == 200
        one = next(iter(ids))
        assert [a.outcome for a in await second.attempts(one)] == ["ok"]
    finally:
        await first.close()
        await second.close()


async def test_a_killed_worker_s_rows_are_delivered_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "lgsp.db"
    doomed = SqliteDeliveryStore(path)
    d = await doomed.enqueue(new("A"), T0)
    behind = await doomed.enqueue(new("A"), T0)
    assert [x.id for x in await doomed.claim("doomed", 10, T0, LEASE)] == [d.id]
    # The worker dies without a word: its connection is simply dropped.
    await doomed.close()

    survivor = SqliteDeliveryStore(path)
    try:
        assert await survivor.claim("w2", 10, T0 + 1, LEASE) == []
        assert [x.id for x in await survivor.claim("w2", 10, T0 + LEASE + 1, LEASE)] == [d.id]
        assert await survivor.complete(d.id, "w2", T0 + LEASE + 1, b"{}", T0 + LEASE + 2)
        assert [a.outcome for a in await survivor.attempts(d.id)] == ["lost", "ok"]
        assert [x.id for x in await survivor.claim("w2", 10, T0 + LEASE + 3, LEASE)] == [behind.id]
    finally:
        await survivor.close()


# -- the claim does not walk delivered rows ---------------------------------------------------


def plan(db: sqlite3.Connection, sql: str, params: dict[str, float]) -> list[str]:
    return [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, params)]


async def test_claim_query_is_served_by_indexes(tmp_path: Path) -> None:
    path = tmp_path / "lgsp.db"
    await SqliteDeliveryStore(path).close()  # creates the schema

    db = sqlite3.connect(path)
    try:
        for analysed in (False, True):
            steps = plan(db, CLAIM_SQL, {"now": T0, "limit": 10})
            for step in steps:
                if step.startswith(("SCAN", "SEARCH")):
                    assert " USING " in step, steps  # no full scan of the table
            assert "SEARCH d USING INDEX deliveries_due (state=? AND next_attempt_at<?)" in steps
            assert "SEARCH p USING INDEX deliveries_pending_key (order_key=? AND seq<?)" in steps
            assert not any("TEMP B-TREE" in s for s in steps), steps  # read in claim order
            if analysed:
                break
            # The same again once the statistics know of many delivered rows.
            db.executemany(
                "INSERT INTO deliveries (id, consumer, service, operation, payload, request_id, "
                "order_key, state, attempts, round_attempts, max_attempts, next_attempt_at, "
                "created_at, updated_at) "
                "VALUES (?, 'c1', 'dvcqg', 'submit', x'7b7d', 'r', ?, 'delivered', 1, 1, 3, "
                "?, ?, ?)",
                [(f"dlv_{i:024x}", f"K{i % 500}", T0 - i, T0 - i, T0 - i) for i in range(20_000)],
            )
            db.commit()
            db.execute("ANALYZE")
    finally:
        db.close()
