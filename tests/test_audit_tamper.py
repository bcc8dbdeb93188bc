"""Tampering with the exchange log's file directly is caught by ``verify``, which names the
first record at fault.

Each test appends 50 records (batches of 5, a checkpoint every 10: signed checkpoints at 10,
20, 30, 40 and 50, the signed head at 50), then changes the SQLite file through a connection of
its own, as someone who can write the file but does not hold the signing key would, and checks
the problem ``verify`` reports: its kind, the seq of the first record at fault, and the id
where it can be known.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bus.audit import sqlite_store
from bus.audit.chain import ChainVerifier, Problem, SignedPoint, StoredRecord, VerifyReport
from bus.audit.keys import AuditKeys
from bus.audit.record import COLUMNS, NewRecord, canonical, chain_hash
from bus.audit.sqlite_store import SqliteAuditStore
from bus.audit.store import ExportEntry

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
N = 50
EVERY = 10
#: The query columns after ``id``, in the table's order.
OTHERS = ", ".join(name for name in COLUMNS if name != "id")


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def rec(n: int) -> NewRecord:
    at = T0 + timedelta(seconds=n)
    return NewRecord(
        id=f"ex_{n:06d}",
        kind="call",
        request_id=f"req-{n}",
        received_at=iso(at),
        replied_at=iso(at + timedelta(milliseconds=12)),
        consumer="app-a" if n % 2 else "app-b",
        agency="G12.01",
        end_user=f"officer-{n % 3}",
        service="population",
        operation="lookup",
        outcome="ok",
        error_code=None,
        http_status=200,
        attempts=1,
        duration_ms=12.5,
        request_bytes=100 + n,
        reply_bytes=200 + n,
        request_digest="a" * 64,
        reply_digest="b" * 64,
        subjects=(f"{n % 7:064x}",),
    )


class Log:
    """The store under attack, its keys, and a connection of the attacker's own."""

    def __init__(self, store: SqliteAuditStore, keys: AuditKeys, path: Path) -> None:
        self.store = store
        self.keys = keys
        self.path = path

    @contextmanager
    def file(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        finally:
            db.close()

    def row(self, seq: int) -> dict[str, Any]:
        db = sqlite3.connect(self.path)
        db.row_factory = sqlite3.Row
        try:
            found = db.execute("SELECT * FROM audit_records WHERE seq = ?", (seq,)).fetchone()
            assert found is not None, seq
            return dict(found)
        finally:
            db.close()

    async def verify(
        self, keys: AuditKeys | None = None, *, citizen_index: bool = True
    ) -> VerifyReport:
        """verify, with the citizen index checked too unless told otherwise (every tampering
        with the records must be named the same either way); verified again in ranges split at
        the checkpoints (20, 30 and 40 here), which must report exactly the same."""
        trusted = frozenset({(keys or self.keys).public_key})
        report = await self.store.verify(trusted=trusted, citizen_index=citizen_index)
        in_ranges = await self.store.verify(trusted=trusted, citizen_index=citizen_index, workers=4)
        assert in_ranges == report
        return report

    async def problem(self) -> Problem:
        report = await self.verify()
        assert not report.ok
        assert report.problem is not None
        return report.problem


def data_of(row: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(row["data"])
    return value


def put(db: sqlite3.Connection, seq: int, data: dict[str, Any], prev_hash: str) -> str:
    """Write a record at ``seq`` (replacing any) whose own hash is right; its hash."""
    raw = canonical(data)
    digest = chain_hash(prev_hash, raw)
    names = ", ".join(COLUMNS)
    marks = ", ".join("?" * len(COLUMNS))
    db.execute(
        f"INSERT OR REPLACE INTO audit_records (seq, data, prev_hash, hash, {names}) "  # noqa: S608
        f"VALUES (?, ?, ?, ?, {marks})",
        (seq, raw, prev_hash, digest, *(data.get(name) for name in COLUMNS)),
    )
    return digest


def rechain(db: sqlite3.Connection, after: int) -> None:
    """Recompute every link and hash after record ``after``, as an attacker rewriting the
    chain would (without the key, the signed points stay as they were)."""
    (prev,) = db.execute("SELECT hash FROM audit_records WHERE seq = ?", (after,)).fetchone()
    rows = db.execute(
        "SELECT seq, data FROM audit_records WHERE seq > ? ORDER BY seq", (after,)
    ).fetchall()
    for seq, data in rows:
        digest = chain_hash(prev, data)
        db.execute(
            "UPDATE audit_records SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, seq)
        )
        prev = digest


class ThreadsForProcesses(ThreadPoolExecutor):
    """The parallel verify's process pool, as threads: the same ranges and the same code, in
    a fraction of the time (tests/test_audit_store.py runs it in real processes)."""

    def __init__(self, workers: int, mp_context: Any = None) -> None:
        super().__init__(workers)


@pytest.fixture
async def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Log]:
    monkeypatch.setattr(sqlite_store, "PARALLEL_MIN_RECORDS", 10)
    monkeypatch.setattr(sqlite_store, "ProcessPoolExecutor", ThreadsForProcesses)
    keys = AuditKeys.generate()
    path = tmp_path / "audit.db"
    now = [T0]
    store = SqliteAuditStore(path, keys, checkpoint_every=EVERY, now=lambda: iso(now[0]))
    for first in range(1, N + 1, 5):
        if first > 20:  # records 1..20 are an hour older than the rest (see purged())
            now[0] = T0 + timedelta(hours=1)
        await store.append([rec(n) for n in range(first, first + 5)])
    report = await store.verify(trusted=frozenset({keys.public_key}))
    assert (report.ok, report.checked) == (True, N)
    yield Log(store, keys, path)
    await store.close()


def id_of(n: int) -> str:
    return f"ex_{n:06d}"


# -- changing a record ------------------------------------------------------------------------


async def test_a_changed_field_no_longer_matches_its_hash(log: Log) -> None:
    data = data_of(log.row(23))
    data["consumer"] = "app-someone-else"
    with log.file() as db:
        db.execute(
            "UPDATE audit_records SET data = ? WHERE seq = 23", (canonical(data),)
        )  # the column is left alone: the data's hash is what gives it away

    problem = await log.problem()
    assert (problem.kind, problem.seq, problem.id) == ("modified", 23, id_of(23))
    assert "hash" in problem.detail


async def test_a_change_made_in_sql_text_is_caught_too(log: Log) -> None:
    # replace() turns the BLOB into TEXT: verify reads it back as the bytes it now holds.
    with log.file() as db:
        db.execute(
            "UPDATE audit_records SET data = replace(data, 'lookup', 'lookuq') WHERE seq = 7"
        )

    problem = await log.problem()
    assert (problem.kind, problem.seq, problem.id) == ("modified", 7, id_of(7))


async def test_a_changed_query_column_is_caught_though_the_data_is_intact(log: Log) -> None:
    with log.file() as db:
        db.execute("UPDATE audit_records SET consumer = 'app-innocent' WHERE seq = 23")

    problem = await log.problem()
    assert (problem.kind, problem.seq, problem.id) == ("modified", 23, id_of(23))
    assert "consumer column" in problem.detail


@pytest.mark.parametrize(("name", "value"), [("duration_ms", 1.5), ("end_user", None)])
async def test_any_query_column_is_checked(log: Log, name: str, value: Any) -> None:
    with log.file() as db:
        db.execute(f"UPDATE audit_records SET {name} = ? WHERE seq = 31", (value,))  # noqa: S608

    problem = await log.problem()
    assert (problem.kind, problem.seq, problem.id) == ("modified", 31, id_of(31))
    assert f"{name} column" in problem.detail


async def test_a_change_with_its_own_hash_recomputed_is_named_at_that_record(log: Log) -> None:
    row = log.row(23)
    data = data_of(row)
    data["consumer"] = "app-someone-else"
    with log.file() as db:
        put(db, 23, data, row["prev_hash"])  # record 23 is self-consistent; 24 links to the old

    problem = await log.problem()
    assert (problem.kind, problem.seq, problem.id) == ("modified", 23, id_of(23))
    assert "changed (and its own hash recomputed)" in problem.detail


async def test_a_change_with_the_rest_of_the_chain_rewritten_is_caught_by_a_checkpoint(
    log: Log,
) -> None:
    row = log.row(23)
    data = data_of(row)
    data["end_user"] = "officer-innocent"
    with log.file() as db:
        put(db, 23, data, row["prev_hash"])
        rechain(db, 23)  # every link now holds: only the signed points can tell

    problem = await log.problem()
    # The checkpoint at 30 differs; the one at 20 holds: the change is in 21..30.
    assert (problem.kind, problem.seq, problem.id) == ("modified", 21, id_of(21))
    assert "between 21 and 30" in problem.detail


async def test_a_rewritten_chain_after_the_last_checkpoint_is_caught_by_the_head(
    log: Log,
) -> None:
    with log.file() as db:
        db.execute("DELETE FROM audit_checkpoints WHERE seq = 50")  # leaves 10..40 and the head
        row = log.row(45)
        data = data_of(row)
        data["consumer"] = "app-innocent"
        put(db, 45, data, row["prev_hash"])
        rechain(db, 45)

    problem = await log.problem()
    assert (problem.kind, problem.seq, problem.id) == ("modified", 41, id_of(41))
    assert "signed head" in problem.detail


async def test_a_rewritten_chain_with_a_head_signed_by_another_key_is_refused(log: Log) -> None:
    attacker = AuditKeys.generate()
    with log.file() as db:
        db.execute("DELETE FROM audit_checkpoints")
        row = log.row(12)
        data = data_of(row)
        data["consumer"] = "app-innocent"
        put(db, 12, data, row["prev_hash"])
        rechain(db, 12)
        (last_hash,) = db.execute("SELECT hash FROM audit_records WHERE seq = 50").fetchone()
        forge_head(db, attacker, 50, last_hash)

    problem = await log.problem()
    assert (problem.kind, problem.seq) == ("signature", 50)
    assert "trusted" in problem.detail
    # Trusting the attacker's key instead would accept the rewritten log: the key is the anchor
    # of trust, which is why verify is always given the keys to trust.
    assert (await log.verify(attacker)).ok


# -- removing records -------------------------------------------------------------------------


@pytest.mark.parametrize("seq", [1, 23, 30, 49])
async def test_a_deleted_record_is_named(log: Log, seq: int) -> None:
    with log.file() as db:
        db.execute("DELETE FROM audit_records WHERE seq = ?", (seq,))

    problem = await log.problem()
    assert (problem.kind, problem.seq, problem.id) == ("deleted", seq, None)
    assert f"record {seq} is missing" in problem.detail


async def test_a_deleted_range_is_named_from_its_first_record(log: Log) -> None:
    with log.file() as db:
        db.execute("DELETE FROM audit_records WHERE seq BETWEEN 17 AND 26")

    problem = await log.problem()
    assert (problem.kind, problem.seq) == ("deleted", 17)
    assert "records 17 to 26 are missing" in problem.detail


async def test_a_cut_tail_is_named_from_its_first_missing_record(log: Log) -> None:
    with log.file() as db:
        db.execute("DELETE FROM audit_records WHERE seq > 47")

    problem = await log.problem()
    assert (problem.kind, problem.seq, problem.id) == ("truncated", 48, None)


async def test_a_deleted_head_record_is_a_cut_tail(log: Log) -> None:
    with log.file() as db:
        db.execute("DELETE FROM audit_records WHERE seq = 50")

    problem = await log.problem()
    assert (problem.kind, problem.seq) == ("truncated", 50)


async def test_a_cut_tail_with_its_checkpoints_removed_is_caught_by_the_head(log: Log) -> None:
    with log.file() as db:
        db.execute("DELETE FROM audit_records WHERE seq > 35")
        db.execute("DELETE FROM audit_checkpoints WHERE seq > 35")

    problem = await log.problem()
    assert (problem.kind, problem.seq) == ("truncated", 36)
    assert "signed head is record 50" in problem.detail


async def test_a_removed_head_is_refused(log: Log) -> None:
    with log.file() as db:
        db.execute("DELETE FROM audit_records WHERE seq > 45")
        db.execute("DELETE FROM audit_checkpoints WHERE seq > 45")
        db.execute("DELETE FROM audit_head")

    problem = await log.problem()
    assert (problem.kind, problem.seq, problem.id) == ("signature", 45, id_of(45))
    assert "head is missing" in problem.detail


# -- adding records ---------------------------------------------------------------------------


async def test_a_record_added_after_the_signed_head_is_caught(log: Log) -> None:
    # A copy of record 7 made into record 51 (its own id: ids are unique), chained properly.
    data = data_of(log.row(7))
    data.update(seq=N + 1, id="ex_forged")
    with log.file() as db:
        put(db, N + 1, data, log.row(N)["hash"])

    problem = await log.problem()
    assert (problem.kind, problem.seq, problem.id) == ("inserted", 51, "ex_forged")
    assert "signed head" in problem.detail


async def test_an_exact_copy_added_at_the_tail_is_caught(log: Log) -> None:
    row = log.row(7)
    with log.file() as db:
        db.execute(
            f"INSERT INTO audit_records SELECT ?, 'ex_copy', data, ?, hash, {OTHERS} "  # noqa: S608
            "FROM audit_records WHERE seq = 7",
            (N + 1, row["prev_hash"]),
        )

    problem = await log.problem()
    assert (problem.kind, problem.seq) == ("inserted", 51)
    assert "holds record 7" in problem.detail


async def test_a_record_inserted_in_the_middle_is_named(log: Log) -> None:
    """Records 23.. are moved up one and a forged record, properly chained, takes 23."""
    data = data_of(log.row(23))
    data.update(id="ex_forged", consumer="app-innocent")
    with log.file() as db:
        db.execute("UPDATE audit_records SET seq = -(seq + 1) WHERE seq >= 23")
        db.execute("UPDATE audit_records SET seq = -seq WHERE seq < 0")
        put(db, 23, data, log.row(22)["hash"])

    problem = await log.problem()
    assert (problem.kind, problem.seq, problem.id) == ("inserted", 23, "ex_forged")
    assert "position 24 holds record 23" in problem.detail


async def test_a_copy_of_an_earlier_record_inserted_in_the_middle_is_named(log: Log) -> None:
    with log.file() as db:
        db.execute("UPDATE audit_records SET seq = -(seq + 1) WHERE seq >= 23")
        db.execute("UPDATE audit_records SET seq = -seq WHERE seq < 0")
        db.execute(
            "INSERT INTO audit_records SELECT 23, 'ex_copy', data, prev_hash, hash, "  # noqa: S608
            f"{OTHERS} FROM audit_records WHERE seq = 7"
        )

    problem = await log.problem()
    assert (problem.kind, problem.seq) == ("inserted", 23)
    assert "position 23 holds record 7" in problem.detail


# -- moving records ---------------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b"), [(23, 27), (23, 24), (9, 41)])
async def test_two_swapped_records_are_named_at_the_first_position(
    log: Log, a: int, b: int
) -> None:
    with log.file() as db:
        db.execute("UPDATE audit_records SET seq = -1 WHERE seq = ?", (a,))
        db.execute("UPDATE audit_records SET seq = ? WHERE seq = ?", (a, b))
        db.execute("UPDATE audit_records SET seq = ? WHERE seq = -1", (b,))

    problem = await log.problem()
    assert (problem.kind, problem.seq, problem.id) == ("reordered", a, id_of(b))
    assert f"position {a} holds record {b}" in problem.detail


async def test_swapped_data_and_hashes_under_the_same_ids_are_named(log: Log) -> None:
    one, other = log.row(23), log.row(27)
    with log.file() as db:
        for seq, row in ((23, other), (27, one)):
            db.execute(
                "UPDATE audit_records SET data = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                (row["data"], row["prev_hash"], row["hash"], seq),
            )

    problem = await log.problem()
    assert (problem.kind, problem.seq, problem.id) == ("reordered", 23, id_of(23))


# -- signed points ----------------------------------------------------------------------------


def forge_head(db: sqlite3.Connection, keys: AuditKeys, seq: int, hash_: str) -> None:
    signed_at = iso(T0)
    statement = SignedPoint.statement("head", seq, hash_, signed_at, keys.public_key)
    db.execute(
        "UPDATE audit_head SET seq = ?, hash = ?, signed_at = ?, signer = ?, signature = ?",
        (seq, hash_, signed_at, keys.public_key, keys.sign(statement)),
    )


async def test_a_head_signed_by_an_untrusted_key_is_refused(tmp_path: Path) -> None:
    keys = AuditKeys.generate()
    store = SqliteAuditStore(tmp_path / "audit.db", keys, checkpoint_every=1000)
    try:
        await store.append([rec(n) for n in range(1, 6)])
        assert (await store.verify(trusted=frozenset({keys.public_key}))).ok

        report = await store.verify(trusted=frozenset({AuditKeys.generate().public_key}))
        assert not report.ok
        assert report.problem is not None
        assert (report.problem.kind, report.problem.seq) == ("signature", 5)
    finally:
        await store.close()


async def test_a_head_re_signed_by_another_key_is_refused(log: Log) -> None:
    head = await log.store.head()
    assert head is not None
    with log.file() as db:
        forge_head(db, AuditKeys.generate(), head.seq, head.hash)

    problem = await log.problem()
    assert (problem.kind, problem.seq) == ("signature", 50)


async def test_a_head_moved_without_its_signature_is_refused(log: Log) -> None:
    with log.file() as db:
        db.execute("DELETE FROM audit_records WHERE seq > 45")
        db.execute("DELETE FROM audit_checkpoints WHERE seq > 45")
        (hash45,) = db.execute("SELECT hash FROM audit_records WHERE seq = 45").fetchone()
        db.execute("UPDATE audit_head SET seq = 45, hash = ?", (hash45,))

    problem = await log.problem()
    assert (problem.kind, problem.seq) == ("signature", 45)


async def test_a_forged_checkpoint_is_refused(log: Log) -> None:
    with log.file() as db:
        db.execute("UPDATE audit_checkpoints SET signed_at = 'yesterday' WHERE seq = 30")

    problem = await log.problem()
    assert (problem.kind, problem.seq, problem.id) == ("signature", 30, id_of(30))


# -- after a purge: the anchor ----------------------------------------------------------------


async def purged(log: Log) -> SignedPoint:
    """Export and purge records 1..20 (recorded an hour before the rest)."""
    await log.store.add_export(ExportEntry(1, 20, "0" * 64, "/x/a.zip", iso(T0)))
    result = await log.store.purge(iso(T0 + timedelta(minutes=1)))
    assert result.anchor is not None
    assert result.purged == 20
    return result.anchor


async def test_records_removed_before_the_anchor_is_deleted_are_named(log: Log) -> None:
    """After a purge the chain verifies from its anchor; removing the anchor (to pass the
    log off as never purged) shows the records that are gone."""
    await purged(log)
    report = await log.verify()
    assert (report.ok, report.checked, report.first_seq) == (True, 30, 21)

    with log.file() as db:
        db.execute("DELETE FROM audit_anchor")

    problem = await log.problem()
    assert (problem.kind, problem.seq) == ("deleted", 1)
    assert "records 1 to 20 are missing" in problem.detail


async def test_a_forged_anchor_is_refused(log: Log) -> None:
    anchor = await purged(log)
    assert anchor.seq == 20
    hash25 = log.row(25)["hash"]
    with log.file() as db:  # pretend the purge went further, hiding 21..25
        db.execute("DELETE FROM audit_records WHERE seq <= 25")
        db.execute("UPDATE audit_anchor SET seq = 25, hash = ?", (hash25,))

    problem = await log.problem()
    assert (problem.kind, problem.seq) == ("signature", 26)
    assert "anchor" in problem.detail


# -- damage that is not a forgery is still reported, not raised -------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("prev_hash", "é" * 64),
        ("prev_hash", b"\x00\x01"),
        ("hash", 12345),
        ("data", b"\xff\xfe not json"),
        ("data", "[1, 2, 3]"),
    ],
)
async def test_garbage_in_a_record_is_reported_as_a_modification(
    log: Log, column: str, value: Any
) -> None:
    with log.file() as db:
        db.execute(f"UPDATE audit_records SET {column} = ? WHERE seq = 33", (value,))  # noqa: S608

    problem = await log.problem()
    assert (problem.kind, problem.seq) == ("modified", 33)


