"""The durable queue of store-and-forward deliveries (``mode: async`` operations).

:class:`DeliveryStore` is the interface; :class:`SqliteDeliveryStore` the embedded default (one
SQLite file in WAL mode with ``synchronous=FULL``: a queued message survives a power cut). The
interface uses no SQLite-only notion, so a PostgreSQL store can serve it later. The store never
reads the clock: every time is an epoch float given by the caller.

States
------
::

    enqueue ──> queued ──claim──> in_flight ──complete──> delivered
                  ^  ^               │
                  │  └──fail (retry)─┤ release (given back unattempted, no attempt counted)
                  │  └───────────────┤ lease expired, attempts left (a "lost" attempt)
                  │                  │
                retry             fail (no retry time, or the round's attempts used up)
             replay_dead             │ lease expired on the last attempt
                  │                  v
                  └──────────────── dead ──discard──> discarded   (queued ──discard──> too)

``delivered`` and ``discarded`` are final. ``attempts`` counts every attempt ever made (lost ones
included); ``round_attempts`` those since the delivery was queued or last retried by an
operator, and a round ends in ``dead`` when it reaches ``max_attempts``. Every attempt leaves an
:class:`Attempt` row: ``ok``, ``error`` or ``lost``.

Claim and lease
---------------
A worker calls :meth:`~DeliveryStore.claim` with its owner id (unique per worker process). In one
``BEGIN IMMEDIATE`` transaction, so that claimers in several processes sharing the file are
serialised, the store first recovers expired leases, then takes up to ``limit`` claimable rows,
oldest due first (``next_attempt_at``, then ``seq``), and marks them ``in_flight`` with
``lease_owner = owner`` and ``lease_until = now + lease_seconds``. No row is ever handed to two
workers whose leases are both valid.

:meth:`~DeliveryStore.complete`, :meth:`~DeliveryStore.fail` and :meth:`~DeliveryStore.release`
are fenced: they change the row only if it is still ``in_flight`` under the caller's lease, and
return ``False`` (changing nothing) otherwise. A worker whose lease ran out and was taken over
can therefore not overwrite the newer attempt. A lease that ran out but was not yet taken over
is still honoured: the work was done, so the result is kept.

Ordering rule
-------------
Deliveries sharing an ``order_key`` (e.g. one dossier) are delivered strictly in ``seq`` order: a
row with an order key is claimable only when no row with the same key and a smaller ``seq`` is
``queued``, ``in_flight`` or ``dead``. A dead head therefore blocks its key until an operator
retries or discards it; a delivered or discarded one does not. Rows without a key are never
held back.

Crash recovery
--------------
A worker may die at any moment (SIGKILL, power cut). Every change is one committed transaction,
so a row is always in exactly one state. A dead worker's rows stay ``in_flight`` until their
lease expires (at ``lease_until``, i.e. once ``lease_until <= now``); the next claim by any
worker then records a ``lost`` attempt for each (worker = the dead lease owner), counts it, and
puts the row back in the queue with its old due time, or in ``dead`` if that was the round's
last attempt. Nothing is lost; a message may be sent twice, and the upstream de-duplicates by
delivery id (at-least-once + de-duplication = exactly-once as the upstream sees it).

:meth:`~DeliveryStore.next_due` tells an idle worker how long it may sleep: the earliest due time
of a queued row the ordering rule lets through, or the earliest lease expiry. A row held back by
a dead head is never due on its own, so it does not make workers poll in a loop.
"""

from __future__ import annotations

import builtins
import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

from bus.sqlite import SqliteFile

__all__ = [
    "CLAIM_SQL",
    "LOST_ERROR_CODE",
    "LOST_MESSAGE",
    "STATES",
    "Attempt",
    "Delivery",
    "DeliveryStore",
    "DeliveryStoreError",
    "NewDelivery",
    "Outcome",
    "SqliteDeliveryStore",
    "State",
]

State = Literal["queued", "in_flight", "delivered", "dead", "discarded"]
Outcome = Literal["ok", "error", "lost"]

STATES: tuple[State, ...] = get_args(State)

LOST_ERROR_CODE = "delivery.worker_lost"
LOST_MESSAGE = "the worker holding the lease stopped before finishing"


