"""The exchange log in one SQLite file: the embedded :class:`~bus.audit.store.AuditStore`.

Layout
------
``audit_records`` holds each record's canonical data (what is hashed), its chain hashes, and a
copy of the query fields (:data:`bus.audit.record.COLUMNS`) in their own indexed columns; those
copies are taken from the data itself and :meth:`SqliteAuditStore.verify` checks them against
it, so a query can never be served by a column that says something the chain does not.
``audit_subjects`` maps each citizen blind index to the records about it. ``audit_head`` is the
signed head (one row), ``audit_checkpoints`` the heads kept at intervals, ``audit_anchor`` the
signed point the chain starts from after a purge, ``audit_exports`` the bundles written (a purge
only removes what one of them holds), and ``auditors`` who may read the log.

Transactions
------------
:meth:`~SqliteAuditStore.append` reads the head, chains the batch onto it and signs the new head
in one ``BEGIN IMMEDIATE`` transaction: gateway processes sharing the file are serialised by
SQLite's write lock and keep one valid chain, and queue for it on a lock file beside the log
(:meth:`~bus.sqlite.SqliteFile._write`) rather than in SQLite's sleeping retries. It
continues from the *signed head*, never from the last row: a row someone added behind the
head's back makes the append fail on its number instead of being chained and signed over.
Long reads (:meth:`~SqliteAuditStore.verify`,
:meth:`~SqliteAuditStore.export`) run in one read transaction on a connection of their own, so
they see one snapshot and do not hold up appends through the store's connection.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import math
import multiprocessing
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from bus.audit.chain import (
    RECENT_WINDOW,
    ChainVerifier,
    Problem,
    RangeOutcome,
    SignedPoint,
    StoredRecord,
    VerifyReport,
    combine_ranges,
)
from bus.audit.record import COLUMNS, GENESIS, NewRecord, chain_hash, finalise, utc_now
from bus.audit.store import (
    Auditor,
    AuditQuery,
    AuditStoreError,
    ExportEntry,
    Progress,
    PurgeResult,
    Signer,
    StatRow,
)
from bus.sqlite import SqliteFile

__all__ = ["SqliteAuditStore"]

T = TypeVar("T")

#: Records read per round trip by verify and export (and between progress reports).
CHUNK = 2000
#: Records removed per transaction by a purge.
PURGE_CHUNK = 10_000

_SQL_TYPES = {str: "TEXT", int: "INTEGER", float: "REAL"}
#: The query columns a new record holds itself, in COLUMNS order: all but the last,
#: ``recorded_at``, which the store sets per batch.
_RECORD_COLUMNS = tuple(COLUMNS)[:-1]
assert tuple(COLUMNS)[-1] == "recorded_at"
#: The query columns besides ``id`` (which has its own declaration), in COLUMNS order.
_EXTRA = tuple(name for name in COLUMNS if name != "id")

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS audit_records (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    data BLOB NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL"""
    + "".join(f",\n    {name} {_SQL_TYPES[COLUMNS[name]]}" for name in _EXTRA)
    + """
);
CREATE INDEX IF NOT EXISTS audit_records_received ON audit_records (received_at);
CREATE INDEX IF NOT EXISTS audit_records_consumer ON audit_records (consumer, received_at);
CREATE INDEX IF NOT EXISTS audit_records_service
    ON audit_records (service, operation, received_at);
-- These two end in seq (the rowid): the newest records of a consumer, or of an operation, are
-- read in order, 50 of a million in about a millisecond instead of sorting them all.
CREATE INDEX IF NOT EXISTS audit_records_consumer_seq ON audit_records (consumer);
CREATE INDEX IF NOT EXISTS audit_records_operation_seq ON audit_records (service, operation);
CREATE INDEX IF NOT EXISTS audit_records_end_user ON audit_records (end_user);
CREATE INDEX IF NOT EXISTS audit_records_agency ON audit_records (agency);
CREATE INDEX IF NOT EXISTS audit_records_request ON audit_records (request_id);
CREATE INDEX IF NOT EXISTS audit_records_recorded ON audit_records (recorded_at);

CREATE TABLE IF NOT EXISTS audit_subjects (
    subject TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (subject, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS audit_subjects_seq ON audit_subjects (seq);

CREATE TABLE IF NOT EXISTS audit_head (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    signed_at TEXT NOT NULL,
    signer TEXT NOT NULL,
    signature TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS audit_checkpoints (
    seq INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    signed_at TEXT NOT NULL,
    signer TEXT NOT NULL,
    signature TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS audit_anchor (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    signed_at TEXT NOT NULL,
    signer TEXT NOT NULL,
    signature TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS audit_exports (
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    path TEXT NOT NULL,
    exported_at TEXT NOT NULL,
    CHECK (first_seq <= last_seq)
);

CREATE TABLE IF NOT EXISTS auditors (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    can_read_bodies INTEGER NOT NULL,
    active INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
"""
)

