"""The idempotency-key store and its helpers: claim, replay, refuse, expire, take over."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest

from bus.errors import BadRequest, IdempotencyInProgress, IdempotencyKeyReused
from bus.idempotency import (
    HEADER,
    Claimed,
    Replay,
    SqliteIdempotencyStore,
    StoredReply,
    check_key,
    fingerprint,
)

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00+00:00
TTL = 86_400.0
LOCK = 60.0
FP = fingerprint("land", "parcel.note", b'{"note":"first"}')
OTHER_FP = fingerprint("land", "parcel.note", b'{"note":"second"}')
REPLY = StoredReply(
    status=201,
    body=b'{"status":"ok"}\x00\xff',  # not UTF-8: the body is kept as bytes
    headers={"Location": "/v1/land/parcel.note/42"},
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteIdempotencyStore]:
    s = SqliteIdempotencyStore(tmp_path / "idem.db")
    yield s
    await s.close()


async def begin(
    store: SqliteIdempotencyStore,
    key: str = "key-1",
    fp: str = FP,
    now: float = T0,
    scope: str = "consumer-a",
) -> Claimed | Replay:
    return await store.begin(scope, key, fp, now, ttl=TTL, lock_seconds=LOCK)


def rows(path: Path) -> list[tuple[str, str, str]]:
    with closing(sqlite3.connect(path)) as db:
        result = db.execute("SELECT scope, key, state FROM idempotency_keys ORDER BY 1, 2")
        return [tuple(r) for r in result]


# -- check_key ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["a", "0f8fad5b-d9cb-469f-a165-70867728950e", "!~" * 10, "x" * 255, '"quoted"'],
)
def test_check_key_accepts_visible_ascii(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize(
    ("key", "reason_has"),
    [
        ("", "empty"),
        ("x" * 256, "255"),
        ("two words", "visible ASCII"),
        ("clé-privée", "visible ASCII"),
        ("key\x00", "visible ASCII"),
        ("key\x7f", "visible ASCII"),
        ("tab\there", "visible ASCII"),
    ],
)
def test_check_key_refuses_and_names_the_header(key: str, reason_has: str) -> None:
    with pytest.raises(BadRequest) as caught:
        check_key(key)
    err = caught.value
    assert err.code == "client.bad_request"
    assert [(f.field, f.type) for f in err.field_errors] == [(HEADER, "idempotency_key")]
    assert reason_has in err.field_errors[0].reason
    if key:  # the key is never echoed
        assert key not in err.message
        assert key not in err.field_errors[0].reason


def test_header_name() -> None:
    assert HEADER == "Idempotency-Key"


# -- fingerprint --------------------------------------------------------------------------------


def test_fingerprint_is_sha256_hex_and_stable() -> None:
    fp = fingerprint("land", "parcel.note", b"{}")
    assert fp == fingerprint("land", "parcel.note", b"{}")
    assert len(fp) == 64
    assert int(fp, 16) >= 0


@pytest.mark.parametrize(
    "other",
    [
        ("land2", "parcel.note", b"{}"),
        ("land", "parcel.get", b"{}"),
        ("land", "parcel.note", b'{"a":1}'),
    ],
)
def test_fingerprint_differs_when_any_part_differs(other: tuple[str, str, bytes]) -> None:
    assert fingerprint("land", "parcel.note", b"{}") != fingerprint(*other)


@pytest.mark.parametrize(
    ("one", "two"),
    [
        (("a", "bc", b""), ("ab", "c", b"")),
        (("a", "b", b"c"), ("a", "bc", b"")),
        (("", "ab", b""), ("a", "b", b"")),
    ],
)
def test_fingerprint_separates_the_parts(
    one: tuple[str, str, bytes], two: tuple[str, str, bytes]
) -> None:
    assert fingerprint(*one) != fingerprint(*two)


# -- begin / complete / release -----------------------------------------------------------------


@pytest.mark.anyio
async def test_first_use_claims_and_stores_the_row(
    store: SqliteIdempotencyStore, tmp_path: Path
) -> None:
    assert await begin(store) == Claimed()
    assert rows(tmp_path / "idem.db") == [("consumer-a", "key-1", "in_progress")]


@pytest.mark.anyio
async def test_same_request_after_completion_replays_the_reply(
    store: SqliteIdempotencyStore,
) -> None:
    assert await begin(store) == Claimed()
    await store.complete("consumer-a", "key-1", REPLY, now=T0 + 1)
    outcome = await begin(store, now=T0 + 2)
    assert outcome == Replay(REPLY)
    assert isinstance(outcome, Replay)
    assert isinstance(outcome.reply.body, bytes)


@pytest.mark.anyio
async def test_reply_without_headers_replays_empty_headers(store: SqliteIdempotencyStore) -> None:
    await begin(store)
    await store.complete("consumer-a", "key-1", StoredReply(200, b"", {}), now=T0)
    assert await begin(store, now=T0 + 1) == Replay(StoredReply(200, b"", {}))


@pytest.mark.anyio
async def test_different_request_is_refused_without_echoing_the_key(
    store: SqliteIdempotencyStore,
) -> None:
    key = "my-secret-looking-key-1234"
    await begin(store, key=key)
    await store.complete("consumer-a", key, REPLY, now=T0 + 1)
    with pytest.raises(IdempotencyKeyReused) as caught:
        await begin(store, key=key, fp=OTHER_FP, now=T0 + 5)
    err = caught.value
    assert err.code == "client.idempotency_key_reused"
    assert err.http_status == 422
    assert "2026-01-01T00:00:00+00:00" in err.message  # the time of first use
    assert key not in err.message


@pytest.mark.anyio
async def test_different_request_is_refused_while_in_progress(
    store: SqliteIdempotencyStore,
) -> None:
    await begin(store)
    with pytest.raises(IdempotencyKeyReused):
        await begin(store, fp=OTHER_FP, now=T0 + 1)
    # ... and the first claim is untouched: completing it still works.
    await store.complete("consumer-a", "key-1", REPLY, now=T0 + 2)
    assert await begin(store, now=T0 + 3) == Replay(REPLY)


@pytest.mark.anyio
async def test_same_request_in_progress_is_refused_with_retry_after(
    store: SqliteIdempotencyStore,
) -> None:
    await begin(store)
    with pytest.raises(IdempotencyInProgress) as caught:
        await begin(store, now=T0 + 15.5)
    err = caught.value
    assert err.code == "client.idempotency_in_progress"
    assert err.http_status == 409
    assert err.retry_after == 45  # ceil(60 - 15.5)


@pytest.mark.anyio
async def test_retry_after_is_at_least_one_second(store: SqliteIdempotencyStore) -> None:
    await begin(store)
    with pytest.raises(IdempotencyInProgress) as caught:
        await begin(store, now=T0 + LOCK - 0.01)
    assert caught.value.retry_after == 1


@pytest.mark.anyio
async def test_expired_lock_lets_a_second_caller_take_over(
    store: SqliteIdempotencyStore,
) -> None:
    await begin(store)
    assert await begin(store, now=T0 + LOCK) == Claimed()  # locked_until <= now
    # The new claim holds its own lock from the takeover on.
    with pytest.raises(IdempotencyInProgress) as caught:
        await begin(store, now=T0 + LOCK + 10)
    assert caught.value.retry_after == 50
    # The takeover keeps the fingerprint and the time of first use.
    with pytest.raises(IdempotencyKeyReused) as reused:
        await begin(store, fp=OTHER_FP, now=T0 + LOCK + 11)
    assert "2026-01-01T00:00:00+00:00" in reused.value.message
    await store.complete("consumer-a", "key-1", REPLY, now=T0 + LOCK + 12)
    assert await begin(store, now=T0 + LOCK + 13) == Replay(REPLY)


@pytest.mark.anyio
async def test_expiry_makes_the_key_reusable_with_another_request(
    store: SqliteIdempotencyStore,
) -> None:
    await begin(store)
    await store.complete("consumer-a", "key-1", REPLY, now=T0 + 1)
    with pytest.raises(IdempotencyKeyReused):
        await begin(store, fp=OTHER_FP, now=T0 + TTL - 1)
    assert await begin(store, fp=OTHER_FP, now=T0 + TTL) == Claimed()
    # The key now names the new request.
    with pytest.raises(IdempotencyKeyReused) as caught:
        await begin(store, fp=FP, now=T0 + TTL + 1)
    assert "2026-01-02T00:00:00+00:00" in caught.value.message


@pytest.mark.anyio
async def test_a_key_does_not_expire_while_locked(store: SqliteIdempotencyStore) -> None:
    """A ttl shorter than the lock is stretched to the lock: a claim cannot be lost mid-call."""
    await store.begin("consumer-a", "key-1", FP, T0, ttl=10, lock_seconds=LOCK)
    with pytest.raises(IdempotencyKeyReused):
        await begin(store, fp=OTHER_FP, now=T0 + 30)


@pytest.mark.anyio
async def test_scopes_are_separate(store: SqliteIdempotencyStore, tmp_path: Path) -> None:
    assert await begin(store, scope="consumer-a") == Claimed()
    assert await begin(store, scope="consumer-b", fp=OTHER_FP) == Claimed()
    await store.complete("consumer-a", "key-1", REPLY, now=T0 + 1)
    other = StoredReply(200, b"b", {})
    await store.complete("consumer-b", "key-1", other, now=T0 + 1)
    assert await begin(store, scope="consumer-a", now=T0 + 2) == Replay(REPLY)
    assert await begin(store, scope="consumer-b", fp=OTHER_FP, now=T0 + 2) == Replay(other)
    await store.release("consumer-c", "key-1")
    assert len(rows(tmp_path / "idem.db")) == 2


@pytest.mark.anyio
async def test_release_frees_the_key_for_a_retry(store: SqliteIdempotencyStore) -> None:
    await begin(store)
    await store.release("consumer-a", "key-1")
    # Freed: even another request may use it now, without waiting for the lock.
    assert await begin(store, fp=OTHER_FP, now=T0 + 1) == Claimed()


@pytest.mark.anyio
async def test_release_keeps_a_stored_reply(store: SqliteIdempotencyStore) -> None:
    await begin(store)
    await store.complete("consumer-a", "key-1", REPLY, now=T0 + 1)
    await store.release("consumer-a", "key-1")
    assert await begin(store, now=T0 + 2) == Replay(REPLY)


@pytest.mark.anyio
async def test_complete_keeps_the_first_reply(store: SqliteIdempotencyStore) -> None:
    await begin(store)
    await store.complete("consumer-a", "key-1", REPLY, now=T0 + 1)
    await store.complete("consumer-a", "key-1", StoredReply(500, b"late", {}), now=T0 + 2)
    assert await begin(store, now=T0 + 3) == Replay(REPLY)


@pytest.mark.anyio
async def test_complete_of_a_released_key_stores_nothing(
    store: SqliteIdempotencyStore, tmp_path: Path
) -> None:
    await begin(store)
    await store.release("consumer-a", "key-1")
    await store.complete("consumer-a", "key-1", REPLY, now=T0 + 1)
    assert rows(tmp_path / "idem.db") == []


@pytest.mark.anyio
@pytest.mark.parametrize(("ttl", "lock"), [(0, LOCK), (TTL, 0), (-1, LOCK), (float("inf"), LOCK)])
async def test_begin_refuses_bad_durations(
    store: SqliteIdempotencyStore, ttl: float, lock: float
) -> None:
    with pytest.raises(ValueError, match="positive"):
        await store.begin("consumer-a", "key-1", FP, T0, ttl=ttl, lock_seconds=lock)


# -- several processes, restarts, purge ---------------------------------------------------------


@pytest.mark.anyio
async def test_two_processes_racing_one_key_claim_it_once(tmp_path: Path) -> None:
    """Two store objects on one file (as two gateway processes): one claim per key, ever."""
    stores = [SqliteIdempotencyStore(tmp_path / "idem.db") for _ in range(4)]
    try:
        for i in range(25):
            outcomes = await asyncio.gather(
                *(s.begin("consumer-a", f"k{i}", FP, T0, TTL, LOCK) for s in stores),
                return_exceptions=True,
            )
            claimed = [o for o in outcomes if isinstance(o, Claimed)]
            busy = [o for o in outcomes if isinstance(o, IdempotencyInProgress)]
            assert len(claimed) == 1, outcomes
            assert len(busy) == len(stores) - 1, outcomes
    finally:
        for s in stores:
            await s.close()


@pytest.mark.anyio
async def test_a_stored_reply_survives_reopening(tmp_path: Path) -> None:
    first = SqliteIdempotencyStore(tmp_path / "idem.db")
    await first.begin("consumer-a", "key-1", FP, T0, TTL, LOCK)
    await first.complete("consumer-a", "key-1", REPLY, now=T0 + 1)
    await first.close()
    again = SqliteIdempotencyStore(tmp_path / "idem.db")
    try:
        assert await again.begin("consumer-a", "key-1", FP, T0 + 2, TTL, LOCK) == Replay(REPLY)
    finally:
        await again.close()


@pytest.mark.anyio
async def test_purge_removes_only_expired_keys(
    store: SqliteIdempotencyStore, tmp_path: Path
) -> None:
    await begin(store, key="old")
    await store.complete("consumer-a", "old", REPLY, now=T0 + 1)
    await begin(store, key="old-in-progress", now=T0 + 2)
    await begin(store, key="new", now=T0 + 100)
    assert await store.purge_expired(T0 + TTL + 50) == 2
    assert rows(tmp_path / "idem.db") == [("consumer-a", "new", "in_progress")]
    assert await store.purge_expired(T0 + TTL + 50) == 0
    assert await store.purge_expired(T0 + TTL + 100) == 1
    assert rows(tmp_path / "idem.db") == []


@pytest.mark.anyio
async def test_purge_uses_an_index(store: SqliteIdempotencyStore, tmp_path: Path) -> None:
    await begin(store)
    with closing(sqlite3.connect(tmp_path / "idem.db")) as db:
        plan = db.execute(
            "EXPLAIN QUERY PLAN DELETE FROM idempotency_keys WHERE expires_at <= ?", (T0,)
        ).fetchall()
    assert any("USING INDEX" in str(step[-1]) for step in plan), plan
