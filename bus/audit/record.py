"""The exchange record as it is stored, hashed and exported.

A record is one JSON object, its *data*, serialised canonically (sorted keys, no spaces, UTF-8)
so that the same record always gives the same bytes wherever it is checked: in the store, in an
export bundle, on an inspector's laptop. The store finalises a :class:`NewRecord` into data by
adding its sequence number, the time it was recorded and the previous record's hash, in the
transaction that appends it; each record's hash is

    hash(n) = SHA-256( hash(n-1) as 64 hex digits || "\\n" || data(n) )

with ``hash(0)`` = 64 zeros (:data:`GENESIS`). Changing, removing, inserting or reordering a
record therefore changes every later hash; the signed head (:mod:`bus.audit.chain`) pins the
last one.

Nothing in a record names a citizen in clear: citizen ids appear only as keyed blind indexes
(``subjects``) and, at capture level ``full``, inside the AES-GCM encrypted ``body``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal, get_args

__all__ = [
    "COLUMNS",
    "FORMAT",
    "GENESIS",
    "KINDS",
    "OUTCOMES",
    "Kind",
    "NewRecord",
    "Outcome",
    "canonical",
    "chain_hash",
    "finalise",
    "record_ref",
    "utc_now",
]

#: The version of the record format, stored in every record as ``v``.
FORMAT = 1
GENESIS = "0" * 64

Kind = Literal["call", "delivery", "callback", "audit"]
Outcome = Literal["ok", "error"]
KINDS: tuple[str, ...] = get_args(Kind)
OUTCOMES: tuple[str, ...] = get_args(Outcome)


def utc_now() -> str:
    """Now, as the log writes times (UTC ISO 8601 with microseconds)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class NewRecord:
    """One exchange, ready to be appended (the store adds ``seq``, ``recorded_at``, ``prev``).

    Times are ISO 8601 strings in UTC with their offset; durations in milliseconds.
    """

    id: str
    kind: Kind
    request_id: str
    received_at: str
    replied_at: str
    consumer: str
    agency: str | None
    end_user: str | None
    service: str | None
    operation: str | None
    outcome: Outcome
    error_code: str | None
    http_status: int
    attempts: int
    duration_ms: float
    request_bytes: int
    reply_bytes: int
    #: Keyed SHA-256 (HMAC) digests, hex, of the canonical request and of the reply body sent.
    request_digest: str | None
    reply_digest: str | None
    capture: Literal["metadata", "full"] = "metadata"
    upstream: str | None = None
    upstream_started_at: str | None = None
    upstream_ended_at: str | None = None
    upstream_ms: float | None = None
    #: Keyed digests and sizes of each raw upstream message pair (e.g. SOAP envelopes).
    upstream_exchanges: tuple[dict[str, Any], ...] = ()
    delivery_id: str | None = None
    replayed: bool = False
    #: Blind indexes (HMAC, hex) of the citizen ids the request or reply names; sorted, unique.
    subjects: tuple[str, ...] = ()
    #: At capture ``full``: ``{"kid": key id, "nonce": b64, "ct": b64}`` (AES-GCM), else None.
    body: dict[str, str] | None = None
    #: Free details without personal data (an auditor read's filters, a callback's reference).
    detail: dict[str, Any] = field(default_factory=dict)


#: The record fields a store keeps in their own columns for queries (and that ``verify``
#: checks against the hashed data): name -> type of the column.
COLUMNS: dict[str, type] = {
    "id": str,
    "kind": str,
    "request_id": str,
    "received_at": str,
    "consumer": str,
    "agency": str,
    "end_user": str,
    "service": str,
    "operation": str,
    "outcome": str,
    "error_code": str,
    "http_status": int,
    "duration_ms": float,
    "recorded_at": str,
}


def canonical(value: Any) -> bytes:
    """The one serialisation that is hashed and signed: sorted keys, no spaces, UTF-8."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


_NAMES = tuple(f.name for f in fields(NewRecord))


def finalise(new: NewRecord, seq: int, recorded_at: str) -> bytes:
    """The stored data of ``new`` as record number ``seq``."""
    # a shallow dict (asdict's deep copy was most of an append's time): it is only serialised
    data = {name: getattr(new, name) for name in _NAMES}
    data["upstream_exchanges"] = list(new.upstream_exchanges)
    data["subjects"] = list(new.subjects)
    data["seq"] = seq
    data["recorded_at"] = recorded_at
    data["v"] = FORMAT
    return canonical(data)


def chain_hash(prev: str, data: bytes) -> str:
    """The hash of a record whose data is ``data`` following a record hashed ``prev``."""
    digest = hashlib.sha256(prev.encode("ascii"))
    digest.update(b"\n")
    digest.update(data)
    return digest.hexdigest()


_RECORD_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def record_ref(text: str) -> str:
    """A record id as a read of the log may keep it in its ``detail`` (kept in clear): the id
    itself when it has the shape of one, else a placeholder, so that whatever else was typed
    there (a citizen's id pasted by mistake) is never stored."""
    return text if _RECORD_ID.fullmatch(text) else "(not a record id)"
