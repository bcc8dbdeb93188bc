"""The built-in ``echo`` adapter: a diagnostic service that calls no upstream.

Like X-Road's test services, it lets an operator check a deployment end to end (routing,
security, validation, the exchange log, the envelope) without touching a national platform.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from adapters.base import Adapter, Context, operation
from schemas.base import CanonicalModel

__all__ = ["EchoAdapter", "EchoReply", "EchoRequest"]


class EchoRequest(CanonicalModel):
    message: str = Field(min_length=1, max_length=1000, description="Text to send back.")


class EchoReply(CanonicalModel):
    message: str = Field(description="The text received, unchanged.")
    consumer: str = Field(description="The consumer the bus identified for this call.")
    received_at: datetime = Field(description="When the adapter handled the call (UTC).")


class EchoAdapter(Adapter):
    description = "Diagnostic echo: answers with what it received, without any upstream."
    requires_upstream = False

    @operation("echo", input=EchoRequest, output=EchoReply)
    async def echo(self, request: EchoRequest, ctx: Context) -> EchoReply:
        """Send the message back with the caller's identity and the time."""
        return EchoReply(
            message=request.message, consumer=ctx.consumer.id, received_at=ctx.clock.now()
        )
