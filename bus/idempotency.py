"""Idempotency keys: a retried call is served once, and its reply is replayed.

A consumer that sends a write may not learn whether it was done (the connection broke, the bus
timed out). With an ``Idempotency-Key`` header it can send the same request again without
doing the work twice. The semantics follow the IETF draft "The Idempotency-Key HTTP Header
Field" (draft-ietf-httpapi-idempotency-key-header) and Stripe's behaviour:

* **First use** of a key *claims* it: the call is served and its reply stored under the key.
* **Same key, same request** (same fingerprint, see :func:`fingerprint`): the stored reply
  (status, body, the few headers worth replaying such as ``Location``) is returned without
  calling the upstream again.
* **Same key, different request**: refused, ``client.idempotency_key_reused`` (422). A key
  names one request; a client that changes the request must use a new key.
* **Same key while the first call is still being served**: refused,
  ``client.idempotency_in_progress`` (409, retryable, with ``Retry-After``).
* **Retryable outcomes are not stored**: when the call failed in a way the client may retry
  (upstream unavailable, timeout...), the pipeline :meth:`~IdempotencyStore.release`\\ s the
  key so the retry with the same key is served afresh. Final outcomes, errors included, are
  stored and replayed, as Stripe does.
* **Keys expire** ``ttl`` seconds after their first use (Stripe: 24 hours); an expired key may
  be used again, for any request. :meth:`~IdempotencyStore.purge_expired` removes them.

Keys are scoped: ``scope`` is the consumer id, so two consumers' keys never collide and no
consumer can replay another's reply.

A claim carries a lock (``lock_seconds``, which should exceed the longest a call may take). If
the process serving the first call dies, its claim is never completed nor released; once the
lock has passed, a retry with the same key *takes the claim over* and serves the call again.
A key never expires while it is locked: ``expires_at`` is at least ``locked_until``.

:class:`IdempotencyStore` is the interface, with no SQLite-only notions, so a PostgreSQL
store can serve it later; :class:`SqliteIdempotencyStore` is the embedded default. Its
:meth:`~SqliteIdempotencyStore.begin` reads and writes in one ``BEGIN IMMEDIATE``
transaction, so two gateway processes sharing the file can never both claim a key. The file is
opened with ``synchronous=FULL``: a stored reply or a claim survives a power cut, since losing
one would let a retried write reach the upstream twice.

The store takes the time (``now``, epoch seconds) from its caller, so the pipeline's clock and
the tests decide it.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from bus.errors import BadRequest, FieldError, IdempotencyInProgress, IdempotencyKeyReused
from bus.sqlite import SqliteFile

__all__ = [
    "HEADER",
    "MAX_KEY_LENGTH",
    "Begin",
    "Claimed",
    "IdempotencyStore",
    "Replay",
    "SqliteIdempotencyStore",
    "StoredReply",
    "check_key",
    "fingerprint",
]

#: The request header that carries the key.
HEADER = "Idempotency-Key"

#: The longest key accepted, in characters (Stripe's limit).
MAX_KEY_LENGTH = 255

_KEY_MESSAGE = (
    f"The {HEADER} header must be 1 to {MAX_KEY_LENGTH} visible ASCII characters "
    "(no spaces); a random UUID is a good key."
)


def _key_error(reason: str) -> BadRequest:
    return BadRequest(
        _KEY_MESSAGE,
        field_errors=[FieldError(field=HEADER, reason=reason, type="idempotency_key")],
    )


def check_key(value: str) -> str:
    """``value`` if it is a usable key: 1 to 255 characters, each visible ASCII (0x21-0x7E).

    The value is taken verbatim (the draft's quoted form ``"..."`` is not unwrapped; the quotes
    are part of the key). Raises :class:`~bus.errors.BadRequest` otherwise; the key is never
    echoed, since a client may have put something private in it.
    """
    if not value:
        raise _key_error("is empty")
    if len(value) > MAX_KEY_LENGTH:
        raise _key_error(f"is longer than {MAX_KEY_LENGTH} characters")
    if not all("\x21" <= ch <= "\x7e" for ch in value):
        raise _key_error("contains a character that is not visible ASCII (0x21-0x7E)")
    return value


_FINGERPRINT_DOMAIN = b"lgsp-bus idempotency fingerprint v1"


def fingerprint(service: str, operation: str, payload_json: bytes) -> str:
    """The SHA-256 (hex) of a request: ``service``, ``operation`` and the canonical payload.

    Each part is preceded by its length (8 bytes, big-endian), so no two different triples give
    the same bytes to hash (``("a", "bc", b"")`` and ``("ab", "c", b"")`` differ). The caller
    passes the payload in canonical form (validated and re-serialised), so that two requests
    that mean the same thing have the same fingerprint.
    """
    digest = hashlib.sha256(_FINGERPRINT_DOMAIN)
    for part in (service.encode("utf-8"), operation.encode("utf-8"), payload_json):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class StoredReply:
    """A reply kept for replay."""

    status: int
    body: bytes
    #: Only the headers worth replaying (e.g. ``Location``); may be empty.
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Claimed:
    """The caller owns the key now: it serves the call, then must :meth:`~IdempotencyStore.
    complete` (final outcome) or :meth:`~IdempotencyStore.release` (retryable outcome)."""


@dataclass(frozen=True, slots=True)
class Replay:
    """The call was already served: answer with ``reply`` and do not call the upstream."""

    reply: StoredReply


#: What :meth:`IdempotencyStore.begin` returns; a mismatch or a call in progress is raised.
Begin = Claimed | Replay


class IdempotencyStore(Protocol):
    """Where idempotency keys and their stored replies are kept."""

    async def begin(
        self,
        scope: str,
        key: str,
        fingerprint: str,
        now: float,
        ttl: float,
        lock_seconds: float,
    ) -> Claimed | Replay:
        """Claim ``key`` of ``scope`` for the request ``fingerprint``, or find its reply.

        Atomic: of concurrent callers (in any process) at most one gets :class:`Claimed`.
        Raises :class:`~bus.errors.IdempotencyKeyReused` if the key was used with another
        fingerprint, :class:`~bus.errors.IdempotencyInProgress` if another caller holds it.
        """
        ...

    async def complete(self, scope: str, key: str, reply: StoredReply, now: float) -> None:
        """Store the final ``reply`` of a claimed key; later begins replay it."""
        ...

    async def release(self, scope: str, key: str) -> None:
        """Give up a claim (the outcome is retryable): the key may be used afresh."""
        ...

    async def purge_expired(self, now: float) -> int:
        """Remove expired keys; returns how many."""
        ...

    async def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency_keys (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('in_progress', 'done')),
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    locked_until REAL NOT NULL,
    completed_at REAL,
    status INTEGER,
    body BLOB,
    headers TEXT,
    PRIMARY KEY (scope, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_expires_at ON idempotency_keys (expires_at);
"""


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _check_durations(ttl: float, lock_seconds: float) -> None:
    for name, value in (("ttl", ttl), ("lock_seconds", lock_seconds)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")


class SqliteIdempotencyStore(SqliteFile):
    """The embedded store: one SQLite file (WAL, ``synchronous=FULL``), safe for several
    gateway processes on one machine; calls run in a worker thread, one at a time."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(path, _SCHEMA, synchronous="FULL")

    async def begin(
        self,
        scope: str,
        key: str,
        fingerprint: str,
        now: float,
        ttl: float,
        lock_seconds: float,
    ) -> Claimed | Replay:
        _check_durations(ttl, lock_seconds)
        locked_until = now + lock_seconds
        expires_at = max(now + ttl, locked_until)

        def begin(db: sqlite3.Connection) -> Claimed | Replay:
            row = db.execute(
                "SELECT fingerprint, state, created_at, expires_at, locked_until, status, "
                "body, headers FROM idempotency_keys WHERE scope = ? AND key = ?",
                (scope, key),
            ).fetchone()
            if row is None or row[3] <= now:
                db.execute(
                    "INSERT OR REPLACE INTO idempotency_keys (scope, key, fingerprint, "
                    "state, created_at, expires_at, locked_until) "
                    "VALUES (?, ?, ?, 'in_progress', ?, ?, ?)",
                    (scope, key, fingerprint, now, expires_at, locked_until),
                )
                return Claimed()
            stored_fp, state, created_at, row_expires, row_locked, status, body, headers = row
            if stored_fp != fingerprint:
                raise IdempotencyKeyReused(
                    f"This {HEADER} was first used with a different request on "
                    f"{_iso(created_at)}; use a new key for a new request."
                )
            if state == "done":
                return Replay(
                    StoredReply(
                        status=int(status),
                        body=bytes(body),
                        headers={str(k): str(v) for k, v in json.loads(headers).items()},
                    )
                )
            if row_locked > now:
                wait = max(1, math.ceil(row_locked - now))
                raise IdempotencyInProgress(
                    f"A call with this {HEADER} is still being served; retry in {wait} seconds.",
                    retry_after=wait,
                )
            # The first caller's lock has passed (its process died): take the claim over.
            db.execute(
                "UPDATE idempotency_keys SET locked_until = ?, expires_at = ? "
                "WHERE scope = ? AND key = ?",
                (locked_until, max(row_expires, locked_until), scope, key),
            )
            return Claimed()

        return await self._write(begin)

    async def complete(self, scope: str, key: str, reply: StoredReply, now: float) -> None:
        """Store ``reply`` for a key in progress. A key already done keeps its first reply (the
        one a client may have seen); a key released, expired and purged is left alone."""
        headers = json.dumps(reply.headers, sort_keys=True)

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE idempotency_keys SET state = 'done', completed_at = ?, status = ?, "
                "body = ?, headers = ? WHERE scope = ? AND key = ? AND state = 'in_progress'",
                (now, reply.status, reply.body, headers, scope, key),
            )

        await self._write(write)

    async def release(self, scope: str, key: str) -> None:
        """Delete a key in progress; a key already done keeps its stored reply."""

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "DELETE FROM idempotency_keys "
                "WHERE scope = ? AND key = ? AND state = 'in_progress'",
                (scope, key),
            )

        await self._write(write)

    async def purge_expired(self, now: float) -> int:
        def write(db: sqlite3.Connection) -> int:
            return db.execute("DELETE FROM idempotency_keys WHERE expires_at <= ?", (now,)).rowcount

        return await self._write(write)
