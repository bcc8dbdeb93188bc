"""What a caller sees of a store-and-forward delivery: the 202 receipt and the status view."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DeliveryAccepted", "DeliveryAttemptView", "DeliveryError", "DeliveryView"]

DeliveryState = Literal["queued", "in_flight", "delivered", "dead", "discarded"]


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeliveryAccepted(_View):
    """The reply to an async operation: the message is durably queued."""

    delivery_id: str = Field(
        description="Identifies the delivery; also sent upstream as its "
        "idempotency key, the same on every redelivery."
    )
    state: DeliveryState = "queued"
    status_url: str = Field(description="GET it to follow the delivery.")


class DeliveryError(_View):
    code: str
    message: str


class DeliveryAttemptView(_View):
    number: int
    started_at: datetime
    ended_at: datetime
    outcome: Literal["ok", "error", "lost"] = Field(
        description="lost: the worker stopped (crash, kill) before it could record the outcome."
    )
    error: DeliveryError | None = None


class DeliveryView(_View):
    """One delivery as its consumer (or an operator) sees it."""

    delivery_id: str
    service: str
    operation: str
    request_id: str = Field(description="The request id of the call that queued the message.")
    state: DeliveryState
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None
    next_attempt_at: datetime | None = Field(description="When a queued message is tried next.")
    attempts: int
    max_attempts: int
    last_error: DeliveryError | None
    result: Any = Field(default=None, description="The operation's output once delivered.")
    attempt_log: list[DeliveryAttemptView] = Field(default_factory=list)
