"""The exchange log's writer process: appends as the store's own, errors carried back, a dead
writer replaced, signals of the process group ignored, and no writer left behind."""

from __future__ import annotations

import asyncio
import fcntl
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bus.audit.keys import AuditKeys
from bus.audit.log import AuditLog, AuditWriteError
from bus.audit.sqlite_store import SqliteAuditStore
from bus.audit.store import AuditQuery, AuditStoreError
from bus.audit.writer import WriterError, WriterProcess, process_writer_available
from tests.test_audit_store import rec

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not process_writer_available(), reason="no forkserver on this platform"),
]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def keys() -> AuditKeys:
    return AuditKeys.generate()


@pytest.fixture
async def store(tmp_path: Path, keys: AuditKeys) -> AsyncIterator[SqliteAuditStore]:
    s = SqliteAuditStore(tmp_path / "audit.db", keys, checkpoint_every=4)
    yield s
    await s.close()


@pytest.fixture
async def writer(store: SqliteAuditStore, keys: AuditKeys) -> AsyncIterator[WriterProcess]:
    w = WriterProcess(store.path, keys.signing_key, checkpoint_every=4)
    await w.start()
    yield w
    await w.close()


def gone(pid: int, within: float = 10.0) -> bool:
    """Whether process ``pid`` has exited (or is a zombie nobody reaped yet) within ``within``."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


async def test_batches_appended_by_the_writer_are_the_stores_own(
    store: SqliteAuditStore, writer: WriterProcess, keys: AuditKeys
) -> None:
    """Seqs in order, the records as given, signed heads and checkpoints by the gateway's key:
    the log verifies as if the gateway had appended them itself."""
    assert writer.pid is not None
    assert writer.pid != os.getpid()
    assert await writer.append([rec(1), rec(2), rec(3)]) == [1, 2, 3]
    assert await writer.append([rec(4, subjects=("blind-1",)), rec(5)]) == [4, 5]
    await store.append([rec(6)])  # the gateway's own store goes on from the writer's head
    assert await writer.append([rec(7)]) == [7]
    found = await store.query(AuditQuery(), limit=10)
    assert [r.seq for r in found] == [7, 6, 5, 4, 3, 2, 1]
    assert [r.parsed()["id"] for r in found[-2:]] == ["ex_000002", "ex_000001"]
    assert [r.seq for r in await store.query(AuditQuery(subject="blind-1"), limit=10)] == [4]
    head = await store.head()
    assert head is not None
    assert head.seq == 7
    assert head.signer == keys.public_key
    report = await store.verify(trusted=frozenset({keys.public_key}))
    assert report.ok, report
    assert report.checked == 7


async def test_a_store_error_comes_back_as_the_stores_error(
    store: SqliteAuditStore, writer: WriterProcess
) -> None:
    """A batch the store refuses (an id already in the log) fails with AuditStoreError and
    its message; the writer goes on with the next batch."""
    assert await writer.append([rec(1)]) == [1]
    with pytest.raises(AuditStoreError, match="id already in the log"):
        await writer.append([rec(1)])
    assert await writer.append([rec(2)]) == [2]


async def test_a_dead_writer_fails_its_batch_and_the_next_append_starts_another(
    store: SqliteAuditStore, writer: WriterProcess, keys: AuditKeys
) -> None:
    assert await writer.append([rec(1)]) == [1]
    first = writer.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    with pytest.raises(WriterError, match="writer process exited"):
        await writer.append([rec(2)])
    assert await writer.append([rec(3)]) == [2]  # a new writer, from the log's head
    assert writer.pid not in (None, first)
    assert (await store.verify(trusted=frozenset({keys.public_key}))).ok


async def test_the_writer_ignores_the_groups_signals_and_exits_when_closed(
    writer: WriterProcess,
) -> None:
    """A Ctrl-C or SIGTERM reaches every process of the group: the writer keeps appending
    (the gateway still has records to hand over while it stops) and exits once closed."""
    pid = writer.pid
    assert pid is not None
    os.kill(pid, signal.SIGINT)
    os.kill(pid, signal.SIGTERM)
    assert await writer.append([rec(1)]) == [1]
    await writer.close()
    assert writer.pid is None
    assert gone(pid)


async def test_the_log_through_the_writer_process_as_the_gateway_uses_it(
    store: SqliteAuditStore, writer: WriterProcess, keys: AuditKeys
) -> None:
    """AuditLog hands its group commits to the writer: concurrent records share commits."""
    log = AuditLog(store, keys, batch=8, writer=writer)
    seqs = await asyncio.gather(*(log.append(rec(n)) for n in range(1, 21)))
    assert sorted(seqs) == list(range(1, 21))
    assert log.commits < 20
    pid = writer.pid
    await log.close()  # closes the writer, then the store
    assert pid is not None
    assert gone(pid)


class DyingWriter(WriterProcess):
    """A writer process SIGKILLed with the next batch in flight: ``after_commit``, once it has
    committed the batch and answered but before the gateway reads the answer; else before the
    batch is sent."""

    def __init__(self, *args: Any, after_commit: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.after_commit = after_commit
        self.armed = False

    async def _exchange(self, message: object) -> Any:
        if not (self.armed and isinstance(message, list)):
            return await super()._exchange(message)
        self.armed = False
        assert self._process is not None
        assert self._process.pid is not None
        if self.after_commit:
            await super()._exchange(message)  # committed; the answer is lost with the writer
            os.kill(self._process.pid, signal.SIGKILL)
            raise WriterError("the writer process exited (exit code -9)")
        os.kill(self._process.pid, signal.SIGKILL)
        await asyncio.to_thread(self._process.join, 10)
        return await super()._exchange(message)


@pytest.mark.parametrize("after_commit", [True, False])
async def test_calls_are_answered_as_the_log_holds_them_when_the_writer_dies(
    store: SqliteAuditStore, keys: AuditKeys, after_commit: bool
) -> None:
    """A writer that dies after committing a batch: the batch's calls succeed with their seqs
    (the log says they happened; failing them would make the caller's reply and the log
    disagree) and nothing is written twice. One that dies before: the calls fail, the log
    holds none of them and is marked failing until the next append, by a new writer, works."""
    writer = DyingWriter(
        store.path, keys.signing_key, checkpoint_every=4, after_commit=after_commit
    )
    log = AuditLog(store, keys, batch=8, writer=writer)
    try:
        assert await log.append(rec(1)) == 1
        first = writer.pid
        writer.armed = True
        outcomes = await asyncio.gather(
            *(log.append(rec(n)) for n in range(2, 6)), return_exceptions=True
        )
        if after_commit:
            assert sorted(outcomes) == [2, 3, 4, 5]
            assert log.failing is None
        else:
            assert all(isinstance(o, AuditWriteError) for o in outcomes), outcomes
            assert log.failing == "WriterError"
        assert await log.append(rec(6)) == (6 if after_commit else 2)
        assert writer.pid not in (None, first)
        assert log.failing is None
    finally:
        await log.close()
    reopened = SqliteAuditStore(store.path, keys)
    try:
        found = await reopened.query(AuditQuery(), limit=10)
        expected = [1, 2, 3, 4, 5, 6] if after_commit else [1, 6]
        assert sorted(int(r.parsed()["id"][3:]) for r in found) == expected
        report = await reopened.verify(trusted=frozenset({keys.public_key}))
        assert report.ok, report
    finally:
        await reopened.close()


async def test_a_lost_batch_that_cannot_be_looked_up_fails_with_the_writers_error(
    store: SqliteAuditStore, keys: AuditKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the log cannot be read either, the calls fail closed, with the writer's error (not
    the lookup's), whatever the dead writer had committed."""
    writer = DyingWriter(store.path, keys.signing_key, checkpoint_every=4, after_commit=True)
    log = AuditLog(store, keys, batch=8, writer=writer)
    try:
        assert await log.append(rec(1)) == 1

        async def unreadable(record_id: str) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(store, "get", unreadable)
        writer.armed = True
        with pytest.raises(AuditWriteError, match="WriterError"):
            await log.append(rec(2))
        assert log.failing == "WriterError"
    finally:
        monkeypatch.undo()
        await log.close()


