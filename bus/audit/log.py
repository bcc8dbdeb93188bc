"""The exchange log: the gateway's recorder, durable before each reply, with group commit.

:meth:`AuditLog.record` turns an :class:`~bus.audit.Exchange` into a :class:`NewRecord`
(digests, blind indexes of the citizens named, the bodies encrypted at capture level ``full``)
and waits until the store has appended it durably. One writer task appends whatever records
are waiting, up to ``batch`` per transaction: while one transaction commits, the next batch
gathers, so concurrent calls share one commit (and one fsync) instead of queueing for one each.
The gateway hands the batches to a writer process (:mod:`bus.audit.writer`) by default; without
one, the store appends them in a thread of this process.

If the writer process dies with a batch in flight, the batch's records are looked up in the
store: found (it committed them before dying), their calls are answered as recorded. If an
append fails, every call waiting on it is failed closed (``bus.internal``), the records
are reported in the application log (metadata only, never bodies nor ids) so none disappears
silently, and :meth:`AuditLog.admit` refuses new calls before they reach an upstream until an
append succeeds again (the refused calls' own records are the probe).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from datetime import UTC, datetime

import structlog

from bus.audit import Exchange, exchange_fields
from bus.audit.keys import AuditKeys
from bus.audit.record import NewRecord
from bus.audit.sqlite_store import SqliteAuditStore
from bus.audit.store import AuditStore
from bus.audit.writer import WriterError, WriterProcess
from bus.errors import InternalError
from bus.ids import new_id
from bus.settings import Settings

__all__ = ["AuditLog", "AuditWriteError", "open_audit"]

log = structlog.get_logger("lgsp.audit")


class AuditWriteError(Exception):
    """The store could not append a batch of records."""


def open_audit(settings: Settings) -> tuple[SqliteAuditStore, AuditKeys]:
    """The embedded exchange log store of ``settings`` and the keys it uses."""
    environ = dict(os.environ)
    if settings.digest_key is not None:
        environ["LGSP_DIGEST_KEY"] = settings.digest_key.get_secret_value()
    keys = AuditKeys.load(environ, settings.audit_keys_file())
    store = SqliteAuditStore(
        settings.audit_file(), keys, checkpoint_every=settings.audit_checkpoint_every
    )
    return store, keys


def _utc(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


class AuditLog:
    """The durable recorder (see the module's documentation)."""

    def __init__(
        self,
        store: AuditStore,
        keys: AuditKeys,
        *,
        batch: int = 256,
        writer: WriterProcess | None = None,
    ) -> None:
        self.store = store
        self.keys = keys
        self._batch = batch
        #: Where batches are appended: a writer process (:mod:`bus.audit.writer`), or the store.
        self.writer = writer
        self._append = writer.append if writer is not None else store.append
        self._pending: list[tuple[NewRecord, asyncio.Future[int]]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        #: Why the last append failed; None while the log is writable.
        self.failing: str | None = None
        self.written = 0
        self.commits = 0
        self._access = structlog.get_logger("lgsp.exchange")

    # -- the recorder interface ------------------------------------------------------------

    def admit(self) -> None:
        if self.failing is not None:
            raise InternalError(
                "the exchange log cannot be written; calls are refused until it can"
            )

    async def record(self, exchange: Exchange) -> None:
        record = self.build(exchange)
        seq = await self.append(record)
        # the operator's access line: metadata only, with the record it can be found by
        self._access.info("exchange", record_id=record.id, seq=seq, **exchange_fields(exchange))

    async def append(self, record: NewRecord) -> int:
        """Queue ``record`` for the next group commit; its seq once it is durable."""
        if self._closing:
            raise AuditWriteError("the exchange log is closed")
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((record, future))
        self._wake.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop(), name="audit-writer")
        # shield: a caller that goes away does not take its record out of the log
        return await asyncio.shield(future)

    def build(self, exchange: Exchange) -> NewRecord:
        """The record of ``exchange``: digests, blind indexes, encrypted bodies."""
        record_id = new_id()
        keys = self.keys
        body = None
        if exchange.capture == "full" and (exchange.request_body or exchange.reply_body):
            body = keys.seal_bodies(exchange.request_body, exchange.reply_body, record_id)
        started, ended = exchange.upstream_started_at, exchange.upstream_ended_at
        upstream_ms = None
        if started is not None and ended is not None:
            upstream_ms = round((ended - started).total_seconds() * 1000, 3)
        return NewRecord(
            id=record_id,
            kind=exchange.kind,
            request_id=exchange.request_id,
            received_at=_utc(exchange.received_at) or "",
            replied_at=_utc(exchange.replied_at or exchange.received_at) or "",
            consumer=exchange.consumer,
            agency=exchange.agency,
            end_user=exchange.end_user,
            service=exchange.service,
            operation=exchange.operation,
            outcome="ok" if exchange.outcome == "ok" else "error",
            error_code=exchange.error_code,
            http_status=exchange.http_status,
            attempts=exchange.attempts,
            duration_ms=exchange.duration_ms,
            request_bytes=exchange.request_bytes,
            reply_bytes=exchange.reply_bytes,
            request_digest=(
                keys.digest(exchange.request_body) if exchange.request_body is not None else None
            ),
            reply_digest=(
                keys.digest(exchange.reply_body) if exchange.reply_body is not None else None
            ),
            capture=exchange.capture,
            upstream=exchange.upstream,
            upstream_started_at=_utc(started),
            upstream_ended_at=_utc(ended),
            upstream_ms=upstream_ms,
            upstream_exchanges=tuple(exchange.upstream_exchanges),
            delivery_id=exchange.delivery_id,
            replayed=exchange.replayed,
            subjects=tuple(sorted({keys.blind(s) for s in exchange.subjects if s})),
            body=body,
            detail=dict(exchange.detail or {}),
        )

    # -- the writer ------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._pending[: self._batch]
                del self._pending[: self._batch]
                await self._commit(batch)
            if self._closing:
                return

    async def _commit(self, batch: Sequence[tuple[NewRecord, asyncio.Future[int]]]) -> None:
        try:
            records = [record for record, _ in batch]
            seqs = await self._append_or_find(records)
            if len(seqs) != len(batch):
                raise AuditWriteError(f"the store appended {len(seqs)} of {len(batch)} records")
        except BaseException as exc:  # every waiting call must learn it, even on cancellation
            log.exception("exchange log append failed; calls are refused until it works")
            self.failing = type(exc).__name__
            for record, future in batch:
                _report_unrecorded(record)
                if not future.done():
                    future.set_exception(AuditWriteError(type(exc).__name__))
            if not isinstance(exc, Exception):
                raise
            return
        self.failing = None
        self.written += len(batch)
        self.commits += 1
        for (_, future), seq in zip(batch, seqs, strict=True):
            if not future.done():
                future.set_result(seq)

    async def _append_or_find(self, records: list[NewRecord]) -> list[int]:
        """Append ``records``; if the writer process died with them in flight, their seqs if
        it had committed them before dying (the log holds them: their calls are answered as
        recorded, so the caller's reply and the log agree), else the writer's error."""
        try:
            return await self._append(records)
        except WriterError as lost:
            # One transaction: the store holds every record of the batch or none of them.
            try:
                found = [await self.store.get(record.id) for record in records]
            except Exception as exc:  # unreadable too: the batch fails with the writer's error
                raise lost from exc
            if not any(found):
                raise
            if not all(found):
                raise AuditWriteError(
                    f"the log holds {sum(1 for f in found if f)} of a batch of {len(records)}"
                ) from None
            log.warning(
                "exchange log writer exited after committing a batch; its calls are answered",
                records=len(records),
            )
            return [stored.seq for stored in found if stored is not None]

    async def close(self) -> None:
        """Write what is waiting, then close the store."""
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            await self._writer
            self._writer = None
        try:
            if self.writer is not None:
                await self.writer.close()
        finally:
            await self.store.close()


def _report_unrecorded(record: NewRecord) -> None:
    """A record the store refused, in the application log: what an operator needs to see the
    gap and re-enter it, nothing personal (no body, no subject, no end user)."""
    log.error(
        "exchange not recorded",
        record_id=record.id,
        request_id=record.request_id,
        kind=record.kind,
        consumer=record.consumer,
        service=record.service,
        operation=record.operation,
        outcome=record.outcome,
        error_code=record.error_code,
        http_status=record.http_status,
        received_at=record.received_at,
    )
