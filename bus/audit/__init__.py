"""Step 7 of the pipeline: every exchange leaves a record before its reply leaves the gateway.

The pipeline describes each exchange as an :class:`Exchange` and hands it to the gateway's
:class:`ExchangeRecorder`. The real recorder is :class:`bus.audit.log.AuditLog`: a durable,
hash-chained, signed, encrypted-where-personal exchange log (group commit; see
:mod:`bus.audit.record` and :mod:`bus.audit.chain`). If a recorder fails, the pipeline fails
the call closed with ``bus.internal``; :meth:`ExchangeRecorder.admit` refuses calls before they
reach an upstream while the log cannot be written.

:class:`LogRecorder` (one metadata line per exchange in the application log) and
:class:`MemoryRecorder` serve tests and embedding applications.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

import structlog

__all__ = ["Exchange", "ExchangeRecorder", "LogRecorder", "MemoryRecorder", "exchange_fields"]


@dataclass(frozen=True, slots=True)
class Exchange:
    """What the bus knows about one call once its reply is decided."""

    request_id: str
    consumer: str
    service: str | None
    operation: str | None
    received_at: datetime
    duration_ms: float
    outcome: str
    http_status: int
    error_code: str | None
    attempts: int
    request_bytes: int
    reply_bytes: int
    #: Digests and sizes of the raw upstream messages (e.g. SOAP envelopes), never their content.
    upstream_exchanges: tuple[dict[str, Any], ...] = ()
    #: The store-and-forward delivery this exchange queued, or is an attempt of.
    delivery_id: str | None = None
    #: Answered from the idempotency store: the reply stored under the caller's key, no call.
    replayed: bool = False
    #: call (the call route), delivery (a store-and-forward attempt), callback (an inbound
    #: platform notification), audit (an auditor's read of the log).
    kind: Literal["call", "delivery", "callback", "audit"] = "call"
    agency: str | None = None
    #: The officer on whose behalf the consumer called (``X-User-Id``).
    end_user: str | None = None
    #: The upstream endpoint called, and when the first attempt started and the last ended.
    upstream: str | None = None
    upstream_started_at: datetime | None = None
    upstream_ended_at: datetime | None = None
    #: When the reply was decided (the record is written before it leaves).
    replied_at: datetime | None = None
    #: The canonical request (the validated input, or the raw body if it did not validate) and
    #: the reply body: digested, and at capture level ``full`` encrypted. Never logged.
    request_body: bytes | None = None
    reply_body: bytes | None = None
    #: Citizen ids the exchange is about, in clear in memory only: the log keeps blind indexes.
    subjects: tuple[str, ...] = ()
    capture: Literal["metadata", "full"] = "metadata"
    #: Details without personal data (an auditor's filters, a callback's reference).
    detail: Mapping[str, Any] | None = None


#: What the access line of an exchange carries: what an operator looks for, no body and no
#: citizen id. The exchange record holds the rest (times, upstream message digests).
ACCESS_FIELDS = (
    "request_id",
    "kind",
    "consumer",
    "service",
    "operation",
    "outcome",
    "http_status",
    "error_code",
    "attempts",
    "duration_ms",
    "request_bytes",
    "reply_bytes",
    "replayed",
    "delivery_id",
)


def exchange_fields(exchange: Exchange) -> dict[str, Any]:
    """The fields of ``exchange``'s access line (no body, no citizen id)."""
    return {name: getattr(exchange, name) for name in ACCESS_FIELDS}


class ExchangeRecorder(Protocol):
    def admit(self) -> None:
        """Raise :class:`bus.errors.InternalError` if exchanges cannot be recorded now: the
        call is then refused before anything reaches an upstream."""
        ...

    async def record(self, exchange: Exchange) -> None:
        """Persist ``exchange``; raise if it cannot be kept (the call then fails closed)."""
        ...


class LogRecorder:
    """Writes each exchange as one ``exchange`` log line (metadata only)."""

    def __init__(self) -> None:
        self._log = structlog.get_logger("lgsp.exchange")

    def admit(self) -> None:
        return None

    async def record(self, exchange: Exchange) -> None:
        self._log.info("exchange", **exchange_fields(exchange))


class MemoryRecorder:
    """Keeps exchanges in a list: for tests and for embedding applications that read them."""

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []

    def admit(self) -> None:
        return None

    async def record(self, exchange: Exchange) -> None:
        self.exchanges.append(exchange)
