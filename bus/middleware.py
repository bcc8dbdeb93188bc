"""The app's plain ASGI layers: :class:`FrontRoute` and :class:`RequestIdMiddleware`.

:class:`RequestIdMiddleware` wraps both ways into the app: the service call directly, every
other route inside FastAPI's own layers (as the first middleware added to it).

It takes a well-formed ``X-Request-ID`` from the caller (unless it holds a personal number:
:func:`holds_personal_number`) or makes one, stores it in
``scope["state"]``, binds it into every log line, and echoes it on the reply. It also turns any
exception that escapes the app into a ``bus.internal`` envelope carrying the request id; the
stack trace goes to the server log, never to the caller.

:class:`FrontRoute`, in front of everything, serves one route (the service call) before
FastAPI's own middleware and router, which every other request goes through.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import structlog
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bus.errors import InternalError, error_envelope
from bus.ids import new_id

__all__ = [
    "REQUEST_ID_PATTERN",
    "FrontRoute",
    "FrontRoutedApp",
    "RequestIdMiddleware",
    "endpoint_app",
    "holds_personal_number",
    "request_id_of",
]

#: What a caller's request id may look like: 8 to 128 letters, digits, '.', '_', ':' or '-'.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{7,127}")

#: A run of digits in a request id shaped like a personal number: 9 digits (an old id), 10 to 12
#: from a 0 (a phone, an old 11-digit phone, a citizen id: each starts with 0), or 84 and a
#: phone's 9 digits (the international form; a "+" is not allowed in a request id anyway).
#: Runs only, bounded by non-digits: an id's dates and counters are groups of digits
#: ("2026-11-21-000123", "000.00.00.H00-261121-0001") and stay adoptable.
PERSONAL_NUMBER_IN_ID = re.compile(r"(?<!\d)(?:\d{9}|0\d{9,11}|84\d{9})(?!\d)")

#: A UUID in its canonical text form: adopted as it is, whatever digits its groups hold.
UUID_PATTERN = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")

log = structlog.get_logger("lgsp.http")


def holds_personal_number(request_id: str) -> bool:
    """Whether a caller's request id holds a digit run shaped like a personal number (a citizen
    id, an old id, a phone: :data:`PERSONAL_NUMBER_IN_ID`).

    Such an id is refused: the request id is logged in clear and kept in the exchange record's
    ``request_id`` column, so a system that numbers its requests after the citizen would put the
    citizen's number in every log line of the call. A canonical UUID never counts: its hex
    groups often hold such digit runs by chance.
    """
    if UUID_PATTERN.fullmatch(request_id):
        return False
    return PERSONAL_NUMBER_IN_ID.search(request_id) is not None


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
        sent = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                sent = value.decode("latin-1")
                break
        well_formed = REQUEST_ID_PATTERN.fullmatch(sent) is not None
        personal = well_formed and holds_personal_number(sent)
        request_id = sent if well_formed and not personal else new_id()
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
        if personal:  # (the refused value is not logged: it is what the logs must not hold)
            log.warning(
                "X-Request-ID refused: it holds a number shaped like a personal id or a phone; "
                "the call uses a generated request id"
            )
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


class FrontRoute:
    """One route served in front of an app's middleware and router.

    A request whose method is in ``methods`` and whose path (less the ``root_path``) matches
    ``path`` whole goes straight to ``front`` (an ASGI app, e.g. :func:`endpoint_app`), with
    the pattern's named groups as its path parameters; anything else goes to ``app``. FastAPI
    wraps every request in its own layers (server errors, OpenTelemetry, a body limit,
    exception handlers, an exit stack, the router's match): the service call, which handles its
    own body, errors and envelope, skips them. A bare proxy served both ways in one run spent
    about a quarter less CPU per call this way. :class:`FrontRoutedApp` also registers the
    route with the router, which then answers a wrong method with 405.
    """

    def __init__(
        self, app: ASGIApp, path: re.Pattern[str], methods: Collection[str], front: ASGIApp
    ) -> None:
        self.app = app
        self.path = path
        self.methods = frozenset(methods)
        self.front = front

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in self.methods:
            found = self.path.fullmatch(_route_path(scope))
            if found is not None:
                scope["path_params"] = found.groupdict()
                await self.front(scope, receive, send)
                return
        await self.app(scope, receive, send)


class FrontRoutedApp(FastAPI):
    """A FastAPI app whose route ``path`` (a Starlette path such as
    ``/v1/services/{service}/{operation}``) is served, for ``methods``, by a :class:`FrontRoute`
    in front of its own middleware and router: by ``front`` if given (``endpoint`` wrapped in
    its own middleware), else by ``endpoint`` alone. The route is registered with the router
    too, so that another method on it gets the router's 405. The gateway serves its service call
    this way, and so does the benchmark's stack-proxy peer, which stands for the gateway's stack.
    """

    def __init__(
        self,
        path: str,
        methods: Collection[str],
        endpoint: Callable[[Request], Awaitable[Response]],
        *,
        front: ASGIApp | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.router.add_route(path, endpoint, methods=list(methods), include_in_schema=False)
        pattern = compile_path(path)[0]  # as the router matches it
        self._front = (pattern, methods, front if front is not None else endpoint_app(endpoint))

    def build_middleware_stack(self) -> ASGIApp:
        return FrontRoute(super().build_middleware_stack(), *self._front)


def endpoint_app(endpoint: Callable[[Request], Awaitable[Response]]) -> ASGIApp:
    """``endpoint`` as a bare ASGI app: a request in, its response sent."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = await endpoint(Request(scope, receive, send))
        await response(scope, receive, send)

    return app


def _route_path(scope: Scope) -> str:
    """The path a router matches: ``path`` without the ``root_path`` it is mounted under."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("/", ""):
        return path[len(root) :]
    return path
