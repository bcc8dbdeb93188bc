"""``lgsp serve --workers N`` on Linux: one listening socket per worker (SO_REUSEPORT), so the
kernel spreads connections over the workers, under a parent that keeps them running."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from bus.workers import STARTUP_FAILURE, balanced, listening_socket

pytestmark = pytest.mark.skipif(not balanced(), reason="SO_REUSEPORT balances only on Linux")

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_each_worker_listens_on_the_same_port_with_a_socket_of_its_own() -> None:
    port = _free_port()
    first = listening_socket("127.0.0.1", port, 16)
    try:
        second = listening_socket("127.0.0.1", port, 16)  # EADDRINUSE without SO_REUSEPORT
        second.close()
    finally:
        first.close()


def _launch(
    port: int, workers: int = 2, app: str = "create", extra: str = ""
) -> subprocess.Popen[str]:
    """``serve_workers`` in a process of its own, serving ``tests.workers_app``."""
    options = {
        "app": f"tests.workers_app:{app}",
        "factory": True,
        "host": "127.0.0.1",
        "port": port,
        "backlog": 128,
        "log_config": None,
        "timeout_graceful_shutdown": 2,
    }
    code = (
        "import sys; from bus.workers import serve_workers; "
        f"sys.exit(serve_workers({workers}, {options!r}, 2.0{extra}))"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _listeners(port: int) -> int:
    """How many sockets listen on ``port`` (``/proc/net/tcp``: state 0A is LISTEN)."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(
        1
        for row in rows
        if int(row.split()[1].rsplit(":", 1)[1], 16) == port and row.split()[3] == "0A"
    )


def _wait_until_serving(proc: subprocess.Popen[str], port: int, workers: int = 2) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        if _listeners(port) == workers:
            return
        time.sleep(0.1)
    pytest.fail("the workers did not start")


def _ended(proc: subprocess.Popen[str]) -> tuple[int | None, str]:
    """The exit code of ``proc`` (``None`` if it was still running after 60 s: then killed)
    and everything it wrote."""
    try:
        code: int | None = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        code = None
        proc.kill()
    return code, proc.communicate(timeout=30)[0]


@pytest.fixture
def served() -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = _free_port()
    proc = _launch(port)
    try:
        _wait_until_serving(proc, port)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def _spread(port: int, connections: int) -> Counter[int]:
    """The worker pid behind each of ``connections`` connections, all opened before any is
    used (as a client's pool does)."""
    pids: Counter[int] = Counter()
    with ExitStack() as stack:
        socks = [
            stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
            for _ in range(connections)
        ]
        for sock in socks:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
            pids[int(reply.rsplit(b"\r\n\r\n", 1)[1])] += 1
    return pids


@pytest.mark.live
def test_connections_are_spread_over_the_workers(served: tuple[subprocess.Popen[str], int]) -> None:
    """32 connections opened together land on both workers, none with fewer than 4. With one
    socket shared by the workers, the first to wake takes them all."""
    _, port = served
    pids = _spread(port, 32)
    assert len(pids) == 2, pids
    assert min(pids.values()) >= 4, pids


@pytest.mark.live
def test_a_worker_that_dies_is_replaced(served: tuple[subprocess.Popen[str], int]) -> None:
    proc, port = served
    before = set(_spread(port, 32))
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            now = set(_spread(port, 32))
        except (OSError, IndexError, ValueError):  # a connection the dead worker had queued
            continue
        if victim not in now and len(now) == 2 and _listeners(port) == 2:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"no new worker replaced {victim}")
    assert proc.poll() is None


@pytest.mark.live
def test_sigterm_stops_the_workers_then_the_parent(
    served: tuple[subprocess.Popen[str], int],
) -> None:
    proc, port = served
    workers = set(_spread(port, 32))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.live
def test_a_port_taken_by_another_program_stops_everything_with_exit_3() -> None:
    """A worker that cannot listen fails the same way on every restart: the parent stops."""
    with socket.socket() as taken:  # no SO_REUSEPORT: no other socket may join it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, output = _ended(_launch(taken.getsockname()[1]))
    assert code == STARTUP_FAILURE, output
    assert "cannot listen" in output


@pytest.mark.live
def test_lgsp_serve_with_two_workers_serves_calls_and_stops_on_sigterm(
    write_config: Callable[[str], Path], tmp_path: Path
) -> None:
    """`lgsp serve --workers 2`: two sockets on the port, a call answered through them, and
    SIGTERM ends the whole (exit 0)."""
    port = _free_port()
    lgsp = Path(sys.executable).with_name("lgsp")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LGSP_")}
    env |= {"LGSP_AUTH": "open", "LGSP_STORE_PATH": str(tmp_path / "lgsp.db")}
    config = write_config("version: 1\nservices:\n  echo: {adapter: echo}\n")
    proc = subprocess.Popen(
        [str(lgsp), "serve", "--config", str(config), "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_until_serving(proc, port)
        reply = httpx.post(
            f"http://127.0.0.1:{port}/v1/services/echo/echo", json={"message": "hai"}, timeout=5
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["data"]["message"] == "hai"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert _listeners(port) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


@pytest.mark.live
def test_workers_that_keep_dying_as_they_start_stop_everything_with_exit_3() -> None:
    """A crash loop is reported, not kept up: each death soon after a start waits longer
    before the next start, and after ``give_up_after`` in a row the parent exits 3."""
    code, output = _ended(_launch(_free_port(), workers=1, app="broken", extra=", give_up_after=3"))
    assert code == STARTUP_FAILURE, output
    assert output.count("a worker died; starting another") == 2, output
    assert "a worker cannot start" in output


@pytest.mark.live
def test_a_port_another_gateway_serves_is_refused(
    served: tuple[subprocess.Popen[str], int],
) -> None:
    """Its sockets have SO_REUSEPORT too, so ours would join their group and share its
    connections: the port is checked with a plain bind first, and refused with exit 3."""
    _, port = served
    code, output = _ended(_launch(port))
    assert code == STARTUP_FAILURE, output
    assert "cannot listen" in output


@pytest.mark.live
def test_port_0_gives_every_worker_the_same_chosen_port() -> None:
    proc = _launch(0)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        while "workers started" not in line:
            assert line, "the parent ended without starting its workers"
            line = proc.stdout.readline()
        found = re.search(r"port=(\d+)", line)
        assert found is not None, line
        port = int(found.group(1))
        assert port != 0
        _wait_until_serving(proc, port)
        assert len(_spread(port, 32)) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        proc.communicate(timeout=30)
