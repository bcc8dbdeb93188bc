"""The service call is served in front of FastAPI's middleware and router (bus.middleware
.FrontRoute); what a caller sees must be what the router gave before: the same envelopes, the
same 404 and 405, the same last-resort error envelope, under a root path too."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from bus import create_app
from bus.middleware import FrontRoute
from bus.settings import Settings
from tests.support import running

pytestmark = pytest.mark.anyio

ECHO = "version: 1\nservices:\n  echo: {adapter: echo}\n"


async def test_the_call_is_served_with_its_path_parameters(
    settings_for: Callable[..., Settings],
) -> None:
    app = create_app(settings_for(ECHO))
    async with running(app) as client:
        reply = await client.post("/v1/services/echo/echo", json={"message": "xin chào"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["service"], body["operation"], body["status"]) == ("echo", "echo", "ok")
    assert reply.headers["x-request-id"] == body["request_id"]


@pytest.mark.parametrize(
    ("method", "path", "status", "code", "allow"),
    [
        ("GET", "/v1/services/echo/echo", 405, "client.method_not_allowed", "POST"),
        ("PUT", "/v1/services/echo/echo", 405, "client.method_not_allowed", "POST"),
        ("POST", "/v1/services/echo/echo/", 404, "client.not_found", None),
        ("POST", "/v1/services/echo/echo/more", 404, "client.not_found", None),
        ("POST", "/v1/services/echo", 405, "client.method_not_allowed", "GET"),
    ],
)
async def test_other_requests_on_the_call_path_still_get_the_routers_answer(
    method: str,
    path: str,
    status: int,
    code: str,
    allow: str | None,
    settings_for: Callable[..., Settings],
) -> None:
    app = create_app(settings_for(ECHO))
    async with running(app) as client:
        reply = await client.request(method, path, json={"message": "hi"})
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert body["error"]["code"] == code
    assert reply.headers["x-request-id"] == body["request_id"]
    assert reply.headers.get("allow") == allow


async def test_an_error_escaping_the_call_is_an_envelope(
    settings_for: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The call's own RequestIdMiddleware is the last net: bus.internal with the request id,
    no trace to the caller, the trace (personal number redacted) in the log."""

    async def broken(*args: Any) -> None:
        raise RuntimeError("bug near 001203004567")

    monkeypatch.setattr("bus.app.handle_call", broken)
    app = create_app(settings_for(ECHO))
    async with running(app) as client:
        reply = await client.post(
            "/v1/services/echo/echo", json={"message": "hi"}, headers={"X-Request-ID": "front-0001"}
        )
    assert reply.status_code == 500
    body = reply.json()
    assert (body["error"]["code"], body["request_id"]) == ("bus.internal", "front-0001")
    assert "bug near" not in reply.text
    log = capsys.readouterr().err
    assert "RuntimeError" in log
    assert "001203004567" not in log


async def test_under_a_root_path(settings_for: Callable[..., Settings]) -> None:
    """Behind a proxy that mounts the bus under a prefix (uvicorn --root-path), the call is
    matched on the path less the prefix, as the router matches every other route."""
    app = create_app(settings_for(ECHO))
    transport = httpx.ASGITransport(app, root_path="/lgsp")
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://bus") as client,
    ):
        reply = await client.post("/lgsp/v1/services/echo/echo", json={"message": "hi"})
        catalogue = await client.get("/lgsp/v1/services")
    assert reply.status_code == 200, reply.text
    assert reply.json()["operation"] == "echo"
    assert catalogue.status_code == 200


async def test_front_route_matches_the_whole_path_and_the_method() -> None:
    seen: list[str] = []

    async def front(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(f"front {scope['path_params']}")

    async def rest(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append("rest")

    route = FrontRoute(rest, re.compile(r"/a/(?P<x>[^/]+)"), ("POST",), front)

    async def nothing() -> dict[str, Any]:
        return {}

    async def ignore(message: Any) -> None:
        return None

    for method, path, root in [
        ("POST", "/a/1", ""),
        ("GET", "/a/1", ""),
        ("POST", "/a/1/2", ""),
        ("POST", "/pre/a/2", "/pre"),
        ("POST", "/prefix/a/3", "/pre"),  # not under the root path: matched as it is
    ]:
        scope = {"type": "http", "method": method, "path": path, "root_path": root}
        await route(scope, nothing, ignore)
    await route({"type": "lifespan"}, nothing, ignore)
    assert seen == ["front {'x': '1'}", "rest", "rest", "front {'x': '2'}", "rest", "rest"]
