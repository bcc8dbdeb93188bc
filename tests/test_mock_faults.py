"""Fault injection for the mocks: each kind of fault, the rules' matching and randomness, the
admin routes, and the drops and hangs as a real client sees them from a real uvicorn server."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from mocks.faults import (
    ENV_VAR,
    GARBAGE,
    FaultInjector,
    FaultRule,
    InjectedConnectionDrop,
    install_faults,
)

pytestmark = pytest.mark.anyio

REPLY = {"message": "xin chào", "items": list(range(20))}


def plain_app() -> tuple[FastAPI, list[str]]:
    """A small mock with two routes; the list collects the paths it really served."""
    app = FastAPI()
    served: list[str] = []

    @app.get("/hello")
    async def hello() -> dict[str, Any]:
        served.append("/hello")
        return REPLY

    @app.post("/dancu/1.0/soap", status_code=201)
    async def soap() -> dict[str, Any]:
        served.append("/dancu/1.0/soap")
        return REPLY

    return app, served


def faulty_app(
    rules: list[FaultRule] | None, seed: int | None = None
) -> tuple[FastAPI, FaultInjector, list[str]]:
    app, served = plain_app()
    injector = install_faults(app, rules, seed=seed)
    return app, injector, served


@asynccontextmanager
async def in_process(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://mock"
    ) as client:
        yield client


class RecordingSleep:
    """Stands in for ``anyio.sleep``: remembers each wait and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@asynccontextmanager
