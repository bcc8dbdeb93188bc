"""The `lgsp` command: help, services list, config check, and serve on a real port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from bus.cli import app

runner = CliRunner()
ECHO = "version: 1\nservices:\n  echo: {adapter: echo, description: Smoke}\n"


def test_help_lists_the_commands() -> None:
    """`lgsp --help` names every command group."""
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "services", "adapters", "config"):
        assert command in result.output


def test_services_list_shows_services_and_operations(write_config: Callable[[str], Path]) -> None:
    """`lgsp services list` shows each service with its adapter, package and operations."""
    result = runner.invoke(app, ["services", "list", "--config", str(write_config(ECHO))])
    assert result.exit_code == 0, result.output
    assert "echo (lgsp-bus)" in result.output
    assert "sync" in result.output


def test_adapters_list() -> None:
    """`lgsp adapters list` shows the built-in adapter and its package."""
    result = runner.invoke(app, ["adapters", "list"])
    assert result.exit_code == 0
    assert "adapters.echo:EchoAdapter" in result.output


def test_config_check_ok(write_config: Callable[[str], Path]) -> None:
    """A valid file is confirmed with its counts."""
    result = runner.invoke(app, ["config", "check", str(write_config(ECHO))])
    assert result.exit_code == 0
    assert "OK, 1 service(s), 1 operation(s)" in result.output


def test_config_check_names_the_bad_line(write_config: Callable[[str], Path]) -> None:
    """A bad file exits 2 and prints the line and the reason, without a traceback."""
    path = write_config("version: 1\nservices:\n  echo:\n    adapter: nope\n")
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 2
    assert f"{path}:4: services.echo.adapter: unknown adapter 'nope'" in result.output
    assert "Traceback" not in result.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def served(write_config: Callable[[str], Path], tmp_path: Path) -> Iterator[str]:
    """`lgsp serve` started as a user would, on a free loopback port."""
    port = _free_port()
    lgsp = Path(sys.executable).with_name("lgsp")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LGSP_")}
    env |= {"LGSP_AUTH": "open", "LGSP_STORE_PATH": str(tmp_path / "lgsp.db")}
    proc = subprocess.Popen(
        [str(lgsp), "serve", "--config", str(write_config(ECHO)), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            proc.kill()
            output = proc.communicate()[0].decode()
            pytest.fail(f"lgsp serve did not start:\n{output}")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.live
def test_serve_answers_on_a_real_port(served: str) -> None:
    """`lgsp serve` runs the gateway under uvicorn: a call goes through and is answered."""
    reply = httpx.post(f"{served}/v1/services/echo/echo", json={"message": "Chào tỉnh"}, timeout=5)
    assert reply.status_code == 200
    assert reply.json()["data"]["message"] == "Chào tỉnh"
    assert reply.json()["request_id"] == reply.headers["x-request-id"]


@pytest.mark.live
def test_status_shows_circuits_of_a_running_gateway(served: str, tmp_path: Path) -> None:
    """`lgsp status` reads a running gateway's /readyz (circuit, bulkhead) and the queue."""
    env = {"LGSP_STORE_PATH": str(tmp_path / "lgsp.db")}
    result = runner.invoke(app, ["status", "--url", served, "--json"], env=env)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    echo = shown["readyz"]["upstreams"]["echo"]
    assert echo["circuit"]["state"] == "closed"
    assert echo["bulkhead"]["in_flight"] == 0
    assert shown["deliveries"]["dead"] == 0
    table = runner.invoke(app, ["status", "--url", served], env=env)
    assert table.exit_code == 0, table.output
    assert "closed" in table.output
    down = runner.invoke(app, ["status", "--url", "http://127.0.0.1:9"], env=env)
    assert down.exit_code == 2
    assert "cannot read" in down.output


def test_serve_refuses_bad_config(write_config: Callable[[str], Path]) -> None:
    """`lgsp serve` with a bad file exits 2 with the line, before listening."""
    path = write_config("version: 1\nservices:\n  echo:\n    adapter: nope\n")
    result = runner.invoke(app, ["serve", "--config", str(path), "--port", "1"])
    assert result.exit_code == 2
    assert "services.echo.adapter" in result.output


def test_bad_setting_variable_is_named(write_config: Callable[[str], Path]) -> None:
    """A malformed LGSP_* variable exits 2 naming the variable, without a traceback."""
    path = write_config(ECHO)
    result = runner.invoke(
        app, ["services", "list", "--config", str(path)], env={"LGSP_PORT": "eighty"}
    )
    assert result.exit_code == 2
    assert "LGSP_PORT" in result.output
    assert "Traceback" not in result.output


@pytest.mark.live
def test_mocks_serve_runs_ngsp_in_front_of_population() -> None:
    """`lgsp mocks serve` starts both mocks; NGSP issues the demo token and forwards to the
    population database's WSDL."""
    lgsp = Path(sys.executable).with_name("lgsp")
    proc = subprocess.Popen(
        [str(lgsp), "mocks", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        urls = dict(proc.stdout.readline().split() for _ in range(2))
        token = httpx.post(
            f"{urls['ngsp']}/token",
            data={"grant_type": "client_credentials"},
            auth=("lgsp-demo-key", "lgsp-demo-secret"),
            timeout=5,
        ).json()["access_token"]
        wsdl = httpx.get(
            f"{urls['ngsp']}/dancu/1.0/soap?wsdl",
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
        assert wsdl.status_code == 200
        assert b"TraCuuThongTinCongDan" in wsdl.content
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
