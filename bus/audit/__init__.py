"""Step 7 of the pipeline: every exchange leaves a record before its reply leaves the gateway.

This first release records a metadata-only summary of each exchange (no bodies, no personal
data) as one structured log line through :class:`LogRecorder`. The durable, hash-chained,
signed exchange store of the auditors' issue plugs in behind the same :class:`ExchangeRecorder`
interface; if a recorder fails, the pipeline fails the call closed with ``bus.internal``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Protocol

import structlog

__all__ = ["Exchange", "ExchangeRecorder", "LogRecorder", "MemoryRecorder"]


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


_FIELDS = tuple(f.name for f in fields(Exchange))


class ExchangeRecorder(Protocol):
    async def record(self, exchange: Exchange) -> None:
        """Persist ``exchange``; raise if it cannot be kept (the call then fails closed)."""
        ...


class LogRecorder:
    """Writes each exchange as one ``exchange`` log line (metadata only)."""

    def __init__(self) -> None:
        self._log = structlog.get_logger("lgsp.exchange")

    async def record(self, exchange: Exchange) -> None:
        values = {name: getattr(exchange, name) for name in _FIELDS}
        values["received_at"] = exchange.received_at.isoformat()
        self._log.info("exchange", **values)


class MemoryRecorder:
    """Keeps exchanges in a list: for tests and for embedding applications that read them."""

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []

    async def record(self, exchange: Exchange) -> None:
        self.exchanges.append(exchange)
