"""The bus served on a real loopback port next to the live mocks, with a consumer webhook:
what the end-to-end tests of platforms that call the bus back (PayGov, the tax link) need."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from bus import create_app
from bus.app import gateway_of
from bus.gateway import Gateway
from bus.loopback import WebhookInbox, serving
from bus.settings import Settings
from bus.webhooks import register

__all__ = ["LiveBus", "live_bus"]


@dataclass
class LiveBus:
    client: httpx.AsyncClient  # to the bus, as the (open-mode, anonymous) consumer
    url: str
    gw: Gateway
    inbox: WebhookInbox

    async def call(self, service: str, operation: str, body: object) -> dict[str, Any]:
        reply = await self.client.post(f"/v1/services/{service}/{operation}", json=body)
        result: dict[str, Any] = reply.json()
        result["http_status"] = reply.status_code
        return result


@asynccontextmanager
async def live_bus(settings: Settings, environ: Mapping[str, str]) -> AsyncIterator[LiveBus]:
    """The bus on a free port; the anonymous consumer's webhook is a checking inbox."""
    app = create_app(settings, environ=dict(environ))
    inbox = WebhookInbox()
    async with (
        serving(inbox.app) as hook_url,
        serving(app) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        gw = gateway_of(app)
        hook = await register(gw.webhook_store, "anonymous", f"{hook_url}/events", 0.0)
        inbox.secret = hook.secret
        yield LiveBus(client, url, gw, inbox)