# -- a long log -------------------------------------------------------------------------------


@pytest.mark.parametrize("at", ["tail", "middle"])
async def test_a_copy_of_a_record_long_before_is_named_where_it_was_put(
    tmp_path: Path, at: str
) -> None:
    """The verifier remembers only the last few thousand ids; a copy of a much older record is
    still named at the position it was put, not at the old record's."""
    keys = AuditKeys.generate()
    path = tmp_path / "audit.db"
    store = SqliteAuditStore(path, keys, checkpoint_every=1000, now=lambda: iso(T0))
    try:
        for first in range(1, 10_001, 1000):
            await store.append([rec(n) for n in range(first, first + 1000)])
        log = Log(store, keys, path)
        position = 10_001 if at == "tail" else 9_500
        with log.file() as db:
            db.execute("UPDATE audit_records SET seq = -(seq + 1) WHERE seq >= ?", (position,))
            db.execute("UPDATE audit_records SET seq = -seq WHERE seq < 0")
            db.execute(
                "INSERT INTO audit_records SELECT ?, 'ex_copy', data, prev_hash, hash, "  # noqa: S608
                f"{OTHERS} FROM audit_records WHERE seq = 5",
                (position,),
            )

        problem = await log.problem()
        assert (problem.kind, problem.seq) == ("inserted", position)
        assert f"position {position} holds record 5" in problem.detail
    finally:
        await store.close()