async def served_by_uvicorn(app: FastAPI) -> AsyncIterator[str]:
    """``app`` under a real uvicorn server on a free loopback port, in this event loop."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="off", ws="none",
        timeout_graceful_shutdown=10,  # longer than the shutdown wait below: no hang is cut short
    )  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(5):
            while not server.started:
                assert not task.done(), "uvicorn stopped while starting"
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(5):
            await task
        sock.close()


# --- in process ---------------------------------------------------------------------------


async def test_no_rules_leaves_replies_alone() -> None:
    """Without rules the app answers as if fault injection were not there."""
    app, _, served = faulty_app([])
    async with in_process(app) as client:
        reply = await client.get("/hello")
        state = await client.get("/__admin/faults")
    assert reply.status_code == 200
    assert reply.json() == REPLY
    assert served == ["/hello"]
    assert state.json() == {"rules": [], "seed": None}


async def test_latency_is_waited_before_answering() -> None:
    """latency_ms is waited (through the injector's sleep) on every matching request."""
    app, injector, served = faulty_app([FaultRule(latency_ms=250)])
    injector.sleep = sleep = RecordingSleep()
    async with in_process(app) as client:
        replies = [await client.get("/hello") for _ in range(3)]
    assert [r.status_code for r in replies] == [200, 200, 200]
    assert sleep.waits == [0.25, 0.25, 0.25]
    assert len(served) == 3


async def test_latency_really_delays_by_default() -> None:
    """With the default sleep, a small latency_ms really delays the reply."""
    app, _, _ = faulty_app([FaultRule(latency_ms=60)])
    async with in_process(app) as client:
        started = time.monotonic()
        reply = await client.get("/hello")
        elapsed = time.monotonic() - started
    assert reply.status_code == 200
    assert elapsed >= 0.06


async def test_error_rate_one_answers_only_error_statuses() -> None:
    """error_rate=1 replaces every reply by one of error_statuses, without calling the app."""
    app, _, served = faulty_app([FaultRule(error_rate=1, error_statuses=[502, 504])], seed=3)
    async with in_process(app) as client:
        replies = [await client.get("/hello") for _ in range(30)]
    statuses = {reply.status_code for reply in replies}
    assert statuses == {502, 504}
    assert replies[0].headers["content-type"] == "application/json"
    assert replies[0].json()["error"] == "injected fault"
    assert served == []


async def test_first_matching_rule_applies() -> None:
    """Rules are tried in order on the path glob; the first match wins, others pass untouched."""
    rules = [
        FaultRule(path="/dancu/*", error_rate=1, error_statuses=[503]),
        FaultRule(path="/dancu/1.0/soap", error_rate=1, error_statuses=[500]),
        FaultRule(path="/other", error_rate=1),
    ]
    app, _, served = faulty_app(rules)
    async with in_process(app) as client:
        soap = await client.post("/dancu/1.0/soap")
        hello = await client.get("/hello")
    assert soap.status_code == 503
    assert hello.status_code == 200
    assert served == ["/hello"]


async def test_malformed_keeps_headers_and_mangles_the_body() -> None:
    """malformed_rate=1 answers 200 with the app's content-type and half its body plus garbage."""
    app, _, served = faulty_app([FaultRule(malformed_rate=1)])
    async with in_process(app) as client:
        reply = await client.post("/dancu/1.0/soap")
    whole = json.dumps(REPLY, ensure_ascii=False, separators=(",", ":")).encode()
    assert reply.status_code == 200  # the app said 201
    assert reply.headers["content-type"] == "application/json"
    assert reply.content == whole[: len(whole) // 2] + GARBAGE
    assert int(reply.headers["content-length"]) == len(reply.content)
    with pytest.raises((json.JSONDecodeError, UnicodeDecodeError)):
        reply.json()
    assert served == ["/dancu/1.0/soap"]


async def test_reset_without_a_server_transport_raises() -> None:
    """In process there is no connection to drop: the client sees InjectedConnectionDrop."""
    app, _, served = faulty_app([FaultRule(reset_rate=1)])
    async with in_process(app) as client:
        with pytest.raises(InjectedConnectionDrop):
            await client.get("/hello")
    assert served == []


async def test_timeout_hangs_for_hang_seconds_then_drops() -> None:
    """timeout_rate=1 waits hang_seconds, then drops the connection instead of answering."""
    app, injector, served = faulty_app([FaultRule(timeout_rate=1, hang_seconds=12)])
    injector.sleep = sleep = RecordingSleep()
    async with in_process(app) as client:
        with pytest.raises(InjectedConnectionDrop):
            await client.get("/hello")
    assert sleep.waits == [12]
    assert served == []


async def test_seed_makes_the_faults_repeatable() -> None:
    """Two injectors with the same seed fault the same requests; a PUT with the seed restarts."""
    rule = FaultRule(error_rate=0.5, error_statuses=[500, 503])

    async def statuses(client: httpx.AsyncClient) -> list[int]:
        return [(await client.get("/hello")).status_code for _ in range(40)]

    first, _, _ = faulty_app([rule], seed=42)
    second, _, _ = faulty_app([rule], seed=42)
    async with in_process(first) as one, in_process(second) as two:
        sequence = await statuses(one)
        assert await statuses(two) == sequence
        await one.put("/__admin/faults", json={"rules": [rule.model_dump()], "seed": 42})
        assert await statuses(one) == sequence
    assert set(sequence) == {200, 500, 503}


async def test_rules_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """With rules=None, install_faults reads LGSP_MOCK_FAULTS; explicit rules take precedence."""
    monkeypatch.setenv(ENV_VAR, json.dumps([{"path": "/hello", "error_rate": 1}]))
    from_env, injector, _ = faulty_app(None)
    explicit, _, _ = faulty_app([])
    assert injector.rules == (FaultRule(path="/hello", error_rate=1),)
    async with in_process(from_env) as one, in_process(explicit) as two:
        assert (await one.get("/hello")).status_code in {500, 503}
        assert (await two.get("/hello")).status_code == 200


def test_bad_environment_rules_stop_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """An invalid LGSP_MOCK_FAULTS fails install_faults with the variable and field named."""
    monkeypatch.setenv(ENV_VAR, '[{"path": "*", "reset_rate": 2}]')
    app, _ = plain_app()
    with pytest.raises(ValueError, match=r"LGSP_MOCK_FAULTS.*0\.reset_rate"):
        install_faults(app)


# --- admin routes ---------------------------------------------------------------------------


async def test_admin_put_get_delete() -> None:
    """PUT replaces the rules (defaults filled in), GET shows them, DELETE clears them."""
    app, injector, _ = faulty_app([FaultRule(path="/old", latency_ms=5)])
    async with in_process(app) as client:
        put = await client.put(
            "/__admin/faults",
            json={"rules": [{"path": "/hello", "error_rate": 1, "error_statuses": [429]}]},
        )
        shown = await client.get("/__admin/faults")
        faulted = await client.get("/hello")
        deleted = await client.delete("/__admin/faults")
        healed = await client.get("/hello")
    assert put.status_code == 200
    assert shown.json() == put.json()
    assert shown.json()["rules"] == [
        {
            "path": "/hello",
            "latency_ms": 0,
            "error_rate": 1,
            "error_statuses": [429],
            "timeout_rate": 0,
            "hang_seconds": 30,
            "reset_rate": 0,
            "malformed_rate": 0,
        }
    ]
    assert faulted.status_code == 429
    assert deleted.json() == {"rules": [], "seed": None}
    assert injector.rules == ()
    assert healed.status_code == 200


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "Invalid JSON"),
        (b'{"rules": {"path": "*"}}', "rules: Input should be a valid array"),
        (b'{"rules": [{"paht": "*"}]}', "rules.0.paht: Extra inputs are not permitted"),
        (b'{"rules": [{"error_rate": 1.5}]}', "rules.0.error_rate: Input should be less than"),
        (b'{"rules": [{"latency_ms": -1}]}', "rules.0.latency_ms: Input should be greater"),
        (b'{"rules": [{"error_statuses": []}]}', "rules.0.error_statuses: List should have"),
        (b'{"rules": [{"error_statuses": [200]}]}', "rules.0.error_statuses.0: Input should be"),
        (b'{"rules": [{"error_rate": 0.6, "reset_rate": 0.6}]}', "may add up to 1 at most"),
        (b'{"rules": [], "seed": "x"}', "seed: Input should be a valid integer"),
    ],
)
async def test_admin_refuses_bad_rules_with_400(body: bytes, problem: str) -> None:
    """A bad PUT body gets 400 naming each problem, and the rules in force stay as they were."""
    rules = [FaultRule(path="/kept", latency_ms=1)]
    app, injector, _ = faulty_app(rules)
    async with in_process(app) as client:
        reply = await client.put(
            "/__admin/faults", content=body, headers={"content-type": "application/json"}
        )
    assert reply.status_code == 400
    assert reply.json()["error"] == "invalid fault rules"
    assert any(problem in line for line in reply.json()["problems"]), reply.json()
    assert injector.rules == tuple(rules)


