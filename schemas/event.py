"""What a consumer's webhook receives: one canonical event in a signed envelope."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["EventEnvelope"]


class EventEnvelope(BaseModel):
    """The body POSTed to a consumer's webhook.

    Headers (the Standard Webhooks scheme): ``webhook-id`` (= ``id``), ``webhook-timestamp``
    (Unix seconds) and ``webhook-signature: v1,<base64 HMAC-SHA256>`` over
    ``"{webhook-id}.{webhook-timestamp}.{body}"`` with the consumer's webhook secret (the bytes
    after ``whsec_``, base64-decoded). The same event redelivered keeps its ``id``: a receiver
    de-duplicates by it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="The event's id; the same on every redelivery.")
    type: str = Field(description="e.g. payment.confirmed")
    service: str = Field(description="The bus service whose platform sent the fact.")
    time: datetime = Field(description="When the bus received the fact.")
    data: Any = Field(description="The event's canonical payload.")