async def test_a_writer_that_does_not_commit_in_time_is_stopped_and_its_batch_fails(
    store: SqliteAuditStore, keys: AuditKeys
) -> None:
    """Another process holds the log's lock and hangs: the batch fails once the commit timeout
    has passed instead of holding its calls forever, the stuck writer is killed, and once the
    lock is free the next append, by a new writer, works."""
    writer = WriterProcess(store.path, keys.signing_key, checkpoint_every=4)
    log = AuditLog(store, keys, batch=8, writer=writer)
    try:
        assert await log.append(rec(1)) == 1
        first = writer.pid
        assert first is not None
        holder = os.open(store.path + "-writer", os.O_RDWR)
        try:
            fcntl.flock(holder, fcntl.LOCK_EX)
            writer.commit_timeout = 0.5  # short only while the lock is held: no flaky commit
            async with asyncio.timeout(30):  # without the commit timeout: a failure, not a hang
                with pytest.raises(AuditWriteError, match="WriterError"):
                    await log.append(rec(2))
            assert log.failing == "WriterError"
            assert gone(first)
        finally:
            os.close(holder)  # and with it the lock
            writer.commit_timeout = 30.0
        assert await log.append(rec(3)) == 2
        assert log.failing is None
        assert writer.pid not in (None, first)
        found = await store.query(AuditQuery(), limit=10)
        assert [r.parsed()["id"] for r in found] == ["ex_000003", "ex_000001"]
    finally:
        await log.close()