# -- the citizen index ------------------------------------------------------------------------
# Record n is about the citizen whose blind index is subject(n % 7) (see rec()).


def subject(n: int) -> str:
    return f"{n % 7:064x}"


async def test_an_entry_removed_from_the_citizen_index_is_named(log: Log) -> None:
    """Removing a record's entry hides the exchange from a search for that citizen while the
    chain is intact: verify compares the index with the subjects each record's data names."""
    with log.file() as db:
        db.execute("DELETE FROM audit_subjects WHERE seq = 23")

    problem = await log.problem()
    assert (problem.kind, problem.seq, problem.id) == ("modified", 23, id_of(23))
    assert "citizen index" in problem.detail
    assert "missing" in problem.detail
    assert subject(23) not in problem.detail  # a blind index is not spelt out
    # Only when asked: the default verify checks the chain alone.
    assert (await log.verify(citizen_index=False)).ok


async def test_an_entry_added_to_the_citizen_index_is_named(log: Log) -> None:
    with log.file() as db:
        db.execute("INSERT INTO audit_subjects (subject, seq) VALUES (?, 23)", (subject(24),))

    problem = await log.problem()
    assert (problem.kind, problem.seq, problem.id) == ("modified", 23, id_of(23))
    assert "does not name" in problem.detail


