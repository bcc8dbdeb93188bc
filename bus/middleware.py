"""The app's one plain ASGI middleware, :class:`RequestIdMiddleware`, outermost.

It takes a well-formed ``X-Request-ID`` from the caller or makes one, stores it in
``scope["state"]``, binds it into every log line, and echoes it on the reply. It also turns any
exception that escapes the app into a ``bus.internal`` envelope carrying the request id; the
stack trace goes to the server log, never to the caller.
"""

from __future__ import annotations

import re

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bus.errors import InternalError, error_envelope
from bus.ids import new_id

__all__ = ["REQUEST_ID_PATTERN", "RequestIdMiddleware", "request_id_of"]

#: What a caller's request id may look like: 8 to 128 letters, digits, '.', '_', ':' or '-'.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{7,127}")

log = structlog.get_logger("lgsp.http")


def request_id_of(scope: Scope) -> str:
    state = scope.get("state") or {}
    value = state.get("request_id")
    return value if isinstance(value, str) else ""


class RequestIdMiddleware:
    """The outermost layer of the app: the request id, and the last-resort error envelope.

    One layer does both (each ASGI layer costs every call its wrappers).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                sent = value.decode("latin-1")
                break
        request_id = sent if sent and REQUEST_ID_PATTERN.fullmatch(sent) else new_id()
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode("ascii"))
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"x-request-id"]
                message["headers"] = [*headers, header]
            await send(message)

        bound = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:  # the outermost net: the caller gets an envelope, the log the trace
            log.exception("unhandled error", path=scope.get("path"))
            if started:  # the reply is half sent; the server closes the connection
                raise
            body = error_envelope(request_id, None, None, InternalError()).model_dump_json()
            await send_with_id(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send_with_id({"type": "http.response.body", "body": body.encode()})
        finally:
            structlog.contextvars.reset_contextvars(**bound)
