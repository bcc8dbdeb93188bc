"""A queued delivery as the API and the CLI show it (times as ISO 8601, UTC)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from bus.delivery.store import Attempt, Delivery
from schemas.delivery import DeliveryAttemptView, DeliveryError, DeliveryView

__all__ = ["view_of"]


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def view_of(delivery: Delivery, attempts: list[Attempt] | None = None) -> DeliveryView:
    """The public view of ``delivery``, with its attempt log when ``attempts`` is given."""
    d = delivery
    last_error = None
    if d.last_error_code is not None:
        last_error = DeliveryError(code=d.last_error_code, message=d.last_error_message or "")
    return DeliveryView(
        delivery_id=d.id,
        service=d.service,
        operation=d.operation,
        request_id=d.request_id,
        state=d.state,
        created_at=_at(d.created_at),
        updated_at=_at(d.updated_at),
        delivered_at=None if d.delivered_at is None else _at(d.delivered_at),
        next_attempt_at=_at(d.next_attempt_at) if d.state == "queued" else None,
        attempts=d.attempts,
        max_attempts=d.max_attempts,
        last_error=last_error,
        result=None if d.result is None else json.loads(d.result),
        attempt_log=[
            DeliveryAttemptView(
                number=a.number,
                started_at=_at(a.started_at),
                ended_at=_at(a.ended_at),
                outcome=a.outcome,
                error=None
                if a.error_code is None
                else DeliveryError(code=a.error_code, message=a.message or ""),
            )
            for a in attempts or []
        ],
    )