async def test_an_entry_moved_to_another_citizen_is_named(log: Log) -> None:
    with log.file() as db:
        db.execute("UPDATE audit_subjects SET subject = ? WHERE seq = 31", ("f" * 64,))

    problem = await log.problem()
    assert (problem.kind, problem.seq, problem.id) == ("modified", 31, id_of(31))


async def test_an_emptied_citizen_index_is_named_at_the_first_record(log: Log) -> None:
    with log.file() as db:
        db.execute("DELETE FROM audit_subjects")

    problem = await log.problem()
    assert (problem.kind, problem.seq) == ("modified", 1)


@pytest.mark.parametrize("seq", [51, 1000])
async def test_an_entry_for_a_record_the_log_does_not_hold_is_named(log: Log, seq: int) -> None:
    """It would file a record appended later under a citizen it is not about."""
    with log.file() as db:
        db.execute("INSERT INTO audit_subjects (subject, seq) VALUES (?, ?)", (subject(1), seq))

    problem = await log.problem()
    assert (problem.kind, problem.seq, problem.id) == ("inserted", seq, None)
    assert "citizen index" in problem.detail


async def test_an_entry_left_for_a_purged_record_is_named(log: Log) -> None:
    await purged(log)
    with log.file() as db:
        db.execute("INSERT INTO audit_subjects (subject, seq) VALUES (?, 5)", (subject(5),))

    problem = await log.problem()
    assert (problem.kind, problem.seq) == ("inserted", 5)