class DeliveryStoreError(Exception):
    """A delivery operation cannot be done (unknown id, wrong state); safe to show."""


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A message to queue: the validated call of an ``async`` operation."""

    consumer: str
    service: str
    operation: str
    payload: bytes  # the validated canonical JSON input
    request_id: str  # of the call that queued it
    order_key: str | None  # e.g. "dvcqg:G12.34-250101-0001"; None: no ordering constraint
    max_attempts: int  # from the service's delivery policy
    #: The officer on whose behalf it was queued (X-User-Id) and the consumer's agency: each
    #: delivery attempt carries them upstream and into its exchange record.
    end_user: str | None = None
    agency: str | None = None
    #: A delivery id chosen by the caller, e.g. derived from an inbound event's identity: a
    #: second enqueue with the same id queues nothing and returns the delivery already there.
    id: str | None = None

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")


@dataclass(frozen=True, slots=True)
class Delivery:
    """A queued message and where it stands."""

    id: str  # "dlv_" + 24 lowercase hex characters
    seq: int  # global insertion order
    consumer: str
    service: str
    operation: str
    payload: bytes
    request_id: str
    order_key: str | None
    state: State
    attempts: int  # attempts made in all (lost ones included)
    round_attempts: int  # attempts since queued or since the last operator retry
    max_attempts: int
    next_attempt_at: float
    created_at: float
    updated_at: float
    delivered_at: float | None
    last_error_code: str | None
    last_error_message: str | None
    result: bytes | None  # the canonical JSON reply once delivered
    lease_owner: str | None
    lease_until: float | None
    end_user: str | None = None
    agency: str | None = None
    #: True only on the Delivery :meth:`DeliveryStore.enqueue` returns when it queued the
    #: message now (False when a caller-chosen id was already queued).
    created: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt at delivering: ``number`` counts from 1 over the delivery's whole life."""

    delivery_id: str
    number: int
    worker: str
    started_at: float
    ended_at: float  # for a lost attempt: when its lease ran out
    outcome: Outcome
    error_code: str | None
    message: str | None


class DeliveryStore(Protocol):
    async def enqueue(self, new: NewDelivery, now: float) -> Delivery: ...
    async def claim(
        self, owner: str, limit: int, now: float, lease_seconds: float
    ) -> builtins.list[Delivery]: ...
    async def complete(
        self, delivery_id: str, owner: str, started_at: float, result: bytes, now: float
    ) -> bool: ...
    async def fail(
        self,
        delivery_id: str,
        owner: str,
        started_at: float,
        error_code: str,
        message: str,
        next_attempt_at: float | None,
        now: float,
    ) -> bool: ...
    async def release(
        self, delivery_id: str, owner: str, now: float, *, next_attempt_at: float | None = None
    ) -> bool: ...
    async def get(self, delivery_id: str) -> Delivery | None: ...
    async def attempts(self, delivery_id: str) -> builtins.list[Attempt]: ...
    async def list(
        self,
        *,
        state: State | None = None,
        service: str | None = None,
        consumer: str | None = None,
        after_seq: int | None = None,
        limit: int = 100,
    ) -> builtins.list[Delivery]: ...
    async def retry(self, delivery_id: str, now: float) -> Delivery: ...
    async def replay_dead(self, now: float, service: str | None = None) -> int: ...
    async def discard(self, delivery_id: str, now: float) -> Delivery: ...
    async def counts(self) -> dict[str, int]: ...
    async def next_due(self) -> float | None: ...
    async def close(self) -> None: ...


# -- SQLite -----------------------------------------------------------------------------------
#
# Indexes: the table will hold millions of delivered rows, so no query on the worker's path may
# walk them. ``deliveries_due (state, next_attempt_at, seq)`` serves the claim (a range of the
# queued rows, already in claim order) and next_due; ``deliveries_state (state, seq)`` the
# in-flight rows, listings by state and replay_dead; the partial ``deliveries_pending_key``
# holds only pending rows with a key, for the ordering check. ``delivery_counts`` is kept by
# triggers so that counts() reads five rows instead of counting the table.

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    consumer TEXT NOT NULL,
    service TEXT NOT NULL,
    operation TEXT NOT NULL,
    payload BLOB NOT NULL,
    request_id TEXT NOT NULL,
    order_key TEXT,
    state TEXT NOT NULL
        CHECK (state IN ('queued', 'in_flight', 'delivered', 'dead', 'discarded')),
    attempts INTEGER NOT NULL,
    round_attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL CHECK (max_attempts >= 1),
    next_attempt_at REAL NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    delivered_at REAL,
    last_error_code TEXT,
    last_error_message TEXT,
    result BLOB,
    lease_owner TEXT,
    lease_until REAL,
    leased_at REAL,
    end_user TEXT,
    agency TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_attempt_at, seq);
