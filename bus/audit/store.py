"""What an exchange log store does, whatever holds it (SQLite, the embedded default;
PostgreSQL next).

The interface makes no SQLite assumption: the store assigns the sequence numbers and chains the
hashes inside the transaction that appends a batch (so several gateway processes append to one
chain: SQLite's write lock or PostgreSQL's row lock on the head serialises them), and every
long read (verify, export) runs in one consistent snapshot (a read transaction; REPEATABLE READ
on PostgreSQL). Times are ISO 8601 strings in UTC (``2026-11-21T08:00:00.123456+00:00``), which
sort as text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bus.audit.chain import SignedPoint, StoredRecord, VerifyReport
from bus.audit.record import NewRecord

__all__ = [
    "VIETNAM",
    "AuditQuery",
    "AuditStore",
    "AuditStoreError",
    "Auditor",
    "ExportEntry",
    "Progress",
    "PurgeResult",
    "Signer",
    "StatRow",
    "instant",
]


def _zone() -> tzinfo:
    try:
        return ZoneInfo("Asia/Ho_Chi_Minh")
    except ZoneInfoNotFoundError:  # no tz database on this host: Vietnam is UTC+7, no DST
        return timezone(timedelta(hours=7), "ICT")


#: The zone of a date or time given without an offset.
VIETNAM = _zone()

#: A "+07:00" offset whose "+" became a space (an unencoded "+" in a URL query).
_OFFSET_AS_SPACE = re.compile(r"(T\d{2}(?::?\d{2}(?::?\d{2}(?:[.,]\d+)?)?)?) (\d{2}(?::?\d{2})?)$")


def instant(text: str) -> str:
    """An ISO 8601 date or date-time as the store's time text (UTC ``isoformat()``, as the log
    writes its times, so that text order is time order). Without an offset it is Vietnam time;
    a date alone is its first moment. Raises ValueError saying what is wrong."""
    repaired = _OFFSET_AS_SPACE.sub(r"\1+\2", text.strip())
    try:
        value = datetime.fromisoformat(repaired)
    except ValueError:
        raise ValueError(
            "not an ISO 8601 date or date-time, e.g. 2026-11-21, 2026-11-21T08:00 (Vietnam "
            "time), 2026-11-21T08:00:00+07:00 or 2026-11-21T01:00:00Z"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=VIETNAM)
    try:
        return value.astimezone(UTC).isoformat()
    except OverflowError:
        raise ValueError("the date-time is out of range") from None


#: Called as work advances: (records done, records in all).
Progress = Callable[[int, int], None]


class AuditStoreError(Exception):
    """An operation the store refuses (e.g. purging records never exported)."""


class Signer(Protocol):
    """Signs chain heads, checkpoints and anchors (:class:`bus.audit.keys.AuditKeys`)."""

    @property
    def public_key(self) -> str: ...

    def sign(self, message: bytes) -> str: ...


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters of a query; every one given must match. Times compare with ``received_at``:
    ``since <= received_at < until``. ``subject`` is a citizen's blind index (never the id)."""

    since: str | None = None
    until: str | None = None
    consumer: str | None = None
    agency: str | None = None
    end_user: str | None = None
    service: str | None = None
    operation: str | None = None
    outcome: str | None = None
    error_code: str | None = None
    kind: str | None = None
    request_id: str | None = None
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class StatRow:
    """Calls of one service operation over a period; latencies are ``duration_ms``."""

    service: str | None
    operation: str | None
    calls: int
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0

    def as_json(self) -> dict[str, object]:
        return {
            "service": self.service,
            "operation": self.operation,
            "calls": self.calls,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 6),
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
        }


@dataclass(frozen=True, slots=True)
class Auditor:
    """A person or system allowed to read the exchange log (never to call services)."""

    id: str
    name: str
    key_hash: str
    can_read_bodies: bool = False
    active: bool = True
    created_at: str = ""


@dataclass(frozen=True, slots=True)
class ExportEntry:
    """An export bundle written of records ``first_seq``..``last_seq`` (kept for purges)."""

    first_seq: int
    last_seq: int
    sha256: str
    path: str
    exported_at: str


@dataclass(frozen=True, slots=True)
class PurgeResult:
    purged: int
    anchor: SignedPoint | None


class AuditStore(Protocol):
    async def append(self, records: Sequence[NewRecord]) -> list[int]:
        """Append ``records`` in this order in one durable transaction; their sequence
        numbers. Also signs the new head, and keeps it as a checkpoint at intervals."""
        ...

    async def head(self) -> SignedPoint | None: ...

    async def get(self, record_id: str) -> StoredRecord | None: ...

    async def query(
        self, query: AuditQuery, *, limit: int, before_seq: int | None = None
    ) -> list[StoredRecord]:
        """Matching records, newest first, with ``seq < before_seq`` when given (the cursor)."""
        ...

    async def stats(self, query: AuditQuery) -> list[StatRow]:
        """One row per (service, operation) of the matching records, by service, operation."""
        ...

    async def verify(
        self,
        *,
        trusted: frozenset[str],
        progress: Progress | None = None,
        citizen_index: bool = False,
        workers: int = 1,
    ) -> VerifyReport:
        """Check the whole chain (from its anchor, if purged) in one snapshot; with
        ``citizen_index``, also that the citizen index matches what each record names; with
        ``workers`` > 1, in up to that many processes when the log is large enough, with the
        same report."""
        ...

    async def seq_range(self, since: str | None, until: str | None) -> tuple[int, int] | None:
        """First and last seq of records with ``since <= recorded_at < until`` (a contiguous
        range: ``recorded_at`` never decreases along the chain); None when there are none."""
        ...

    async def export(
        self,
        first_seq: int,
        last_seq: int,
        write: Callable[[StoredRecord], None],
        progress: Progress | None = None,
    ) -> list[SignedPoint]:
        """Pass records ``first_seq``..``last_seq`` to ``write`` in order, in one snapshot;
        the checkpoints (and head) signed in that range."""
        ...

    async def anchor(self) -> SignedPoint | None:
        """The signed point the chain starts from after a purge; None if never purged."""
        ...

    async def add_export(self, entry: ExportEntry) -> None: ...

    async def exports(self) -> list[ExportEntry]: ...

    async def purge(self, before: str) -> PurgeResult:
        """Remove records with ``recorded_at < before``, only if every one of them is in an
        export; the last removed becomes the signed anchor. Raises AuditStoreError if not."""
        ...

    async def add_auditor(self, auditor: Auditor) -> None: ...

    async def get_auditor(self, auditor_id: str) -> Auditor | None: ...

    async def list_auditors(self) -> list[Auditor]: ...

    async def update_auditor(
        self, auditor_id: str, *, active: bool | None = None, can_read_bodies: bool | None = None
    ) -> Auditor:
        """Change an auditor; raises AuditStoreError if there is none with that id."""
        ...

    async def close(self) -> None: ...