async def test_admin_routes_are_never_faulted() -> None:
    """Even with every request faulted, the admin routes answer and can lift the faults."""
    app, _, _ = faulty_app([FaultRule(error_rate=1), FaultRule(path="/__admin/*", reset_rate=1)])
    async with in_process(app) as client:
        assert (await client.get("/hello")).status_code in {500, 503}
        assert (await client.get("/__admin/faults")).status_code == 200
        assert (await client.delete("/__admin/faults")).status_code == 200
        assert (await client.get("/hello")).status_code == 200


# --- against a real uvicorn server -----------------------------------------------------------


@pytest.mark.live
async def test_live_reset_is_a_transport_error() -> None:
    """reset_rate=1 drops the connection: the client gets a transport error, not a 500, and
    the server goes on serving."""
    app, _, served = faulty_app([FaultRule(path="/hello", reset_rate=1)])
    async with served_by_uvicorn(app) as base, httpx.AsyncClient(base_url=base) as client:
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            await client.get("/hello", timeout=3)
        await client.delete("/__admin/faults")
        assert (await client.get("/hello", timeout=3)).status_code == 200
    assert served == ["/hello"]


@pytest.mark.live
async def test_live_timeout_hangs_then_drops() -> None:
    """timeout_rate=1 sends nothing for hang_seconds, then drops the connection."""
    app, _, served = faulty_app([FaultRule(timeout_rate=1, hang_seconds=0.3)])
    async with served_by_uvicorn(app) as base, httpx.AsyncClient(base_url=base) as client:
        started = time.monotonic()
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            await client.get("/hello", timeout=3)
        assert time.monotonic() - started >= 0.3
    assert served == []


@pytest.mark.live
async def test_live_timeout_outlasts_the_client() -> None:
    """A hang longer than the client's patience is a client read timeout; the server stops
    hanging as soon as the client leaves (the server shuts down promptly)."""
    app, _, _ = faulty_app([FaultRule(timeout_rate=1, hang_seconds=30)])
    started = time.monotonic()
    async with served_by_uvicorn(app) as base, httpx.AsyncClient(base_url=base) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/hello", timeout=0.3)
    assert time.monotonic() - started < 1.5


@pytest.mark.live
async def test_live_malformed_is_a_complete_200_with_a_broken_body() -> None:
    """malformed_rate=1 over real HTTP: a well-framed 200 of the right type that cannot be read."""
    app, _, _ = faulty_app([FaultRule(malformed_rate=1)])
    async with served_by_uvicorn(app) as base, httpx.AsyncClient(base_url=base) as client:
        reply = await client.get("/hello", timeout=3)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.content.endswith(GARBAGE)
    with pytest.raises((json.JSONDecodeError, UnicodeDecodeError)):
        reply.json()