CREATE INDEX IF NOT EXISTS deliveries_state ON deliveries (state, seq);
CREATE INDEX IF NOT EXISTS deliveries_pending_key ON deliveries (order_key, seq)
    WHERE state IN ('queued', 'in_flight', 'dead') AND order_key IS NOT NULL;

CREATE TABLE IF NOT EXISTS delivery_attempts (
    delivery_id TEXT NOT NULL REFERENCES deliveries(id),
    number INTEGER NOT NULL,
    worker TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'error', 'lost')),
    error_code TEXT,
    message TEXT,
    PRIMARY KEY (delivery_id, number)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS delivery_counts (
    state TEXT PRIMARY KEY,
    n INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO delivery_counts (state, n) VALUES
    ('queued', 0), ('in_flight', 0), ('delivered', 0), ('dead', 0), ('discarded', 0);
CREATE TRIGGER IF NOT EXISTS deliveries_count_insert AFTER INSERT ON deliveries
BEGIN
    UPDATE delivery_counts SET n = n + 1 WHERE state = NEW.state;
END;
CREATE TRIGGER IF NOT EXISTS deliveries_count_update AFTER UPDATE OF state ON deliveries
WHEN OLD.state <> NEW.state
BEGIN
    UPDATE delivery_counts SET n = n - 1 WHERE state = OLD.state;
    UPDATE delivery_counts SET n = n + 1 WHERE state = NEW.state;
END;
CREATE TRIGGER IF NOT EXISTS deliveries_count_delete AFTER DELETE ON deliveries
BEGIN
    UPDATE delivery_counts SET n = n - 1 WHERE state = OLD.state;
END;
"""

_COLUMNS = (
    "id, seq, consumer, service, operation, payload, request_id, order_key, state, attempts, "
    "round_attempts, max_attempts, next_attempt_at, created_at, updated_at, delivered_at, "
    "last_error_code, last_error_message, result, lease_owner, lease_until, end_user, agency"
)

# SQL text is only ever assembled from these module constants and fixed column names (hence the
# S608 exemptions); every value is a bound parameter.
_SELECT = "SELECT " + _COLUMNS + " FROM deliveries"  # noqa: S608

# The ordering rule, for a queued row ``d``. The IN list must stay textually the same as in the
# WHERE of deliveries_pending_key (whose ``order_key IS NOT NULL`` follows from the ``=``), or
# SQLite cannot use that partial index; test_claim_query_is_served_by_indexes checks it.
_HEAD_OF_ITS_KEY = """(
    d.order_key IS NULL
    OR NOT EXISTS (
        SELECT 1 FROM deliveries AS p
        WHERE p.order_key = d.order_key AND p.seq < d.seq
          AND p.state IN ('queued', 'in_flight', 'dead')
    )
)"""

CLAIM_SQL = f"""
SELECT {_COLUMNS} FROM deliveries AS d
WHERE d.state = 'queued' AND d.next_attempt_at <= :now AND {_HEAD_OF_ITS_KEY}
ORDER BY d.next_attempt_at, d.seq
LIMIT :limit
"""  # noqa: S608
"""The claim's candidates (parameters ``now`` and ``limit``), in claim order."""

_EXPIRED_SQL = (
    "SELECT id, attempts, round_attempts, max_attempts, lease_owner, lease_until, leased_at "
    "FROM deliveries WHERE state = 'in_flight' AND lease_until <= ?"
)

# Earliest time at which a claim can find work: the first queued row not held back by the
# ordering rule (a row behind a dead head never becomes due by itself), or the first lease to
# run out.
_NEXT_DUE_SQL = f"""
SELECT min(t) FROM (
    SELECT * FROM (
        SELECT d.next_attempt_at AS t FROM deliveries AS d
        WHERE d.state = 'queued' AND {_HEAD_OF_ITS_KEY}
        ORDER BY d.next_attempt_at, d.seq
        LIMIT 1
    )
    UNION ALL
    SELECT min(lease_until) AS t FROM deliveries WHERE state = 'in_flight'
)
"""  # noqa: S608


def _delivery(row: Sequence[Any]) -> Delivery:
    return Delivery(*row)


def _new_id() -> str:
    return "dlv_" + secrets.token_hex(12)


def _state_words(state: str) -> str:
    return state.replace("_", " ")


class SqliteDeliveryStore(SqliteFile):
    """The embedded store: one SQLite file shared by the gateway and any ``lgsp worker``."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(path, _SCHEMA, synchronous="FULL")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(deliveries)")}
        for added in ("end_user", "agency"):  # a queue file written before these existed
            if added not in columns:
                self._db.execute(f"ALTER TABLE deliveries ADD COLUMN {added} TEXT")

    # -- helpers (run on the connection, in the store's thread) -------------------------------

    @staticmethod
    def _read(db: sqlite3.Connection, delivery_id: str) -> Delivery | None:
        row = db.execute(_SELECT + " WHERE id = ?", (delivery_id,)).fetchone()
        return None if row is None else _delivery(row)

    @staticmethod
    def _record_attempt(db: sqlite3.Connection, attempt: Attempt) -> None:
        db.execute(
            "INSERT INTO delivery_attempts (delivery_id, number, worker, started_at, ended_at, "
            "outcome, error_code, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                attempt.delivery_id,
                attempt.number,
                attempt.worker,
                attempt.started_at,
                attempt.ended_at,
                attempt.outcome,
                attempt.error_code,
                attempt.message,
            ),
        )

    @staticmethod
    def _leased(
        db: sqlite3.Connection, delivery_id: str, owner: str
    ) -> tuple[int, int, int] | None:
        """(attempts, round_attempts, max_attempts) of the row if ``owner`` holds its lease."""
        row = db.execute(
            "SELECT attempts, round_attempts, max_attempts FROM deliveries "
            "WHERE id = ? AND state = 'in_flight' AND lease_owner = ?",
            (delivery_id, owner),
        ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]), int(row[2]))

    @staticmethod
    def _recover_expired(db: sqlite3.Connection, now: float) -> None:
        """Record a lost attempt for every lease that ran out, and requeue or bury its row."""
        expired = db.execute(_EXPIRED_SQL, (now,)).fetchall()
        for delivery_id, attempts, round_attempts, max_attempts, owner, until, leased in expired:
            SqliteDeliveryStore._record_attempt(
                db,
                Attempt(
                    delivery_id=delivery_id,
                    number=attempts + 1,
                    worker=owner or "",
                    started_at=until if leased is None else leased,
                    ended_at=until,
                    outcome="lost",
                    error_code=LOST_ERROR_CODE,
                    message=LOST_MESSAGE,
                ),
            )
            state: State = "dead" if round_attempts + 1 >= max_attempts else "queued"
            # A requeued row keeps its due time (at or before its claim): it stays at the front.
            db.execute(
                "UPDATE deliveries SET state = ?, attempts = attempts + 1, "
                "round_attempts = round_attempts + 1, last_error_code = ?, "
                "last_error_message = ?, lease_owner = NULL, lease_until = NULL, "
                "leased_at = NULL, updated_at = ? WHERE id = ?",
                (state, LOST_ERROR_CODE, LOST_MESSAGE, now, delivery_id),
            )

    # -- the worker's side ---------------------------------------------------------------------

    async def enqueue(self, new: NewDelivery, now: float) -> Delivery:
        def insert(db: sqlite3.Connection) -> Delivery:
            for _ in range(3):  # 96 random bits: a clash is practically impossible
                delivery_id = new.id or _new_id()
                try:
                    cursor = db.execute(
                        "INSERT INTO deliveries (id, consumer, service, operation, payload, "
                        "request_id, order_key, state, attempts, round_attempts, max_attempts, "
                        "next_attempt_at, created_at, updated_at, end_user, agency) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', 0, 0, ?, ?, ?, ?, ?, ?)",
                        (
                            delivery_id,
                            new.consumer,
                            new.service,
                            new.operation,
                            new.payload,
                            new.request_id,
                            new.order_key,
                            new.max_attempts,
                            now,
                            now,
                            now,
                            new.end_user,
                            new.agency,
                        ),
                    )
                except sqlite3.IntegrityError:
                    if new.id is None:
                        continue
                    existing = self._read(db, new.id)  # queued before: nothing is added
                    if existing is None:
                        raise
                    return existing
                assert cursor.lastrowid is not None
                return Delivery(
                    id=delivery_id,
                    seq=cursor.lastrowid,
                    consumer=new.consumer,
                    service=new.service,
                    operation=new.operation,
                    payload=new.payload,
                    request_id=new.request_id,
                    order_key=new.order_key,
                    state="queued",
                    attempts=0,
                    round_attempts=0,
                    max_attempts=new.max_attempts,
                    next_attempt_at=now,
                    created_at=now,
                    updated_at=now,
                    delivered_at=None,
                    last_error_code=None,
                    last_error_message=None,
                    result=None,
                    lease_owner=None,
                    lease_until=None,
                    end_user=new.end_user,
                    agency=new.agency,
                    created=True,
                )
            raise DeliveryStoreError("could not allocate a unique delivery id")

        return await self._write(insert)

    async def claim(
        self, owner: str, limit: int, now: float, lease_seconds: float
    ) -> builtins.list[Delivery]:
        if limit < 1:
            return []
        until = now + lease_seconds

        def claim(db: sqlite3.Connection) -> builtins.list[Delivery]:
            self._recover_expired(db, now)
            rows = db.execute(CLAIM_SQL, {"now": now, "limit": limit}).fetchall()
            taken = [_delivery(row) for row in rows]
            db.executemany(
                "UPDATE deliveries SET state = 'in_flight', lease_owner = ?, "
                "lease_until = ?, leased_at = ?, updated_at = ? WHERE seq = ?",
                [(owner, until, now, now, d.seq) for d in taken],
            )
            return [
                replace(d, state="in_flight", lease_owner=owner, lease_until=until, updated_at=now)
                for d in taken
            ]

        return await self._write(claim)

    async def complete(
        self, delivery_id: str, owner: str, started_at: float, result: bytes, now: float
    ) -> bool:
        def complete(db: sqlite3.Connection) -> bool:
            leased = self._leased(db, delivery_id, owner)
            if leased is None:
                return False
            self._record_attempt(
                db,
                Attempt(
                    delivery_id=delivery_id,
                    number=leased[0] + 1,
                    worker=owner,
                    started_at=started_at,
                    ended_at=now,
                    outcome="ok",
                    error_code=None,
                    message=None,
                ),
            )
            db.execute(
                "UPDATE deliveries SET state = 'delivered', result = ?, delivered_at = ?, "
                "attempts = attempts + 1, round_attempts = round_attempts + 1, "
                "lease_owner = NULL, lease_until = NULL, leased_at = NULL, updated_at = ? "
                "WHERE id = ?",
                (result, now, now, delivery_id),
            )
            return True

        return await self._write(complete)

    async def fail(
        self,
        delivery_id: str,
        owner: str,
        started_at: float,
        error_code: str,
        message: str,
        next_attempt_at: float | None,
        now: float,
    ) -> bool:
        def fail(db: sqlite3.Connection) -> bool:
            leased = self._leased(db, delivery_id, owner)
            if leased is None:
                return False
            attempts, round_attempts, max_attempts = leased
            self._record_attempt(
                db,
                Attempt(
                    delivery_id=delivery_id,
                    number=attempts + 1,
                    worker=owner,
                    started_at=started_at,
                    ended_at=now,
                    outcome="error",
                    error_code=error_code,
                    message=message,
                ),
            )
            dead = next_attempt_at is None or round_attempts + 1 >= max_attempts
            db.execute(
                "UPDATE deliveries SET state = ?, next_attempt_at = ?, "
                "attempts = attempts + 1, round_attempts = round_attempts + 1, "
                "last_error_code = ?, last_error_message = ?, lease_owner = NULL, "
                "lease_until = NULL, leased_at = NULL, updated_at = ? WHERE id = ?",
                (
                    "dead" if dead else "queued",
                    now if next_attempt_at is None else next_attempt_at,
                    error_code,
                    message,
                    now,
                    delivery_id,
                ),
            )
            return True

        return await self._write(fail)

    async def release(
        self, delivery_id: str, owner: str, now: float, *, next_attempt_at: float | None = None
    ) -> bool:
        """Give an unattempted delivery back to the queue (graceful shutdown, an open circuit),
        due at ``next_attempt_at`` (default: now); no attempt is counted."""
        due = now if next_attempt_at is None else next_attempt_at

        def release(db: sqlite3.Connection) -> bool:
            changed = db.execute(
                "UPDATE deliveries SET state = 'queued', next_attempt_at = ?, "
                "lease_owner = NULL, lease_until = NULL, leased_at = NULL, updated_at = ? "
                "WHERE id = ? AND state = 'in_flight' AND lease_owner = ?",
                (due, now, delivery_id, owner),
            ).rowcount
            return changed == 1

        return await self._write(release)

    async def next_due(self) -> float | None:
        def read(db: sqlite3.Connection) -> float | None:
            row = db.execute(_NEXT_DUE_SQL).fetchone()
            return None if row is None or row[0] is None else float(row[0])

        return await self._run(read)

    # -- reading ------------------------------------------------------------------------------

    async def get(self, delivery_id: str) -> Delivery | None:
        return await self._run(lambda db: self._read(db, delivery_id))

    async def attempts(self, delivery_id: str) -> builtins.list[Attempt]:
        def read(db: sqlite3.Connection) -> builtins.list[Attempt]:
            rows = db.execute(
                "SELECT delivery_id, number, worker, started_at, ended_at, outcome, error_code, "
                "message FROM delivery_attempts WHERE delivery_id = ? ORDER BY number",
                (delivery_id,),
            ).fetchall()
            return [Attempt(*row) for row in rows]

        return await self._run(read)

    async def list(
        self,
        *,
        state: State | None = None,
        service: str | None = None,
        consumer: str | None = None,
        after_seq: int | None = None,
        limit: int = 100,
    ) -> builtins.list[Delivery]:
        """Newest first; ``after_seq`` continues a listing: only rows with a smaller seq."""
        where: builtins.list[str] = []
        params: builtins.list[object] = []
        for column, value in (("state", state), ("service", service), ("consumer", consumer)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if after_seq is not None:
            where.append("seq < ?")
            params.append(after_seq)
        sql = _SELECT
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        params.append(max(limit, 0))

        def read(db: sqlite3.Connection) -> builtins.list[Delivery]:
            return [_delivery(row) for row in db.execute(sql, params).fetchall()]

        return await self._run(read)

    async def counts(self) -> dict[str, int]:
        def read(db: sqlite3.Connection) -> dict[str, int]:
            found = dict(db.execute("SELECT state, n FROM delivery_counts").fetchall())
            return {state: int(found.get(state, 0)) for state in STATES}

        return await self._run(read)

    # -- the operator's side ------------------------------------------------------------------

    async def _operator_change(
        self, delivery_id: str, verb: str, set_sql: str, params: tuple[object, ...], **changes: Any
    ) -> Delivery:
        """Apply an operator's change to one dead or queued delivery; refuse any other state."""
        update = f"UPDATE deliveries SET {set_sql} WHERE id = ?"  # noqa: S608 -- set_sql: constants below

        def change(db: sqlite3.Connection) -> Delivery:
            current = self._read(db, delivery_id)
            if current is None:
                raise DeliveryStoreError(f"no delivery with id {delivery_id!r}")
            if current.state not in ("dead", "queued"):
                raise DeliveryStoreError(
                    f"delivery {delivery_id} is {_state_words(current.state)}; "
                    f"only dead or queued deliveries can be {verb}"
                )
            db.execute(update, (*params, delivery_id))
            return replace(current, **changes)

        return await self._write(change)

    async def retry(self, delivery_id: str, now: float) -> Delivery:
        return await self._operator_change(
            delivery_id,
            "retried",
            "state = 'queued', round_attempts = 0, next_attempt_at = ?, updated_at = ?",
            (now, now),
            state="queued",
            round_attempts=0,
            next_attempt_at=now,
            updated_at=now,
        )

    async def replay_dead(self, now: float, service: str | None = None) -> int:
        sql = (
            "UPDATE deliveries SET state = 'queued', round_attempts = 0, next_attempt_at = ?, "
            "updated_at = ? WHERE state = 'dead'"
        )
        params: builtins.list[object] = [now, now]
        if service is not None:
            sql += " AND service = ?"
            params.append(service)

        def replay(db: sqlite3.Connection) -> int:
            return db.execute(sql, params).rowcount

        return await self._write(replay)

    async def discard(self, delivery_id: str, now: float) -> Delivery:
        return await self._operator_change(
            delivery_id,
            "discarded",
            "state = 'discarded', updated_at = ?",
            (now,),
            state="discarded",
            updated_at=now,
        )
