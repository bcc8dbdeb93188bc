"""Fault injection for every mock: slow, failing, hanging, dropped and mangled replies.

``install_faults(app)`` puts a plain ASGI middleware in front of a mock app and adds three admin
routes that change its rules while it runs::

    GET    /__admin/faults   the rules in force: {"rules": [...], "seed": 7}
    PUT    /__admin/faults   replace them, body {"rules": [...], "seed": 7} (seed optional);
                             400 with one line per problem if the body is not valid
    DELETE /__admin/faults   clear them

Start-up rules come from the ``rules`` argument or, when it is ``None``, from the environment:
the mock's own variable, when ``install_faults`` is given one (``env_var``; the NGSP mock reads
``LGSP_MOCK_FAULTS_NGSP``, the population mock ``LGSP_MOCK_FAULTS_POPULATION``), then the shared
``LGSP_MOCK_FAULTS``, each a JSON list of rules. The mock's own rules come first, so they win
where both match a path. No rules means no faults, and the middleware then costs one check per
request. Paths under ``/__admin/`` are never faulted.

Each request is matched against the rules in order (``fnmatch`` globs on the path, ``*``
crosses ``/``); the first matching rule applies, the others are ignored. The rule's
``latency_ms`` is waited for every matching request. Then one draw from the injector's
``random.Random(seed)`` picks at most one fault, the rates being disjoint shares of the
requests (so they may add up to 1 at most)::

    timeout    wait hang_seconds (less if the client leaves first), then drop the connection
    reset      drop the connection without any reply (a TCP reset)
    error      answer one of error_statuses, picked at random, without calling the app
    malformed  call the app, then answer 200 with its headers and content-type but its body
               cut in half and followed by bytes that are not valid UTF-8, JSON or XML
    (none)     call the app normally

Dropping a connection. ASGI has no message for it: an app that raises, or returns without
answering, gets a ``500 Internal Server Error`` written by uvicorn, not a dropped connection.
So the middleware reaches the connection's transport through uvicorn's ``receive`` (a bound
method of its per-request cycle, which holds the transport), sets ``SO_LINGER`` to zero so that
closing sends a TCP RST, aborts it, and waits for uvicorn to see the disconnect. The client sees
``httpx.ReadError`` ("connection reset") or ``httpx.RemoteProtocolError``. Where no transport can
be found (``httpx.ASGITransport`` in tests, another server), ``InjectedConnectionDrop`` is
raised instead: in process, the client sees that exception. The middleware wraps the app's
whole middleware stack, Starlette's error handler included, so nothing turns a drop into a 500
and ``receive`` reaches it as the server gave it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import os
import random
import socket
import struct
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Annotated, Any, Literal

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "ADMIN_PREFIX",
    "ENV_VAR",
    "FaultConfig",
    "FaultInjector",
    "FaultMiddleware",
    "FaultRule",
    "InjectedConnectionDrop",
    "install_faults",
    "rules_from_env",
]

ENV_VAR = "LGSP_MOCK_FAULTS"
ADMIN_PREFIX = "/__admin/"
GARBAGE = b"\x00\xff\xfe<garbage"
"""Appended to a malformed body: invalid UTF-8, invalid JSON, invalid XML."""

Rate = Annotated[float, Field(ge=0, le=1)]
Fault = Literal["timeout", "reset", "error", "malformed"]
Sleep = Callable[[float], Awaitable[None]]


class FaultRule(BaseModel):
    """What to do to requests whose path matches ``path``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    path: str = "*"
    latency_ms: float = Field(default=0, ge=0)
    error_rate: Rate = 0
    error_statuses: list[Annotated[int, Field(ge=400, le=599)]] = Field(
        default=[500, 503], min_length=1
    )
    timeout_rate: Rate = 0
    hang_seconds: float = Field(default=30, ge=0)
    reset_rate: Rate = 0
    malformed_rate: Rate = 0

    @model_validator(mode="after")
    def _shares_fit(self) -> FaultRule:
        total = sum(share for _, share in self.shares())
        if total > 1 + 1e-9:
            raise ValueError(
                f"timeout_rate + reset_rate + error_rate + malformed_rate is {total:g}; "
                "they are shares of the same requests and may add up to 1 at most"
            )
        return self

    def shares(self) -> tuple[tuple[Fault, float], ...]:
        """Each fault with its share of the matching requests, in the order they are drawn."""
        return (
            ("timeout", self.timeout_rate),
            ("reset", self.reset_rate),
            ("error", self.error_rate),
            ("malformed", self.malformed_rate),
        )

    def matches(self, path: str) -> bool:
        return fnmatch.fnmatchcase(path, self.path)