async def test_a_log_the_writer_cannot_open_is_refused_at_start(
    tmp_path: Path, keys: AuditKeys
) -> None:
    (tmp_path / "a-directory").mkdir()
    w = WriterProcess(tmp_path / "a-directory", keys.signing_key, checkpoint_every=4)
    with pytest.raises(WriterError, match="could not open the log"):
        await w.start()
    assert w.pid is None


def gateway_script(tmp_path: Path, then: str) -> list[str]:
    """The command of a stand-in gateway: it starts a writer on ``tmp_path/audit.db``, prints
    the writer's pid, then runs ``then`` (the last line of its ``main``; ``w`` is the writer)."""
    script = tmp_path / "gateway.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio, sys
            from bus.audit.keys import AuditKeys
            from bus.audit.writer import WriterProcess

            async def main():
                w = WriterProcess(sys.argv[1], AuditKeys.generate().signing_key, 4)
                await w.start()
                print(w.pid, flush=True)
                THEN

            if __name__ == "__main__":
                kept = asyncio.run(main())
            """
        ).replace("THEN", then)
    )
    return [sys.executable, str(script), str(tmp_path / "audit.db")]


def test_the_writer_exits_when_the_gateway_dies(tmp_path: Path) -> None:
    """A gateway killed outright (no close) leaves no writer behind: the writer sees its end
    of the socket pair close and exits."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(
        gateway_script(tmp_path, "await asyncio.sleep(3600)"),
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as gateway:
        try:
            assert gateway.stdout is not None
            pid = int(gateway.stdout.readline())
            assert not gone(pid, within=0.5)
        finally:
            gateway.kill()
    assert gone(pid)


def test_a_gateway_that_exits_without_closing_its_writer_does_not_hang(tmp_path: Path) -> None:
    """multiprocessing waits for its children at exit; the writer ignores SIGTERM, so it must
    be told its input has ended, or the gateway would never exit."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        gateway_script(tmp_path, "return w  # kept alive, never closed"),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert gone(int(done.stdout))


def _writer_left_open(path: str, pid_file: str) -> None:
    """A spawned child (as a ``--workers`` worker is) that starts a writer and returns without
    closing it."""

    async def main() -> WriterProcess:
        writer = WriterProcess(path, AuditKeys.generate().signing_key, 4)
        await writer.start()
        return writer

    writer = asyncio.run(main())
    _KEPT.append(writer)
    Path(pid_file).write_text(str(writer.pid))


_KEPT: list[WriterProcess] = []


def test_a_worker_that_returns_without_closing_its_writer_does_not_hang(tmp_path: Path) -> None:
    """A multiprocessing child runs multiprocessing's exit function as its target returns,
    before any atexit hook: the writer must be let go there, or the worker waits for it
    forever (and its parent never learns that it ended)."""
    pid_file = tmp_path / "writer.pid"
    worker = multiprocessing.get_context("spawn").Process(
        target=_writer_left_open, args=(str(tmp_path / "audit.db"), str(pid_file))
    )
    worker.start()
    worker.join(60)
    try:
        assert worker.exitcode == 0
    finally:
        if worker.is_alive():
            worker.kill()
            worker.join()
        worker.close()
    assert gone(int(pid_file.read_text()))
