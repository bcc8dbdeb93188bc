"""The adapters' durable key-value state: what an adapter must remember between an operation
and a later inbound callback (which consumer created a payment), in the embedded store.

:class:`StateStore` is the interface, :class:`SqliteStateStore` the embedded default (a table in
the bus's store file). Each service gets its own namespace through :meth:`StateStore.scoped`,
the :class:`adapters.base.AdapterState` its adapter sees.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from adapters.base import AdapterState, Clock
from bus.sqlite import SqliteFile

__all__ = ["ScopedState", "SqliteStateStore", "StateStore", "scoped"]

#: Longest key and value accepted: state is for references, not documents.
MAX_KEY = 200
MAX_VALUE = 16_384


class StateStore(Protocol):
    async def get(self, service: str, key: str) -> str | None: ...
    async def put(self, service: str, key: str, value: str, now: float) -> None: ...
    async def put_new(self, service: str, key: str, value: str, now: float) -> bool: ...
    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ScopedState:
    """One service's view of the state store."""

    store: StateStore
    service: str
    clock: Clock

    async def get(self, key: str) -> str | None:
        return await self.store.get(self.service, key)

    @staticmethod
    def _check(key: str, value: str) -> None:
        if not key or len(key) > MAX_KEY:
            raise ValueError(f"a state key is 1-{MAX_KEY} characters")
        if len(value) > MAX_VALUE:
            raise ValueError(f"a state value is at most {MAX_VALUE} characters")

    async def put(self, key: str, value: str) -> None:
        self._check(key, value)
        await self.store.put(self.service, key, value, self.clock.now().timestamp())

    async def put_new(self, key: str, value: str) -> bool:
        self._check(key, value)
        return await self.store.put_new(self.service, key, value, self.clock.now().timestamp())


def scoped(store: StateStore, service: str, clock: Clock) -> AdapterState:
    return ScopedState(store, service, clock)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS adapter_state (
    service TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (service, key)
) WITHOUT ROWID;
"""


class SqliteStateStore(SqliteFile):
    def __init__(self, path: Path | str) -> None:
        super().__init__(path, _SCHEMA, synchronous="FULL")

    async def get(self, service: str, key: str) -> str | None:
        def read(db: sqlite3.Connection) -> str | None:
            row = db.execute(
                "SELECT value FROM adapter_state WHERE service = ? AND key = ?", (service, key)
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._run(read)

    async def put(self, service: str, key: str, value: str, now: float) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO adapter_state (service, key, value, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (service, key) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at",
                (service, key, value, now),
            )

        await self._write(write)

    async def put_new(self, service: str, key: str, value: str, now: float) -> bool:
        def write(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "INSERT INTO adapter_state (service, key, value, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (service, key) DO NOTHING",
                (service, key, value, now),
            )
            return cursor.rowcount == 1

        return await self._write(write)