async def test_the_first_problem_is_named_whether_of_the_chain_or_of_the_index(log: Log) -> None:
    with log.file() as db:
        db.execute("DELETE FROM audit_subjects WHERE seq = 12")
        db.execute("UPDATE audit_records SET consumer = 'app-innocent' WHERE seq = 31")
    problem = await log.problem()
    assert (problem.kind, problem.seq) == ("modified", 12)
    assert "citizen index" in problem.detail

    with log.file() as db:
        db.execute("UPDATE audit_records SET consumer = 'app-innocent' WHERE seq = 9")
    problem = await log.problem()
    assert (problem.kind, problem.seq) == ("modified", 9)
    assert "consumer column" in problem.detail


async def test_a_record_added_with_its_index_entry_is_still_an_insertion(log: Log) -> None:
    """The chain's own finding wins over the index's at the same record."""
    data = data_of(log.row(7))
    data.update(seq=N + 1, id="ex_forged", subjects=[subject(3)])
    with log.file() as db:
        put(db, N + 1, data, log.row(N)["hash"])

    problem = await log.problem()
    assert (problem.kind, problem.seq) == ("inserted", 51)
    assert "signed head" in problem.detail


@pytest.mark.parametrize("chunk", [1, 3, 7, 49])
@pytest.mark.parametrize(
    "tamper",
    [
        "DELETE FROM audit_subjects WHERE seq = 23",
        "UPDATE audit_records SET end_user = 'x' WHERE seq = 23",
        "UPDATE audit_records SET data = replace(data, 'lookup', 'lookuq') WHERE seq = 23",
        "DELETE FROM audit_records WHERE seq = 23",
        "DELETE FROM audit_checkpoints WHERE seq = 30",
    ],
)
async def test_the_same_problem_is_named_however_the_rows_are_read(
    log: Log, monkeypatch: pytest.MonkeyPatch, chunk: int, tamper: str
) -> None:
    """verify reads rows in chunks and checks the good ones on a fast path: where a chunk ends
    does not change what it finds."""
    with log.file() as db:
        db.execute(tamper)
    expected = await log.verify()
    without_index = await log.verify(citizen_index=False)
    monkeypatch.setattr("bus.audit.sqlite_store.CHUNK", chunk)

    assert await log.verify() == expected
    assert await log.verify(citizen_index=False) == without_index
    if "checkpoints" in tamper:
        assert expected.ok
    else:
        assert expected.problem is not None
        assert expected.problem.seq == 23
    if "audit_records" in tamper:
        assert without_index == expected


