"""The embedded store's one way of using SQLite: a file in WAL mode, calls run in a thread.

Every embedded store (consumers, idempotency keys, the delivery queue) derives from
:class:`SqliteFile`: one connection per store object, used by one thread at a time, in
autocommit mode so that each store method chooses its own transaction (``BEGIN IMMEDIATE`` when
it reads then writes). Several processes can share the file; SQLite's locking and the busy
timeout serialise their writes.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

__all__ = ["SqliteFile"]

T = TypeVar("T")


class SqliteFile:
    """A SQLite file opened in WAL mode with ``schema`` applied; :meth:`_run` runs a function
    on the connection in a worker thread."""

    def __init__(
        self,
        path: Path | str,
        schema: str,
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
    ) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute("PRAGMA foreign_keys=ON")
        # FULL: a committed transaction survives a power cut, not only a process crash.
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.executescript(schema)
        self._lock = threading.Lock()

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                return fn(self._db)

        return await asyncio.to_thread(locked)

    async def close(self) -> None:
        await self._run(lambda db: db.close())
