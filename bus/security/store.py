"""Where consumers, their rights, limits, secrets and API keys are kept.

:class:`ConsumerStore` is the interface; :class:`SqliteConsumerStore` the embedded default (one
SQLite file, WAL, safe for several gateway processes on one machine). Nothing here knows about
hashing or tokens: the store keeps hashes it is given (see :mod:`bus.security.credentials`).
The interface uses no SQLite-only notions, so a PostgreSQL store can serve it later.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

from bus.sqlite import SqliteFile

__all__ = [
    "ApiKeyRecord",
    "ConsumerRecord",
    "ConsumerStore",
    "Limits",
    "SqliteConsumerStore",
    "StoreError",
    "covers",
]

Status = Literal["active", "suspended"]

Rights = frozenset[tuple[str, str]]


def covers(rights: Rights, service: str, operation: str) -> bool:
    """Whether ``rights`` allow ``service/operation``: the pair itself, or ``service/*``."""
    return (service, operation) in rights or (service, "*") in rights


class StoreError(Exception):
    """A store operation cannot be done (unknown consumer, duplicate id...); safe to show."""


@dataclass(frozen=True, slots=True)
class Limits:
    """A consumer's limits: a request rate with a burst, and a daily quota per operation."""

    rate_per_second: float = 20.0
    burst: int = 40
    daily_quota: int | None = None  # per operation; None: no quota
    quotas: dict[str, int] = field(default_factory=dict)  # "service/operation" -> daily quota

    def quota_for(self, service: str, operation: str) -> int | None:
        return self.quotas.get(f"{service}/{operation}", self.daily_quota)


@dataclass(frozen=True, slots=True)
class ConsumerRecord:
    """A provincial system allowed to call the bus."""

    id: str
    name: str
    agency: str | None = None
    status: Status = "active"
    rights: frozenset[tuple[str, str]] = frozenset()  # (service, operation); operation "*": all
    limits: Limits = field(default_factory=Limits)
    created_at: str = ""

    @property
    def active(self) -> bool:
        return self.status == "active"

    def may_call(self, service: str, operation: str) -> bool:
        return covers(self.rights, service, operation)


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    key_id: str
    consumer_id: str
    key_hash: str
    created_at: str
    revoked_at: str | None = None


class ConsumerStore(Protocol):
    async def add(self, consumer: ConsumerRecord, secret_hash: str | None) -> None: ...
    async def get(self, consumer_id: str) -> ConsumerRecord | None: ...
    async def list_all(self) -> list[ConsumerRecord]: ...
    async def update(self, consumer: ConsumerRecord) -> None: ...
    async def secret_hash(self, consumer_id: str) -> str | None: ...
    async def set_secret_hash(self, consumer_id: str, secret_hash: str) -> None: ...
    async def add_key(self, key: ApiKeyRecord) -> None: ...
    async def get_key(self, key_id: str) -> ApiKeyRecord | None: ...
    async def keys_of(self, consumer_id: str) -> list[ApiKeyRecord]: ...
    async def revoke_key(self, key_id: str, when: str) -> None: ...
    async def bus_secret(self, name: str, make: Callable[[], str]) -> str: ...
    async def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS consumers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    agency TEXT,
    status TEXT NOT NULL,
    limits TEXT NOT NULL,
    secret_hash TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rights (
    consumer_id TEXT NOT NULL REFERENCES consumers(id),
    service TEXT NOT NULL,
    operation TEXT NOT NULL,
    PRIMARY KEY (consumer_id, service, operation)
);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    consumer_id TEXT NOT NULL REFERENCES consumers(id),
    key_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS bus_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _limits_json(limits: Limits) -> str:
    return json.dumps(
        {
            "rate_per_second": limits.rate_per_second,
            "burst": limits.burst,
            "daily_quota": limits.daily_quota,
            "quotas": limits.quotas,
        }
    )


class SqliteConsumerStore(SqliteFile):
    """The embedded store: one SQLite file; calls run in a worker thread, one at a time."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(path, _SCHEMA)

    def _read(self, db: sqlite3.Connection, consumer_id: str) -> ConsumerRecord | None:
        row = db.execute(
            "SELECT id, name, agency, status, limits, created_at FROM consumers WHERE id = ?",
            (consumer_id,),
        ).fetchone()
        if row is None:
            return None
        rights = db.execute(
            "SELECT service, operation FROM rights WHERE consumer_id = ?", (consumer_id,)
        ).fetchall()
        raw = json.loads(row[4])
        return ConsumerRecord(
            id=row[0],
            name=row[1],
            agency=row[2],
            status=row[3],
            rights=frozenset((s, o) for s, o in rights),
            limits=Limits(
                rate_per_second=float(raw["rate_per_second"]),
                burst=int(raw["burst"]),
                daily_quota=raw.get("daily_quota"),
                quotas={str(k): int(v) for k, v in (raw.get("quotas") or {}).items()},
            ),
            created_at=row[5],
        )

    def _write_rights(self, db: sqlite3.Connection, consumer: ConsumerRecord) -> None:
        db.execute("DELETE FROM rights WHERE consumer_id = ?", (consumer.id,))
        db.executemany(
            "INSERT INTO rights (consumer_id, service, operation) VALUES (?, ?, ?)",
            [(consumer.id, s, o) for s, o in sorted(consumer.rights)],
        )

    async def add(self, consumer: ConsumerRecord, secret_hash: str | None) -> None:
        record = consumer if consumer.created_at else replace(consumer, created_at=_now())

        def add(db: sqlite3.Connection) -> None:
            try:
                db.execute(
                    "INSERT INTO consumers (id, name, agency, status, limits, secret_hash, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.id,
                        record.name,
                        record.agency,
                        record.status,
                        _limits_json(record.limits),
                        secret_hash,
                        record.created_at,
                    ),
                )
                self._write_rights(db, record)
            except sqlite3.IntegrityError as exc:
                raise StoreError(f"a consumer with id {record.id!r} already exists") from exc

        await self._write(add)

    async def get(self, consumer_id: str) -> ConsumerRecord | None:
        return await self._run(lambda db: self._read(db, consumer_id))

    async def list_all(self) -> list[ConsumerRecord]:
        def read_all(db: sqlite3.Connection) -> list[ConsumerRecord]:
            ids = [r[0] for r in db.execute("SELECT id FROM consumers ORDER BY id")]
            return [c for c in (self._read(db, i) for i in ids) if c is not None]

        return await self._run(read_all)

    async def update(self, consumer: ConsumerRecord) -> None:
        def update(db: sqlite3.Connection) -> None:
            changed = db.execute(
                "UPDATE consumers SET name = ?, agency = ?, status = ?, limits = ? WHERE id = ?",
                (
                    consumer.name,
                    consumer.agency,
                    consumer.status,
                    _limits_json(consumer.limits),
                    consumer.id,
                ),
            ).rowcount
            if not changed:
                raise StoreError(f"no consumer with id {consumer.id!r}")
            self._write_rights(db, consumer)

        await self._write(update)

    async def secret_hash(self, consumer_id: str) -> str | None:
        def read(db: sqlite3.Connection) -> str | None:
            row = db.execute(
                "SELECT secret_hash FROM consumers WHERE id = ?", (consumer_id,)
            ).fetchone()
            return None if row is None else row[0]

        return await self._run(read)

    async def set_secret_hash(self, consumer_id: str, secret_hash: str) -> None:
        def write(db: sqlite3.Connection) -> None:
            changed = db.execute(
                "UPDATE consumers SET secret_hash = ? WHERE id = ?", (secret_hash, consumer_id)
            ).rowcount
            if not changed:
                raise StoreError(f"no consumer with id {consumer_id!r}")

        await self._write(write)

    async def add_key(self, key: ApiKeyRecord) -> None:
        def write(db: sqlite3.Connection) -> None:
            try:
                db.execute(
                    "INSERT INTO api_keys (key_id, consumer_id, key_hash, created_at, revoked_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (key.key_id, key.consumer_id, key.key_hash, key.created_at, key.revoked_at),
                )
            except sqlite3.IntegrityError as exc:
                raise StoreError(f"cannot add key for consumer {key.consumer_id!r}") from exc

        await self._write(write)

    async def get_key(self, key_id: str) -> ApiKeyRecord | None:
        def read(db: sqlite3.Connection) -> ApiKeyRecord | None:
            row = db.execute(
                "SELECT key_id, consumer_id, key_hash, created_at, revoked_at FROM api_keys "
                "WHERE key_id = ?",
                (key_id,),
            ).fetchone()
            return None if row is None else ApiKeyRecord(*row)

        return await self._run(read)

    async def keys_of(self, consumer_id: str) -> list[ApiKeyRecord]:
        def read(db: sqlite3.Connection) -> list[ApiKeyRecord]:
            rows = db.execute(
                "SELECT key_id, consumer_id, key_hash, created_at, revoked_at FROM api_keys "
                "WHERE consumer_id = ? ORDER BY created_at, key_id",
                (consumer_id,),
            ).fetchall()
            return [ApiKeyRecord(*row) for row in rows]

        return await self._run(read)

    async def revoke_key(self, key_id: str, when: str) -> None:
        def write(db: sqlite3.Connection) -> None:
            changed = db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                (when, key_id),
            ).rowcount
            if not changed:
                raise StoreError(f"no active API key with id {key_id!r}")

        await self._write(write)

    async def bus_secret(self, name: str, make: Callable[[], str]) -> str:
        """The bus's own secret ``name`` (e.g. the token signing key), created once."""

        def read_or_create(db: sqlite3.Connection) -> str:
            db.execute(
                "INSERT OR IGNORE INTO bus_secrets (name, value) VALUES (?, ?)", (name, make())
            )
            row = db.execute("SELECT value FROM bus_secrets WHERE name = ?", (name,)).fetchone()
            return str(row[0])

        return await self._write(read_or_create)