# SQL text is only ever assembled from these module constants and the fixed names of COLUMNS
# (hence the S608 exemptions); every value is a bound parameter. The casts keep a value that
# was tampered into another storage class the type verify expects, so it is reported, not
# raised on.
_NAMES = ", ".join(COLUMNS)
_MARKS = ", ".join("?" * (4 + len(COLUMNS)))
_CASTS = "CAST(data AS BLOB), CAST(prev_hash AS TEXT), CAST(hash AS TEXT)"
_RECORD = f"SELECT seq, {_CASTS}, {_NAMES} FROM audit_records"  # noqa: S608
_RANGE = _RECORD + " WHERE seq > ? AND seq <= ? ORDER BY seq"
_INSERT = f"INSERT INTO audit_records (seq, data, prev_hash, hash, {_NAMES}) VALUES ({_MARKS})"  # noqa: S608
_SELECT_HEAD = "SELECT seq, hash, signed_at, signer, signature FROM audit_head"
_SELECT_ANCHOR = "SELECT seq, hash, signed_at, signer, signature FROM audit_anchor"
_AUDITOR = "id, name, key_hash, can_read_bodies, active, created_at"
_SELECT_AUDITOR = f"SELECT {_AUDITOR} FROM auditors"  # noqa: S608
_INSERT_AUDITOR = f"INSERT INTO auditors ({_AUDITOR}) VALUES (?, ?, ?, ?, ?, ?)"  # noqa: S608
_STATS = "SELECT service, operation, outcome = 'error', duration_ms FROM audit_records"
_SUBJECTS = (
    "SELECT seq, subject FROM audit_subjects WHERE seq >= ? AND seq <= ? ORDER BY seq, subject"
)


def _subjects(db: sqlite3.Connection, first: int, last: int) -> dict[int, list[Any]]:
    """The citizen index of records ``first``..``last``: seq -> its blind indexes."""
    index: dict[int, list[Any]] = {}
    for seq, subject in db.execute(_SUBJECTS, (first, last)):
        found = index.get(seq)
        if found is None:
            index[seq] = [subject]
        else:
            found.append(subject)
    return index


def _stray_subject(db: sqlite3.Connection, first: int | None, last: int | None) -> int | None:
    """The first seq the citizen index names outside the records ``first``..``last``."""
    if first is None or last is None:
        (stray,) = db.execute("SELECT min(seq) FROM audit_subjects").fetchone()
        return None if stray is None else int(stray)
    (before,) = db.execute("SELECT min(seq) FROM audit_subjects WHERE seq < ?", (first,)).fetchone()
    if before is not None:
        return int(before)
    (after,) = db.execute("SELECT min(seq) FROM audit_subjects WHERE seq > ?", (last,)).fetchone()
    return None if after is None else int(after)


def _stray_problem(db: sqlite3.Connection, first: int | None, last: int | None) -> Problem | None:
    """The citizen index's entry for a record outside ``first``..``last``, as a problem."""
    stray = _stray_subject(db, first, last)
    if stray is None:
        return None
    return Problem(
        "inserted",
        stray,
        None,
        f"the citizen index files record {stray} under a citizen, but the log holds no such record",
    )


#: The fewest records a process of a parallel verify is given: starting one costs about as
#: much as checking some tens of thousands of records.
PARALLEL_MIN_RECORDS = 100_000
_BEFORE_ALL = -(2**63)


@dataclass(frozen=True, slots=True)
class _RangeJob:
    """One process's range of a parallel verify: records ``after < seq <= upto``."""

    path: str
    after: int
    upto: int
    records: int  # about how many: for progress
    last: bool
    anchor: SignedPoint | None
    start: tuple[int, str] | None
    recent: tuple[tuple[int, str], ...]
    checkpoints: dict[int, SignedPoint]
    head: SignedPoint | None
    trusted: frozenset[str]
    citizen_index: bool


