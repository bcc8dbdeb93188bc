"""Serve ASGI apps on loopback from the running event loop, and receive webhooks.

Used by ``lgsp demo`` and by the end-to-end tests: the bus must listen on a real port when a
national platform's mock calls it back (PayGov's confirmation, the tax notice), and a consumer's
webhook must be a real HTTP endpoint that checks the bus's signature.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bus.webhooks import signature

__all__ = ["ReceivedEvent", "WebhookInbox", "serving"]


@asynccontextmanager
async def serving(app: Any, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve ``app`` (lifespan included) on a free loopback port; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(1024)
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # the server failed to start: its error
                raise RuntimeError("the server stopped before it started")
            await asyncio.sleep(0.01)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@dataclass(frozen=True, slots=True)
class ReceivedEvent:
    id: str
    type: str
    data: dict[str, Any]
    signature_ok: bool


@dataclass
class WebhookInbox:
    """A consumer's webhook endpoint: checks each request's signature and keeps the events.

    ``secret`` is set once the bus has registered the webhook and shown its secret. Each event
    id is kept once (a receiver de-duplicates redeliveries by ``webhook-id``); ``requests``
    counts every request, redeliveries included.
    """

    secret: str | None = None
    events: list[ReceivedEvent] = field(default_factory=list)
    requests: int = 0
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    def verify(self, headers: Any, body: bytes) -> bool:
        if self.secret is None:
            return False
        try:
            stamp = int(headers.get("webhook-timestamp", ""))
        except ValueError:
            return False
        expected = signature(self.secret, headers.get("webhook-id", ""), stamp, body)
        given = headers.get("webhook-signature", "").split()
        return any(hmac.compare_digest(expected, g) for g in given)

    async def _receive(self, request: Request) -> Response:
        body = await request.body()
        self.requests += 1
        ok = self.verify(request.headers, body)
        if not ok:
            return JSONResponse({"error": "bad signature"}, status_code=401)
        envelope = json.loads(body)
        async with self._arrived:
            if all(e.id != envelope["id"] for e in self.events):
                self.events.append(
                    ReceivedEvent(envelope["id"], envelope["type"], envelope["data"], ok)
                )
            self._arrived.notify_all()
        return JSONResponse({"received": envelope["id"]})

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[Route("/events", self._receive, methods=["POST"])])

    async def wait_for(self, event_type: str, within: float = 15.0) -> ReceivedEvent:
        """The first event of ``event_type``, waiting for it up to ``within`` seconds."""

        def found() -> ReceivedEvent | None:
            return next((e for e in self.events if e.type == event_type), None)

        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: found() is not None)
        event = found()
        assert event is not None
        return event
