"""The exchange log's writer process: the group commits of one gateway process, appended by a
process of their own.

Why a process and not a thread: SQLite releases the GIL around every statement step and reset,
and a thread that releases it must win it back from the event loop, which under load holds it
almost all the time. Measured on a 2-core VM at 16 connections (bus-json), an 8-record commit
took 8.7 ms in the gateway's thread against 2.0 to 2.5 ms for the same commit with the rest of the
process idle; calls waited on it, and the event loop sat idle a fifth of the time while every
call in flight waited for the commit. In its own process the commit has a GIL of its own. The
gateway still builds each record (digests, blind indexes, encrypted bodies); the writer
finalises, chains, inserts and signs them, exactly as :meth:`SqliteAuditStore.append` does in
the gateway's process (the same code, through :meth:`SqliteAuditStore.append_here`).

:class:`WriterProcess` is started by the gateway (``LGSP_AUDIT_WRITER=process``, the default
where the platform has ``forkserver``) and used by :class:`~bus.audit.log.AuditLog` for its
appends only; reads, purges and exports stay on the gateway's own store. One batch is in flight
at a time (the log's writer task waits for each), and a record's call is answered only once the
writer has replied that its batch is committed: the log stays durable before each reply.

The processes talk over a socket pair in :mod:`multiprocessing.connection`'s framing (a 4-byte
big-endian length, then a pickle; both ends are this module): the setup first (the file, the
checkpoint interval, the signing key, never in an argument or the environment), then one
frame per batch, answered by the seqs or by the error's type and message. The writer ignores
SIGINT and SIGTERM (a Ctrl-C reaches the whole process group, and the gateway still has
records to hand over while it stops) and exits when the gateway closes its end, or dies.
If the writer dies, or does not answer a batch within ``commit_timeout`` seconds (then it is
killed: a hung process holding the log's lock must not hang every call), the batch in flight
fails with :class:`WriterError` (the log then looks its records up: the writer may have
committed them before dying) and the next append starts a new writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.util
import os
import pickle
import signal
import socket
import struct
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from bus.audit.keys import KeySigner
from bus.audit.record import NewRecord
from bus.audit.sqlite_store import SqliteAuditStore
from bus.audit.store import AuditStoreError

__all__ = ["WriterError", "WriterProcess", "process_writer_available"]

_SHORT = struct.Struct("!i")
_LONG = struct.Struct("!Q")
_START_TIMEOUT = 60.0  # seconds for a new writer to open the log (a schema change included)


class WriterError(Exception):
    """The writer process failed, exited, or could not start; the message says which."""


def process_writer_available() -> bool:
    """Whether this platform can run the writer (it is started by ``forkserver``)."""
    return "forkserver" in multiprocessing.get_all_start_methods()


@dataclass(frozen=True)
class _Setup:
    path: str
    checkpoint_every: int
    signing_key: bytes  # raw Ed25519 private key


def _frame(obj: object) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    if len(data) > 0x7FFFFFFF:
        return _SHORT.pack(-1) + _LONG.pack(len(data)) + data
    return _SHORT.pack(len(data)) + data


class WriterProcess:
    """The gateway's end of a writer process (see the module's documentation)."""

    def __init__(
        self,
        path: Path | str,
        signing_key: Ed25519PrivateKey,
        checkpoint_every: int,
        *,
        commit_timeout: float = 30.0,
    ):
        raw = signing_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        self._setup = _Setup(str(path), checkpoint_every, raw)
        #: Seconds a batch may take, from sending it to its answer, before the writer is
        #: stopped and the batch fails (a process that holds the log's lock and hangs).
        self.commit_timeout = commit_timeout
        self._process: multiprocessing.process.BaseProcess | None = None
        self._sock: socket.socket | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        """The writer's process id while one runs."""
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        """Start a writer and wait until it has opened the log."""
        context = multiprocessing.get_context("forkserver")
        # The forkserver imports this module once; each writer is a fork of it. (Like any
        # multiprocessing child, a writer runs the program's main module again, as
        # __mp_main__: Python 3.11's forkserver does not preload it.)
        context.set_forkserver_preload([__name__])
        ours, theirs = context.Pipe()
        process = context.Process(target=_serve, args=(theirs,), name="lgsp-audit-writer")
        # Daemonic: multiprocessing waits for it at exit; _hang_up_all lets it go first.
        process.daemon = True
        # The first start also starts the forkserver. Shielded: the descriptor handed to the
        # child is sent by number after pickling, so neither end may close under it.
        starting = asyncio.ensure_future(asyncio.to_thread(process.start))
        try:
            await asyncio.shield(starting)
        except BaseException:
            with contextlib.suppress(Exception):
                await starting
            theirs.close()
            ours.close()
            if process.pid is not None:
                process.kill()
                await asyncio.to_thread(process.join)
            raise
        theirs.close()
        sock = socket.socket(fileno=os.dup(ours.fileno()))
        ours.close()
        self._process = process
        self._sock = sock
        _LIVE.add(self)
        self._reader, self._writer = await asyncio.open_unix_connection(sock=sock)
        try:
            async with asyncio.timeout(_START_TIMEOUT):
                reply = await self._exchange(self._setup)
        except BaseException:
            await self._stop(kill=True)
            raise
        if reply[0] != "ready":
            await self._stop(kill=True)
            raise WriterError(f"the writer could not open the log: {reply[1]}: {reply[2]}")

    async def append(self, records: Sequence[NewRecord]) -> list[int]:
        """Append ``records`` as one transaction in the writer; their seqs once committed."""
        async with self._lock:
            if self._writer is None:
                await self.start()
            try:
                async with asyncio.timeout(self.commit_timeout):
                    reply = await self._exchange(list(records))
            except BaseException as exc:
                # Too slow, a frame cut in two (cancelled) or a writer gone: this one is done.
                await self._stop(kill=True)
                if isinstance(exc, TimeoutError):
                    raise WriterError(
                        f"the writer did not commit within {self.commit_timeout:g} s and was "
                        "stopped (is another process holding the log's lock?)"
                    ) from exc
                raise
        if reply[0] == "ok":
            seqs: list[int] = reply[1]
            return seqs
        if reply[1] == "AuditStoreError":
            raise AuditStoreError(reply[2])
        raise WriterError(f"{reply[1]}: {reply[2]}")

    async def _exchange(self, message: object) -> Any:
        assert self._reader is not None
        assert self._writer is not None
        try:
            self._writer.write(_frame(message))
            await self._writer.drain()
            size = _SHORT.unpack(await self._reader.readexactly(_SHORT.size))[0]
            if size == -1:
                size = _LONG.unpack(await self._reader.readexactly(_LONG.size))[0]
            return pickle.loads(await self._reader.readexactly(size))  # noqa: S301 - from our own writer, over a private socket pair
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            code = self._process.exitcode if self._process is not None else None
            raise WriterError(f"the writer process exited (exit code {code})") from exc

    async def close(self) -> None:
        """Let the writer finish and exit (it has nothing in flight: appends are awaited)."""
        async with self._lock:
            await self._stop(kill=False)

    def _hang_up(self) -> None:
        """End the writer's input: it exits once it has read what was sent. ``shutdown``, not
        only ``close``: a copy of the descriptor in another process would keep it open."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)

    async def _stop(self, *, kill: bool) -> None:
        self._hang_up()
        _LIVE.discard(self)
        writer, process = self._writer, self._process
        self._reader = self._writer = None
        self._process = None
        self._sock = None
        if writer is not None:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        if process is None:
            return
        if kill and process.is_alive():
            process.kill()
        # it exits on its own once our end is closed (closing the log first)
        await asyncio.to_thread(process.join, 30)
        if process.is_alive():
            process.kill()
            await asyncio.to_thread(process.join)
        process.close()


_LIVE: weakref.WeakSet[WriterProcess] = weakref.WeakSet()


def _hang_up_all() -> None:
    """At exit, before multiprocessing waits for its children: a writer never closed sees the
    end of its input and exits, instead of being waited for forever (it ignores the SIGTERM
    multiprocessing sends daemonic children first). Run by multiprocessing's exit function
    itself, which runs both at interpreter exit and when a multiprocessing child (a
    ``--workers`` worker) returns, where ``atexit`` hooks would come too late."""
    for writer in list(_LIVE):
        writer._hang_up()


multiprocessing.util.Finalize(None, _hang_up_all, exitpriority=100)


def _serve(conn: Connection) -> None:
    """The writer process: open the log, then append each batch received until the gateway
    closes the connection."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    try:
        setup: _Setup = pickle.loads(conn.recv_bytes())  # noqa: S301 - from the gateway that started us
        key = Ed25519PrivateKey.from_private_bytes(setup.signing_key)
        try:
            store = SqliteAuditStore(
                setup.path, KeySigner(key), checkpoint_every=setup.checkpoint_every
            )
        except Exception as exc:  # noqa: BLE001 - reported to the gateway, which refuses to start
            conn.send_bytes(pickle.dumps(("error", type(exc).__name__, str(exc))))
            return
        conn.send_bytes(pickle.dumps(("ready", os.getpid())))
        try:
            while True:
                try:
                    frame = conn.recv_bytes()
                except EOFError:  # the gateway closed its end, or died
                    return
                records: list[NewRecord] = pickle.loads(frame)  # noqa: S301 - as above
                reply: tuple[Any, ...]
                try:
                    reply = ("ok", store.append_here(records))
                except Exception as exc:  # noqa: BLE001 - the gateway fails the batch's calls with it
                    reply = ("error", type(exc).__name__, str(exc))
                conn.send_bytes(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
        finally:
            store.close_here()
    finally:
        conn.close()
