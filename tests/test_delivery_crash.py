"""The crash test: 1,000 queued messages, the delivery worker killed with SIGKILL in the middle
of delivering them, a new worker started. Every message reaches the upstream, none is lost, each
is applied exactly once as the upstream sees it (it de-duplicates by the delivery id the bus
sends as Idempotency-Key), and the messages of each parcel arrive in the order they were queued.

Real processes on loopback: `lgsp serve` queues, `lgsp worker` delivers, a small upstream in a
thread of the test records what it receives.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.conftest import EXAMPLE_PLUGIN_DIR

pytestmark = pytest.mark.live

PARCELS = 50
STEPS = 20  # 50 parcels x 20 changes = 1,000 messages
KILL_AFTER = 300  # applied messages before the worker is killed
LGSP = Path(sys.executable).with_name("lgsp")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Registry:
    """The upstream: applies each change once per Idempotency-Key, counts every request;
    answers parcel reads after ``read_delay`` seconds."""

    def __init__(self) -> None:
        self.applied: dict[str, tuple[str, int]] = {}
        self.order: dict[str, list[int]] = defaultdict(list)
        self.requests: Counter[str] = Counter()
        self.read_delay = 0.0
        self.reads_started = threading.Event()
        self.change_delay = 0.01  # a real registry takes a little while
        self.changes_started = 0

    async def parcel(self, request: Request) -> JSONResponse:
        self.reads_started.set()
        await asyncio.sleep(self.read_delay)
        return JSONResponse({"id": request.path_params["parcel"], "area": 512, "use": "ODT"})

    async def change(self, request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ClientDisconnect:  # the worker was killed while sending
            return JSONResponse({"error": "the client went away"}, status_code=400)
        self.changes_started += 1
        await asyncio.sleep(self.change_delay)
        key = request.headers["idempotency-key"]
        self.requests[key] += 1
        if key not in self.applied:
            parcel = request.path_params["parcel"]
            step = int(body["change"].removeprefix("step "))
            self.applied[key] = (parcel, step)
            self.order[parcel].append(step)
        return JSONResponse({"id": f"c-{key}"}, status_code=201)


@pytest.fixture
def registry() -> Iterator[tuple[Registry, str]]:
    reg = Registry()
    app = Starlette(
        routes=[
            Route("/api/parcels/{parcel}/changes", reg.change, methods=["POST"]),
            Route("/api/parcels/{parcel}", reg.parcel, methods=["GET"]),
        ]
    )
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield reg, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _environment(tmp_path: Path, upstream: str, timeout: float = 2) -> dict[str, str]:
    site = tmp_path / "site"
    info = site / "lgsp_example_parcels-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: lgsp-example-parcels\nVersion: 0.1.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[lgsp.adapters]\nparcels = lgsp_example_parcels:ParcelAdapter\n"
    )
    config = tmp_path / "bus.yaml"
    config.write_text(f"""\
version: 1
services:
  land:
    adapter: parcels
    upstream:
      base_url: {upstream}/api
      credentials: {{api_key: PARCELS_API_KEY}}
      health_path: null
    timeout: {timeout}
    retry: none
    delivery: {{attempts: 100, initial_wait: 0.2, max_wait: 1, jitter: 0.1}}
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LGSP_")}
    return env | {
        "PYTHONPATH": os.pathsep.join([str(site), str(EXAMPLE_PLUGIN_DIR)]),
        "PARCELS_API_KEY": "k-crash",
        "LGSP_CONFIG": str(config),
        "LGSP_AUTH": "open",
        "LGSP_STORE_PATH": str(tmp_path / "lgsp.db"),
        "LGSP_DELIVERY_WORKER": "off",  # only the `lgsp worker` processes deliver
        "LGSP_DELIVERY_CONCURRENCY": "16",
        "LGSP_DELIVERY_POLL_SECONDS": "0.2",
        "LGSP_LOG_LEVEL": "warning",
    }