# -- the fast path of verify agrees with the record-by-record check ---------------------------


def _rows(datas: list[dict[str, Any] | bytes], columns: dict[int, dict[str, Any]]) -> list[Any]:
    """A hash chain over ``datas`` (dicts serialised canonically, bytes as they are), each row
    ``(seq, data, prev_hash, hash, *columns)`` with the columns taken from its data unless
    ``columns`` says otherwise for that seq."""
    rows, prev = [], "0" * 64
    for seq, value in enumerate(datas, start=1):
        data = value if isinstance(value, bytes) else canonical(value)
        fields = value if isinstance(value, dict) else {}
        cols = {name: fields.get(name) for name in COLUMNS} | columns.get(seq, {})
        digest = chain_hash(prev, data)
        rows.append((seq, data, prev, digest, *cols.values()))
        prev = digest
    return rows


def _record(n: int, **changes: Any) -> dict[str, Any]:
    data = {"seq": n, "id": f"ex_{n:04d}", "kind": "call", "http_status": 200}
    data |= {"duration_ms": 1.5, "consumer": "app", "subjects": []}
    return data | changes


@pytest.mark.parametrize(
    ("third", "columns"),
    [
        (_record(3), {}),  # a good record
        ({k: v for k, v in _record(3).items() if k != "kind"}, {}),  # a key left out
        ({k: v for k, v in _record(3).items() if k != "kind"}, {3: {"kind": "call"}}),
        (_record(3), {3: {"http_status": 500}}),
        (_record(3, http_status=200.0), {}),  # the same number, written as a float
        (_record(3, http_status=True), {3: {"http_status": 1}}),
        (_record(3, seq=3.0), {}),
        (_record(3, seq="3"), {}),
        (_record(3, id=3), {3: {"id": "3"}}),
        (b'{"seq":3}', {}),  # no id, and none in the column either
        (b'{"seq":3,"id":null}', {}),
        (b'{"seq":3,"id":"ex_0003","x":NaN}', {3: {"id": "ex_0003"}}),
        (b'{"seq":3,"id":"ex_0003","x":1e400}', {3: {"id": "ex_0003"}}),  # both read it: inf
        (b'{"seq":3,"id":"ex_0003","x":"\\ud800"}', {3: {"id": "ex_0003"}}),
        (b'{"seq":3,"id":"ex_0003","x":"\xff\xfe"}', {3: {"id": "ex_0003"}}),  # not UTF-8
        (b'{"seq":3,"id":"ex_0003","\xc0\xaf":1}', {3: {"id": "ex_0003"}}),
        ('{"seq":3,"id":"ex_0003","x":"Lê Thị"}'.encode(), {3: {"id": "ex_0003"}}),
        (b'{"seq":3,"id":"ex_0003"} trailing', {3: {"id": "ex_0003"}}),
        (b'{"seq":3,"id":"ex_0003","id":"ex_0009"}', {3: {"id": "ex_0009"}}),
        (b"[3]", {3: {"id": "ex_0003"}}),
    ],
)
@pytest.mark.parametrize("check_columns", [True, False])
def test_the_fast_path_takes_a_record_only_where_feed_would(
    third: dict[str, Any] | bytes, columns: dict[int, dict[str, Any]], check_columns: bool
) -> None:
    """verify reads only the checked fields of a record (``feed_rows``); a record whose hash
    holds gets the verdict :meth:`ChainVerifier.feed` gives it on the whole parsed data."""
    rows = _rows([_record(1), _record(2), third, _record(4)], columns)
    fast = ChainVerifier(anchor=None, checkpoints={}, check_columns=check_columns)
    slow = ChainVerifier(anchor=None, checkpoints={}, check_columns=check_columns)

    fast.feed_rows(rows)
    for row in rows:
        if not slow.feed(StoredRecord.from_row(row)):
            break

    assert (fast.problem, fast.checked, fast.last_seq) == (
        slow.problem,
        slow.checked,
        slow.last_seq,
    )


@pytest.mark.parametrize(
    "odd",
    [
        b"[[[]]]",  # a readable change, for comparison
        b"[" * 250 + b"]" * 250,  # deeper than feed() reads
        b"9" * 4400,  # an integer of more digits than feed() reads
    ],
)
async def test_a_forged_record_read_laxly_is_still_caught_at_the_next_signed_point(
    log: Log, odd: bytes
) -> None:
    """The fast path reads through a field it does not check without feed()'s limits on
    depth and digits: a forged record that only those limits refuse (the bus writes none)
    is still reported, at the signed point after it, as any rewritten chain is."""
    row = log.row(23)
    data = data_of(row) | {"detail": "@odd@"}
    raw = canonical(data).replace(b'"@odd@"', odd)  # json.dumps writes no such integer
    with log.file() as db:
        db.execute(
            "UPDATE audit_records SET data = ?, hash = ? WHERE seq = 23",
            (raw, chain_hash(row["prev_hash"], raw)),
        )
        rechain(db, 23)

    problem = await log.problem()
    assert (problem.kind, problem.seq) == ("modified", 21)
    assert "between 21 and 30" in problem.detail
