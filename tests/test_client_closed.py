"""A caller that goes away before sending its whole body: the exchange is recorded as what it
was, ``client.closed_request`` (499, nginx's "client closed request"), not as a bad request the
caller never finished sending; nothing reaches the upstream."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bus import create_app
from bus.audit import MemoryRecorder
from bus.errors import CATALOGUE
from bus.settings import Settings

pytestmark = pytest.mark.anyio

ECHO = "version: 1\nservices:\n  echo: {adapter: echo}\n"


async def _call(app: Any, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One POST to the echo operation, fed ``messages`` by ``receive``; what was sent back."""
    sent: list[dict[str, Any]] = []
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/services/echo/echo",
        "raw_path": b"/v1/services/echo/echo",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"40")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    async with app.router.lifespan_context(app):
        await app(scope, receive, send)
    return sent


async def test_a_caller_gone_mid_body_is_recorded_as_closed_request(
    settings_for: Callable[..., Settings],
) -> None:
    recorder = MemoryRecorder()
    app = create_app(settings_for(ECHO), recorder=recorder)
    await _call(
        app,
        [
            {"type": "http.request", "body": b'{"message": "xin', "more_body": True},
            {"type": "http.disconnect"},
        ],
    )
    [exchange] = recorder.exchanges
    assert exchange.error_code == "client.closed_request"
    assert exchange.http_status == 499
    assert exchange.outcome == "error"
    assert exchange.attempts == 0  # nothing went upstream


async def test_a_whole_body_is_served_as_before(settings_for: Callable[..., Settings]) -> None:
    recorder = MemoryRecorder()
    app = create_app(settings_for(ECHO), recorder=recorder)
    sent = await _call(
        app, [{"type": "http.request", "body": b'{"message": "xin chao"}', "more_body": False}]
    )
    assert sent[0]["status"] == 200
    [exchange] = recorder.exchanges
    assert (exchange.outcome, exchange.http_status) == ("ok", 200)


def test_the_code_is_in_the_catalogue() -> None:
    spec = CATALOGUE["client.closed_request"]
    assert (spec.http_status, spec.retryable) == (499, False)