def _start(env: dict[str, str], *args: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([str(LGSP), *args], env=env, stdout=out, stderr=out)


def _states(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT state, count(*) FROM deliveries GROUP BY state"))


async def _queue(base: str, changes: list[tuple[str, int]]) -> list[str]:
    """Queue ``changes`` (parcel, step) through the gateway, concurrently; their delivery ids."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:

        async def one(parcel: str, step: int) -> str:
            reply = await client.post(
                "/v1/services/land/parcel.change",
                json={"parcel_id": parcel, "change": f"step {step}"},
            )
            assert reply.status_code == 202, reply.text
            return str(reply.json()["data"]["delivery_id"])

        return list(await asyncio.gather(*(one(parcel, step) for parcel, step in changes)))


async def _queue_all(base: str) -> list[str]:
    """Queue STEPS changes for each parcel, each parcel's in order; parcels concurrently."""
    ids: list[str] = []
    for step in range(STEPS):
        ids += await _queue(base, [(f"12-{p:04d}", step) for p in range(PARCELS)])
    return ids


def _wait(what: str, done: Callable[[], bool], seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if done():
            return
        time.sleep(0.05)
    pytest.fail(f"{what} did not happen within {seconds} s; logs:\n{log.read_text()[-4000:]}")


def _serve(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = _start(env, "serve", "--port", str(port), log=log)
    base = f"http://127.0.0.1:{port}"

    def serving() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=0.5).status_code == 200
        except httpx.TransportError:
            return False

    _wait("lgsp serve answering", serving, 30, log)
    return proc, base


def test_sigterm_finishes_calls_in_flight_and_keeps_the_queue(
    registry: tuple[Registry, str], tmp_path: Path
) -> None:
    """SIGTERM: the gateway stops accepting connections, the call in flight still gets its
    answer, the in-process worker's deliveries stuck past the grace period go back to the
    queue (no attempt counted), and the process exits cleanly; nothing queued is lost."""
    reg, upstream = registry
    reg.read_delay = 1.5
    reg.change_delay = 8.0  # longer than the grace, shorter than the deadline of 10 s
    env = _environment(tmp_path, upstream, timeout=10) | {
        "LGSP_GRACE_SECONDS": "2",
        "LGSP_DELIVERY_WORKER": "inprocess",
    }
    log = tmp_path / "processes.log"
    server, base = _serve(env, log)
    try:
        ids = asyncio.run(_queue(base, [("12-0001", 0), ("12-0002", 0), ("12-0003", 0)]))
        _wait("deliveries in flight", lambda: reg.changes_started == 3, 10, log)
        answers: list[httpx.Response] = []
        call = threading.Thread(
            target=lambda: answers.append(
                httpx.post(
                    f"{base}/v1/services/land/parcel.get",
                    json={"parcel_id": "12-0034"},
                    timeout=10,
                )
            )
        )
        call.start()
        assert reg.reads_started.wait(10)
        server.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(httpx.TransportError):  # no longer accepting
            httpx.get(f"{base}/healthz", timeout=1)
        call.join(timeout=10)
        # uvicorn re-raises the signal once its graceful shutdown is done, as the convention
        # for a process stopped by a signal; the answer below shows nothing was cut short.
        assert server.wait(timeout=20) in (0, -signal.SIGTERM)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)
    assert [a.status_code for a in answers] == [200]
    assert answers[0].json()["data"]["parcel_id"] == "12-0034"
    with sqlite3.connect(tmp_path / "lgsp.db") as conn:
        rows = conn.execute("SELECT id, state, attempts FROM deliveries").fetchall()
    assert sorted(rows) == sorted((i, "queued", 0) for i in ids)
    assert reg.applied == {}  # none was delivered: all three stay queued for the next start


def test_sigkill_in_the_middle_of_delivery_loses_nothing_and_duplicates_nothing(
    registry: tuple[Registry, str], tmp_path: Path
) -> None:
    reg, upstream = registry
    env = _environment(tmp_path, upstream)
    db = tmp_path / "lgsp.db"
    log = tmp_path / "processes.log"
    server, base = _serve(env, log)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        ids = asyncio.run(_queue_all(base))
        assert len(set(ids)) == PARCELS * STEPS
        assert _states(db) == {"queued": PARCELS * STEPS}
        assert reg.requests.total() == 0  # nothing is delivered by the gateway itself

        workers.append(_start(env, "worker", log=log))
        _wait(f"{KILL_AFTER} deliveries", lambda: len(reg.applied) >= KILL_AFTER, 60, log)
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(timeout=10)
        at_kill = _states(db)
        applied_at_kill = len(reg.applied)
        assert at_kill.get("in_flight", 0) > 0, f"not killed mid-delivery: {at_kill}"
        assert applied_at_kill < PARCELS * STEPS

        workers.append(_start(env, "worker", log=log))
        total = PARCELS * STEPS
        _wait("every delivery", lambda: _states(db).get("delivered") == total, 90, log)
        workers[1].send_signal(signal.SIGTERM)
        assert workers[1].wait(timeout=30) == 0  # a graceful stop
    finally:
        for proc in (server, *workers):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)

    with sqlite3.connect(db) as conn:
        lost = conn.execute("SELECT count(*) FROM delivery_attempts WHERE outcome = 'lost'")
        lost_attempts = lost.fetchone()[0]
    duplicates = reg.requests.total() - len(reg.requests)
    print(
        f"\ncrash run: {total} messages queued; worker SIGKILLed after {applied_at_kill} applied "
        f"with {at_kill.get('in_flight', 0)} in flight; restarted worker finished. upstream "
        f"applied {len(reg.applied)} distinct, received {reg.requests.total()} requests "
        f"({duplicates} redeliveries recognised by delivery id); {lost_attempts} attempts "
        f"recorded as lost; per-parcel order kept for {len(reg.order)} parcels"
    )
    # Nothing lost: every queued delivery id reached the upstream and was applied.
    assert set(reg.applied) == set(ids)
    # Exactly once as the upstream sees it: one application per delivery id; a redelivery of a
    # message whose outcome the killed worker never recorded is recognised, not re-applied.
    assert len(reg.applied) == total
    # In order: each parcel's changes were applied in the order they were queued.
    for parcel, steps in reg.order.items():
        assert steps == list(range(STEPS)), f"{parcel} applied out of order: {steps}"
    # The killed worker's leases were taken over and their attempts recorded as lost.
    assert lost_attempts == at_kill.get("in_flight", 0)
    assert _states(db) == {"delivered": total}