@dataclass(frozen=True, slots=True)
class _RangePlan:
    jobs: list[_RangeJob]
    anchor: SignedPoint | None
    head: SignedPoint | None
    total: int


def _plan_ranges(
    db: sqlite3.Connection,
    path: str,
    workers: int,
    trusted: frozenset[str],
    citizen_index: bool,
) -> _RangePlan | None:
    """Ranges for up to ``workers`` processes, split at signed checkpoints, in one snapshot;
    None when the log is too small to gain from more than one."""
    (total, first, last) = db.execute(
        "SELECT count(*), min(seq), max(seq) FROM audit_records"
    ).fetchone()
    count = min(workers, total // PARALLEL_MIN_RECORDS)
    if count < 2:
        return None
    anchor = SqliteAuditStore._read_anchor(db)
    head = SqliteAuditStore._read_head(db)
    checkpoints = SqliteAuditStore._read_checkpoints(db)
    marks = sorted(seq for seq in checkpoints if first < seq < last)
    bounds: list[int] = []
    for n in range(1, count):
        at = bisect.bisect_left(marks, first + (last - first) * n // count)
        if at < len(marks) and (not bounds or marks[at] > bounds[-1]):
            bounds.append(marks[at])
    if not bounds:
        return None
    edges = [_BEFORE_ALL, *bounds, last]
    jobs = []
    for n, (after, upto) in enumerate(itertools.pairwise(edges)):
        recent = db.execute(
            "SELECT seq, id FROM audit_records WHERE seq <= ? ORDER BY seq DESC LIMIT ?",
            (after, RECENT_WINDOW),
        ).fetchall()
        jobs.append(
            _RangeJob(
                path=path,
                after=after,
                upto=upto,
                records=upto - max(after, first - 1),
                last=n == len(edges) - 2,
                anchor=anchor if n == 0 else None,
                start=None if n == 0 else (after, checkpoints[after].hash),
                recent=tuple((int(s), str(i)) for s, i in reversed(recent)) if n else (),
                checkpoints={s: p for s, p in checkpoints.items() if s > after},
                head=head,
                trusted=trusted,
                citizen_index=citizen_index,
            )
        )
    return _RangePlan(jobs, anchor, head, total)


def _read_only(path: str) -> sqlite3.Connection:
    """A connection of its own for long reads of the file (closed by the caller)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA busy_timeout=5000")
    db.execute("PRAGMA query_only=ON")
    return db


def _feed(
    db: sqlite3.Connection,
    verifier: ChainVerifier,
    cursor: sqlite3.Cursor,
    citizen_index: bool,
    progress: Callable[[int], None] | None = None,
) -> bool:
    """Feed ``verifier`` the records ``cursor`` reads (with their citizen index entries when
    asked) until they run out or one fails; False if one failed."""
    ok = verifier.problem is None
    while ok and (rows := cursor.fetchmany(CHUNK)):
        index = _subjects(db, rows[0][0], rows[-1][0]) if citizen_index else None
        ok = verifier.feed_rows(rows, index)
        if progress is not None:
            progress(len(rows))
    cursor.close()
    return ok


def _verify_range(job: _RangeJob) -> RangeOutcome:
    """Check one range in a process of a parallel verify (see ``SqliteAuditStore.verify``)."""
    with closing(_read_only(job.path)) as db:
        db.execute("BEGIN")
        verifier = ChainVerifier(
            anchor=job.anchor,
            checkpoints=job.checkpoints,
            trusted=job.trusted,
            start=job.start,
            recent=job.recent,
        )
        ok = _feed(db, verifier, db.execute(_RANGE, (job.after, job.upto)), job.citizen_index)
        if ok and verifier.reached < job.upto:  # records at the range's end are missing
            after = db.execute(_RECORD + " WHERE seq > ? ORDER BY seq LIMIT 1", (job.upto,))
            if _feed(db, verifier, after, job.citizen_index):  # no record after them: the end
                return RangeOutcome.of(verifier, verifier.check_end(job.head))
            return RangeOutcome.of(verifier)  # the gap, named where a single pass names it
        if ok and job.last:
            return RangeOutcome.of(verifier, verifier.check_end(job.head))
        return RangeOutcome.of(verifier)


def _point(row: Sequence[Any] | None, kind: str) -> SignedPoint | None:
    if row is None:
        return None
    return SignedPoint.from_json(
        {
            "seq": row[0],
            "hash": row[1],
            "signed_at": row[2],
            "signer": row[3],
            "signature": row[4],
            "kind": kind,
        }
    )


def _auditor(row: Sequence[Any]) -> Auditor:
    return Auditor(
        id=row[0],
        name=row[1],
        key_hash=row[2],
        can_read_bodies=bool(row[3]),
        active=bool(row[4]),
        created_at=row[5],
    )


def _where(query: AuditQuery, before_seq: int | None = None) -> tuple[str, list[Any]]:
    """The WHERE clause (with its leading keyword, or empty) and parameters of a query."""
    clauses: list[str] = []
    params: list[Any] = []
    if query.since is not None:
        clauses.append("received_at >= ?")
        params.append(query.since)
    if query.until is not None:
        clauses.append("received_at < ?")
        params.append(query.until)
    for name in (
        "consumer",
        "agency",
        "end_user",
        "service",
        "operation",
        "outcome",
        "error_code",
        "kind",
        "request_id",
    ):
        value = getattr(query, name)
        if value is not None:
            clauses.append(f"{name} = ?")
            params.append(value)
    if query.subject is not None:
        clauses.append("seq IN (SELECT seq FROM audit_subjects WHERE subject = ?)")
        params.append(query.subject)
    if before_seq is not None:
        clauses.append("seq < ?")
        params.append(before_seq)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _query_sql(query: AuditQuery, before_seq: int | None) -> tuple[str, list[Any]]:
    """The SQL of :meth:`SqliteAuditStore.query` and its parameters but the last (limit).

    The page's seqs are chosen first, from the indexes alone where they cover the filters:
    sorting every match of a busy consumer or of an hour by seq is then a sort of integers,
    not of whole records (some 20 times faster at a million records)."""
    where, params = _where(query, before_seq)
    page = f"SELECT seq FROM audit_records{where} ORDER BY seq DESC LIMIT ?"  # noqa: S608
    return f"{_RECORD} WHERE seq IN ({page}) ORDER BY seq DESC", params


def _nearest_rank(ordered: Sequence[float], percent: float) -> float:
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return float(ordered[rank - 1])


def _first_uncovered(first: int, last: int, ranges: Iterable[tuple[int, int]]) -> int | None:
    """The first seq in ``first``..``last`` that none of ``ranges`` (inclusive) holds."""
    covered = first - 1
    for lo, hi in sorted(ranges):
        if lo > covered + 1:
            break
        covered = max(covered, hi)
        if covered >= last:
            return None
    return covered + 1 if covered < last else None


class SqliteAuditStore(SqliteFile):
    """The embedded exchange log: one SQLite file (WAL, ``synchronous=FULL``) that every
    gateway process of a deployment appends to."""

    def __init__(
        self,
        path: Path | str,
        signer: Signer,
        *,
        checkpoint_every: int = 1000,
        now: Callable[[], str] | None = None,
    ) -> None:
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        super().__init__(path, _SCHEMA, synchronous="FULL")
        self._signer = signer
        self._checkpoint_every = checkpoint_every
        self._now = now or utc_now

    # -- helpers -------------------------------------------------------------------------------

    async def _snapshot(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one read transaction: on a connection of its own for a file (so a
        long read does not hold the store's connection), on the store's for ``:memory:``."""

        def in_transaction(db: sqlite3.Connection) -> T:
            db.execute("BEGIN")
            try:
                return fn(db)
            finally:
                if db.in_transaction:
                    db.execute("ROLLBACK")

        if self.path == ":memory:":
            return await self._run(in_transaction)

        def on_own_connection() -> T:
            with closing(_read_only(self.path)) as db:
                return in_transaction(db)

        return await asyncio.to_thread(on_own_connection)

    def _sign(self, kind: str, seq: int, hash_: str, signed_at: str) -> tuple[str, str]:
        """(signer, signature) of the statement that record ``seq`` has hash ``hash_``."""
        signer = self._signer.public_key
        message = SignedPoint.statement(kind, seq, hash_, signed_at, signer)
        return signer, self._signer.sign(message)

    def _put_signed(
        self,
        db: sqlite3.Connection,
        kind: Literal["head", "anchor"],
        seq: int,
        hash_: str,
        signed_at: str,
    ) -> tuple[int, str, str, str, str]:
        """Sign that record ``seq`` has hash ``hash_`` and keep it as the log's one head or
        anchor (table ``audit_<kind>``); the point as stored."""
        signer, signature = self._sign(kind, seq, hash_, signed_at)
        point = (seq, hash_, signed_at, signer, signature)
        db.execute(
            f"INSERT OR REPLACE INTO audit_{kind} (one, seq, hash, signed_at, signer, "  # noqa: S608 - kind is one of two literals
            "signature) VALUES (1, ?, ?, ?, ?, ?)",
            point,
        )
        return point

    @staticmethod
    def _read_head(db: sqlite3.Connection) -> SignedPoint | None:
        return _point(db.execute(_SELECT_HEAD).fetchone(), "head")

    @staticmethod
    def _read_anchor(db: sqlite3.Connection) -> SignedPoint | None:
        return _point(db.execute(_SELECT_ANCHOR).fetchone(), "anchor")

    @staticmethod
    def _read_checkpoints(
        db: sqlite3.Connection, first: int = 0, last: int | None = None
    ) -> dict[int, SignedPoint]:
        rows = db.execute(
            "SELECT seq, hash, signed_at, signer, signature FROM audit_checkpoints "
            "WHERE seq >= ? AND seq <= ? ORDER BY seq",
            (first, last if last is not None else 2**63 - 1),
        ).fetchall()
        points = {}
        for row in rows:
            point = _point(row, "checkpoint")
            assert point is not None
            points[point.seq] = point
        return points

    # -- writing -------------------------------------------------------------------------------

    async def append(self, records: Sequence[NewRecord]) -> list[int]:
        if not records:
            return []
        return await self._write(lambda db: self._append(db, records))

    def append_here(self, records: Sequence[NewRecord]) -> list[int]:
        """:meth:`append` in the calling thread (the exchange log's writer process)."""
        if not records:
            return []
        return self._write_here(lambda db: self._append(db, records))

    def _append(self, db: sqlite3.Connection, records: Sequence[NewRecord]) -> list[int]:
        head = self._read_head(db)
        if head is not None:
            # signed_at of a head is the recorded_at of its batch (see below).
            prev_seq, prev_hash, previous = head.seq, head.hash, head.signed_at
        else:
            prev_seq, prev_hash, previous = 0, GENESIS, ""
        # One time for the whole batch, never before the last one recorded: the
        # chain's recorded_at never decreases, so a period is a range of seqs.
        recorded_at = max(self._now(), previous)
        first_seq = prev_seq + 1
        rows: list[tuple[Any, ...]] = []
        subjects: list[tuple[str, int]] = []
        for seq, new in enumerate(records, start=first_seq):
            data = finalise(new, seq, recorded_at)
            digest = chain_hash(prev_hash, data)
            # the query columns: the same values the data was serialised from
            columns = (getattr(new, name) for name in _RECORD_COLUMNS)
            rows.append((seq, data, prev_hash, digest, *columns, recorded_at))
            subjects.extend((subject, seq) for subject in new.subjects)
            prev_hash = digest
        last_seq = first_seq + len(records) - 1
        try:
            db.executemany(_INSERT, rows)
        except sqlite3.IntegrityError as exc:
            if "audit_records.seq" in str(exc):
                raise AuditStoreError(
                    f"the log holds a record {first_seq} or later that its signed head "
                    f"(record {prev_seq}) does not cover: it was added without the "
                    "signing key; verify the log"
                ) from exc
            raise AuditStoreError("a record of the batch has an id already in the log") from exc
        db.executemany(
            "INSERT OR IGNORE INTO audit_subjects (subject, seq) VALUES (?, ?)", subjects
        )
        point = self._put_signed(db, "head", last_seq, prev_hash, recorded_at)
        every = self._checkpoint_every
        if last_seq // every > prev_seq // every:
            db.execute(
                "INSERT INTO audit_checkpoints (seq, hash, signed_at, signer, signature) "
                "VALUES (?, ?, ?, ?, ?)",
                point,
            )
        return list(range(first_seq, last_seq + 1))

    # -- reading -------------------------------------------------------------------------------

    async def head(self) -> SignedPoint | None:
        return await self._run(self._read_head)

    async def anchor(self) -> SignedPoint | None:
        return await self._run(self._read_anchor)

    async def get(self, record_id: str) -> StoredRecord | None:
        def get(db: sqlite3.Connection) -> StoredRecord | None:
            row = db.execute(_RECORD + " WHERE id = ?", (record_id,)).fetchone()
            return None if row is None else StoredRecord.from_row(row)

        return await self._run(get)

    async def query(
        self, query: AuditQuery, *, limit: int, before_seq: int | None = None
    ) -> list[StoredRecord]:
        if limit < 1:
            return []
        sql, params = _query_sql(query, before_seq)

        def select(db: sqlite3.Connection) -> list[StoredRecord]:
            return [StoredRecord.from_row(row) for row in db.execute(sql, (*params, limit))]

        return await self._run(select)

    async def stats(self, query: AuditQuery) -> list[StatRow]:
        where, params = _where(query)
        sql = _STATS + where + " ORDER BY service, operation"

        def select(db: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return db.execute(sql, params).fetchall()

        # (service, operation) -> [calls, errors], durations
        groups: dict[tuple[str | None, str | None], tuple[list[int], list[float]]] = {}
        for service, operation, error, duration in await self._run(select):
            counts, durations = groups.setdefault((service, operation), ([0, 0], []))
            counts[0] += 1
            counts[1] += 1 if error else 0
            if duration is not None:
                durations.append(float(duration))
        rows = []
        for (service, operation), (counts, durations) in groups.items():
            durations.sort()
            rows.append(
                StatRow(
                    service=service,
                    operation=operation,
                    calls=counts[0],
                    errors=counts[1],
                    p50_ms=_nearest_rank(durations, 50),
                    p95_ms=_nearest_rank(durations, 95),
                    p99_ms=_nearest_rank(durations, 99),
                )
            )
        return rows

    async def seq_range(self, since: str | None, until: str | None) -> tuple[int, int] | None:
        low = since if since is not None else ""
        # Every ISO time sorts before "~": an open end.
        high = until if until is not None else "~"

        def select(db: sqlite3.Connection) -> tuple[int, int] | None:
            first = db.execute(
                "SELECT seq FROM audit_records WHERE recorded_at >= ? AND recorded_at < ? "
                "ORDER BY recorded_at, seq LIMIT 1",
                (low, high),
            ).fetchone()
            if first is None:
                return None
            last = db.execute(
                "SELECT seq FROM audit_records WHERE recorded_at >= ? AND recorded_at < ? "
                "ORDER BY recorded_at DESC, seq DESC LIMIT 1",
                (low, high),
            ).fetchone()
            return int(first[0]), int(last[0])

        return await self._snapshot(select)

    # -- long reads: verify and export ---------------------------------------------------------

    async def verify(
        self,
        *,
        trusted: frozenset[str],
        progress: Progress | None = None,
        citizen_index: bool = False,
        workers: int = 1,
    ) -> VerifyReport:
        """Check the whole log in one snapshot (see :class:`ChainVerifier`).

        ``citizen_index``: also check that the citizen index (``audit_subjects``) holds for each
        record exactly the blind indexes its hashed data names, and nothing for records that
        are not there: an entry removed hides an exchange from a search for that citizen
        without breaking the chain. It reads the index beside the records and costs some 15%
        of verify's throughput, hence not (yet) the default.

        ``workers``: up to this many processes, each checking a range of the chain that starts
        at a signed checkpoint (so a range is anchored by a signature, not by the stored hash
        before it) and holding at least :data:`PARALLEL_MIN_RECORDS` records; the report is
        the one a single pass would give (:func:`combine_ranges`). Each range is read in a
        snapshot of its own: a purge that runs meanwhile makes the call raise
        :class:`AuditStoreError` rather than report its records as deleted."""
        if workers > 1 and self.path != ":memory:":
            plan = await self._snapshot(
                lambda db: _plan_ranges(db, self.path, workers, trusted, citizen_index)
            )
            if plan is not None:
                return await self._verify_ranges(plan, progress, citizen_index, workers)

        def verify(db: sqlite3.Connection) -> VerifyReport:
            anchor = self._read_anchor(db)
            checkpoints = self._read_checkpoints(db)
            head = self._read_head(db)
            (total,) = db.execute("SELECT count(*) FROM audit_records").fetchone()
            verifier = ChainVerifier(anchor=anchor, checkpoints=checkpoints, trusted=trusted)
            done = 0

            def advance(count: int) -> None:
                nonlocal done
                done += count
                if progress is not None:
                    progress(min(done, total), total)

            _feed(db, verifier, db.execute(_RECORD + " ORDER BY seq"), citizen_index, advance)
            if citizen_index and verifier.problem is None:
                stray = _stray_problem(db, verifier.first_seq, verifier.last_seq)
                if stray is not None:
                    verifier.index_problem(stray)
            return verifier.finish(head)

        return await self._snapshot(verify)

    async def _verify_ranges(
        self,
        plan: _RangePlan,
        progress: Progress | None,
        citizen_index: bool,
        workers: int,
    ) -> VerifyReport:
        jobs = plan.jobs

        def run() -> list[RangeOutcome]:
            context = multiprocessing.get_context("spawn")  # the gateway's threads: never fork
            done = 0
            with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context) as pool:
                futures = {pool.submit(_verify_range, job): n for n, job in enumerate(jobs)}
                outcomes: dict[int, RangeOutcome] = {}
                for future in as_completed(futures):
                    n = futures[future]
                    if future.cancelled():
                        continue
                    outcome = outcomes[n] = future.result()
                    done += jobs[n].records
                    if progress is not None:
                        progress(min(done, plan.total), plan.total)
                    if outcome.stopped:  # a single pass would stop here
                        for later, m in futures.items():
                            if m > n:
                                later.cancel()
            upto = min((n for n, o in outcomes.items() if o.stopped), default=len(jobs) - 1)
            return [outcomes[n] for n in range(upto + 1)]

        outcomes = await asyncio.to_thread(run)

        def combine(db: sqlite3.Connection) -> VerifyReport:
            if self._read_anchor(db) != plan.anchor:
                raise AuditStoreError("the log was purged while it was verified: verify it again")
            stray = (lambda first, last: _stray_problem(db, first, last)) if citizen_index else None
            return combine_ranges(outcomes, plan.head, stray)

        return await self._snapshot(combine)

    async def export(
        self,
        first_seq: int,
        last_seq: int,
        write: Callable[[StoredRecord], None],
        progress: Progress | None = None,
    ) -> list[SignedPoint]:
        """Records ``first_seq``..``last_seq`` to ``write`` (in the worker thread), in order and
        in one snapshot; returns the checkpoints signed in that range, then the head if it is in
        it (a head that is also a checkpoint appears as both)."""

        def export(db: sqlite3.Connection) -> list[SignedPoint]:
            points = list(self._read_checkpoints(db, first_seq, last_seq).values())
            head = self._read_head(db)
            (total,) = db.execute(
                "SELECT count(*) FROM audit_records WHERE seq >= ? AND seq <= ?",
                (first_seq, last_seq),
            ).fetchone()
            cursor = db.execute(
                _RECORD + " WHERE seq >= ? AND seq <= ? ORDER BY seq", (first_seq, last_seq)
            )
            done = 0
            while rows := cursor.fetchmany(CHUNK):
                for row in rows:
                    write(StoredRecord.from_row(row))
                done += len(rows)
                if progress is not None:
                    progress(done, total)
            cursor.close()
            if head is not None and first_seq <= head.seq <= last_seq:
                points.append(head)
            return points

        return await self._snapshot(export)

    # -- exports and purge ---------------------------------------------------------------------

    async def add_export(self, entry: ExportEntry) -> None:
        def insert(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO audit_exports (first_seq, last_seq, sha256, path, exported_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (entry.first_seq, entry.last_seq, entry.sha256, entry.path, entry.exported_at),
            )

        await self._write(insert)

    async def exports(self) -> list[ExportEntry]:
        def select(db: sqlite3.Connection) -> list[ExportEntry]:
            rows = db.execute(
                "SELECT first_seq, last_seq, sha256, path, exported_at FROM audit_exports "
                "ORDER BY first_seq, last_seq, rowid"
            ).fetchall()
            return [ExportEntry(*row) for row in rows]

        return await self._run(select)

    async def purge(self, before: str) -> PurgeResult:
        """Remove the records older than ``before`` (see :class:`AuditStore`), at most
        :data:`PURGE_CHUNK` per transaction so that appends are never held up for long; each
        transaction leaves a signed anchor at the last record it removed, so the log verifies
        between them."""

        def oldest(db: sqlite3.Connection) -> tuple[int, int] | None:
            """(first, last) records to remove, once checked to be in exports."""
            first, last = db.execute(
                "SELECT min(seq), (SELECT max(seq) FROM audit_records WHERE recorded_at < ?) "
                "FROM audit_records",
                (before,),
            ).fetchone()
            if last is None:
                return None
            ranges = db.execute("SELECT first_seq, last_seq FROM audit_exports").fetchall()
            missing = _first_uncovered(first, last, ranges)
            if missing is not None:
                raise AuditStoreError(
                    f"record {missing} is older than {before} but in no export: export "
                    f"records {first} to {last} before purging them"
                )
            return int(first), int(last)

        def remove(db: sqlite3.Connection, last: int) -> tuple[int, SignedPoint | None, bool]:
            """Remove the next chunk up to ``last``: (records removed, anchor, all done)."""
            (first,) = db.execute("SELECT min(seq) FROM audit_records").fetchone()
            if first is None or first > last:
                return 0, self._read_anchor(db), True
            upper = min(last, first + PURGE_CHUNK - 1)
            row = db.execute(
                "SELECT CAST(hash AS TEXT) FROM audit_records WHERE seq = ?", (upper,)
            ).fetchone()
            if row is None:  # a gap where the chunk ends: end it at the record before
                (upper,) = db.execute(
                    "SELECT max(seq) FROM audit_records WHERE seq <= ?", (upper,)
                ).fetchone()
                row = db.execute(
                    "SELECT CAST(hash AS TEXT) FROM audit_records WHERE seq = ?", (upper,)
                ).fetchone()
            (upper_hash,) = row
            # The chain keeps starting right after the anchor: a prefix is removed.
            removed = db.execute("DELETE FROM audit_records WHERE seq <= ?", (upper,)).rowcount
            db.execute("DELETE FROM audit_subjects WHERE seq <= ?", (upper,))
            point = self._put_signed(db, "anchor", upper, upper_hash, self._now())
            return removed, _point(point, "anchor"), upper >= last

        span = await self._write(oldest)
        if span is None:
            return PurgeResult(purged=0, anchor=await self.anchor())
        purged = 0
        while True:
            removed, anchor, done = await self._write(lambda db: remove(db, span[1]))
            purged += removed
            if done:
                return PurgeResult(purged=purged, anchor=anchor)

    # -- auditors ------------------------------------------------------------------------------

    async def add_auditor(self, auditor: Auditor) -> None:
        created_at = auditor.created_at or self._now()

        def insert(db: sqlite3.Connection) -> None:
            try:
                db.execute(
                    _INSERT_AUDITOR,
                    (
                        auditor.id,
                        auditor.name,
                        auditor.key_hash,
                        int(auditor.can_read_bodies),
                        int(auditor.active),
                        created_at,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise AuditStoreError(f"there is already an auditor {auditor.id!r}") from exc

        await self._write(insert)

    async def get_auditor(self, auditor_id: str) -> Auditor | None:
        def select(db: sqlite3.Connection) -> Auditor | None:
            row = db.execute(_SELECT_AUDITOR + " WHERE id = ?", (auditor_id,)).fetchone()
            return None if row is None else _auditor(row)

        return await self._run(select)

    async def list_auditors(self) -> list[Auditor]:
        def select(db: sqlite3.Connection) -> list[Auditor]:
            rows = db.execute(_SELECT_AUDITOR + " ORDER BY id").fetchall()
            return [_auditor(row) for row in rows]

        return await self._run(select)

    async def update_auditor(
        self, auditor_id: str, *, active: bool | None = None, can_read_bodies: bool | None = None
    ) -> Auditor:
        def update(db: sqlite3.Connection) -> Auditor:
            db.execute(
                "UPDATE auditors SET active = coalesce(?, active), "
                "can_read_bodies = coalesce(?, can_read_bodies) WHERE id = ?",
                (
                    None if active is None else int(active),
                    None if can_read_bodies is None else int(can_read_bodies),
                    auditor_id,
                ),
            )
            row = db.execute(_SELECT_AUDITOR + " WHERE id = ?", (auditor_id,)).fetchone()
            if row is None:
                raise AuditStoreError(f"there is no auditor {auditor_id!r}")
            return _auditor(row)

        return await self._write(update)