class FaultConfig(BaseModel):
    """The body of ``PUT /__admin/faults``."""

    model_config = ConfigDict(extra="forbid")

    rules: list[FaultRule]
    seed: int | None = None


_RULES = TypeAdapter(list[FaultRule])


class InjectedConnectionDrop(ConnectionError):
    """Raised in place of dropping the connection when the server's transport is out of reach."""


class FaultInjector:
    """The rules of one app and the random source that applies them.

    ``sleep`` waits for latency and hangs; replace it (``injector.sleep = ...``) to test
    without waiting.
    """

    def __init__(
        self,
        rules: Iterable[FaultRule] = (),
        *,
        seed: int | None = None,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        self.sleep = sleep
        self._rules = tuple(rules)
        self._seed = seed
        self._random = random.Random(seed)  # noqa: S311 - chaos for test mocks, not cryptography

    @property
    def rules(self) -> tuple[FaultRule, ...]:
        return self._rules

    @property
    def seed(self) -> int | None:
        return self._seed

    def configure(self, rules: Iterable[FaultRule], *, seed: int | None = None) -> None:
        """Replace the rules; with a seed, also restart the random sequence from it."""
        self._rules = tuple(rules)
        if seed is not None:
            self._seed = seed
            self._random = random.Random(seed)  # noqa: S311 - as in __init__

    def clear(self) -> None:
        self._rules = ()

    def snapshot(self) -> dict[str, Any]:
        """The rules in force, as ``GET /__admin/faults`` shows them."""
        return {"rules": [rule.model_dump() for rule in self._rules], "seed": self._seed}

    def match(self, path: str) -> FaultRule | None:
        return next((rule for rule in self._rules if rule.matches(path)), None)

    def draw(self, rule: FaultRule) -> Fault | None:
        """Pick the fault for one request (or none); one draw per request that can be faulted."""
        shares = [(fault, share) for fault, share in rule.shares() if share > 0]
        if not shares:
            return None
        roll = self._random.random()
        for fault, share in shares:
            if roll < share:
                return fault
            roll -= share
        return None

    def error_status(self, rule: FaultRule) -> int:
        return self._random.choice(rule.error_statuses)


class FaultMiddleware:
    """Plain ASGI middleware applying a ``FaultInjector``'s rules to HTTP requests."""

    def __init__(self, app: ASGIApp, injector: FaultInjector) -> None:
        self.app = app
        self.injector = injector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        injector = self.injector
        if not injector.rules or scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        rule = injector.match(scope["path"])
        if rule is None:
            await self.app(scope, receive, send)
            return
        # Draw before waiting, so that the sequence follows the order requests arrive in.
        fault = injector.draw(rule)
        status = injector.error_status(rule) if fault == "error" else 0
        if rule.latency_ms > 0:
            await injector.sleep(rule.latency_ms / 1000)
        if fault is None:
            await self.app(scope, receive, send)
        elif fault == "error":
            await _send_error(send, status)
        elif fault == "malformed":
            await self.app(scope, receive, _MalformingSend(send))
        else:
            if fault == "timeout":
                await _hang(injector.sleep, rule.hang_seconds, receive)
            await _drop_connection(receive)


async def _send_error(send: Send, status: int) -> None:
    body = json.dumps({"error": "injected fault", "status": status}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _MalformingSend:
    """Holds back the app's reply, then sends it as a 200 with a mangled body."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._start: Message | None = None
        self._chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._start = message
        elif message["type"] == "http.response.body" and self._start is not None:
            self._chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                whole = b"".join(self._chunks)
                body = whole[: len(whole) // 2] + GARBAGE
                headers = [
                    (name, value)
                    for name, value in self._start.get("headers", [])
                    if name.lower() != b"content-length"
                ]
                headers.append((b"content-length", b"%d" % len(body)))
                await self._send({"type": "http.response.start", "status": 200, "headers": headers})
                await self._send({"type": "http.response.body", "body": body})
        else:
            await self._send(message)


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _hang(sleep: Sleep, seconds: float, receive: Receive) -> None:
    """Wait ``seconds``, or until the client gives up, whichever comes first."""
    async with anyio.create_task_group() as group:

        async def client_left() -> None:
            await _wait_for_disconnect(receive)
            group.cancel_scope.cancel()

        group.start_soon(client_left)
        await sleep(seconds)
        group.cancel_scope.cancel()


def _server_transport(receive: Receive) -> asyncio.Transport | None:
    """The connection's transport, when ``receive`` is a bound method of uvicorn's request
    cycle (its h11 and httptools protocols both keep it as ``transport``)."""
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    return transport if isinstance(transport, asyncio.Transport) else None


async def _drop_connection(receive: Receive) -> None:
    transport = _server_transport(receive)
    if transport is None:
        raise InjectedConnectionDrop("fault injection: connection dropped without a reply")
    if not transport.is_closing():  # the client may have left already (during a hang)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Linger on, timeout 0: closing the socket sends RST, the client sees a reset.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    # Return only once the server knows the client is gone, so it does not answer 500.
    with anyio.move_on_after(1):
        await _wait_for_disconnect(receive)


def _problems(exc: ValidationError) -> list[str]:
    """One readable line per validation error: ``rules.0.error_rate: Input should be ...``."""
    lines = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"])
        lines.append(f"{where}: {error['msg']}" if where else error["msg"])
    return lines


def rules_from_env(
    environ: Mapping[str, str] = os.environ, *, name: str = ENV_VAR
) -> list[FaultRule]:
    """The rules in the variable ``name`` (``LGSP_MOCK_FAULTS`` by default; a JSON list); none
    when it is unset or empty."""
    raw = environ.get(name, "").strip()
    if not raw:
        return []
    try:
        return _RULES.validate_json(raw)
    except ValidationError as exc:
        raise ValueError(
            f"{name} is not a valid list of fault rules: " + "; ".join(_problems(exc))
        ) from exc


def install_faults(
    app: FastAPI,
    rules: list[FaultRule] | None = None,
    *,
    seed: int | None = None,
    env_var: str | None = None,
) -> FaultInjector:
    """Add fault injection, outermost, and its admin routes to ``app`` (before it starts).

    When ``rules`` is ``None`` they come from the environment: those in ``env_var`` (a mock's
    own variable, if given) first, then those in ``LGSP_MOCK_FAULTS``."""
    if app.middleware_stack is not None:
        raise RuntimeError("install_faults must be called before the app has started")
    if rules is None:
        own = rules_from_env(name=env_var) if env_var and env_var != ENV_VAR else []
        rules = own + rules_from_env()
    injector = FaultInjector(rules, seed=seed)
    build_stack = app.build_middleware_stack

    def build_with_faults() -> ASGIApp:
        return FaultMiddleware(build_stack(), injector)

    # Faults stand for the network, so they wrap the whole stack, outside what add_middleware
    # can reach (Starlette's ServerErrorMiddleware, FastAPI's body limit): a dropped connection
    # must not become their 500, and receive must stay the server's own. Starlette builds the
    # stack once, on the first call, through this method; assigning it per instance is the only
    # hook, hence the ignore.
    app.build_middleware_stack = build_with_faults  # type: ignore[method-assign]

    @app.get(f"{ADMIN_PREFIX}faults", include_in_schema=False)
    async def get_faults() -> dict[str, Any]:
        return injector.snapshot()

    @app.put(f"{ADMIN_PREFIX}faults", include_in_schema=False)
    async def put_faults(request: Request) -> JSONResponse:
        try:
            config = FaultConfig.model_validate_json(await request.body())
        except ValidationError as exc:
            return JSONResponse(
                {"error": "invalid fault rules", "problems": _problems(exc)}, status_code=400
            )
        injector.configure(config.rules, seed=config.seed)
        return JSONResponse(injector.snapshot())

    @app.delete(f"{ADMIN_PREFIX}faults", include_in_schema=False)
    async def delete_faults() -> dict[str, Any]:
        injector.clear()
        return injector.snapshot()

    return injector
