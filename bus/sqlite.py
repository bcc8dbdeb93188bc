"""The embedded store's one way of using SQLite: a file in WAL mode, calls run in a thread.

Every embedded store (the exchange log, consumers, idempotency keys, the delivery queue,
adapter state, webhooks) derives from :class:`SqliteFile`: one connection per store object, used
by one thread at a time, in autocommit mode. Reads run as they are (:meth:`_run`); every write
is a function run by :meth:`_write` as one ``BEGIN IMMEDIATE`` transaction, queued on a lock
file beside the database first (see :class:`_WriterLock`): several gateway workers share each
file, and SQLite alone makes a writer that finds it locked sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

__all__ = ["SqliteFile"]

T = TypeVar("T")


class _WriterLock:
    """An exclusive ``flock`` on a file beside the database (``<file>-writer``), taken by
    every process before a write transaction of a store.

    SQLite alone makes a writer that finds the file locked poll, sleeping 1, 2, 5... up to
    100 ms between tries: with two gateway workers appending to one exchange log, calls waited
    up to 1.5 s (p99) for a lock that was free most of that time. The kernel hands a ``flock``
    to the next waiter as soon as it is released. The lock dies with its process, and is a
    separate file because closing any descriptor of the database itself would drop SQLite's
    own locks on it.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        assert self._fd is not None
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


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
        self._writer = _WriterLock(self.path + "-writer") if self.path != ":memory:" else None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self._here, fn)

    def _here(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` on the connection in the calling thread, one caller at a time."""
        with self._lock:
            return fn(self._db)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` as one write transaction (``BEGIN IMMEDIATE``, committed at the end, rolled
        back on an error) under the file's :class:`_WriterLock`, run as :meth:`_run` runs it."""
        return await self._run(lambda db: self._transaction(db, fn))

    def _write_here(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """:meth:`_write` in the calling thread, for a process with nothing else to do while
        it writes (the exchange log's writer process)."""
        return self._here(lambda db: self._transaction(db, fn))

    def _transaction(self, db: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
        queue = self._writer if self._writer is not None else contextlib.nullcontext()
        with queue, db:  # in memory: one connection, nothing to queue for
            db.execute("BEGIN IMMEDIATE")
            return fn(db)

    async def close(self) -> None:
        await self._run(self._close)

    def close_here(self) -> None:
        """:meth:`close` in the calling thread."""
        self._here(self._close)

    def _close(self, db: sqlite3.Connection) -> None:
        db.close()
        if self._writer is not None:
            self._writer.close()
