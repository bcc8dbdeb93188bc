"""Shared fixtures. The network is blocked for every test except loopback (see ``_no_network``)."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bus.registry import AdapterRegistry, discover
from bus.settings import Settings
from mocks.stack import MockStack

EXAMPLE_PLUGIN_DIR = Path(__file__).parent / "example_plugin"

# A served gateway freezes its start-up objects out of the garbage collector's reach
# (bus.app.tune_gc). This process starts hundreds of apps and throws them away: frozen, their
# cycles would never be collected. tests/test_serving.py turns it on where it is the subject.
os.environ.setdefault("LGSP_GC_FREEZE", "false")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse any connection that leaves the machine; tests talk to respx or loopback only."""
    real_connect = socket.socket.connect

    def guarded(sock: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple):
            host = address[0]
            try:
                loopback = ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = host == "localhost"
            if not loopback:
                raise RuntimeError(f"tests may not reach the network ({host})")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str) -> Path:
        path = tmp_path / "bus.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def settings_for(write_config: Callable[[str], Path], tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a bus.yaml text. Security is open unless a test asks for
    ``auth="required"``: tests about other stages need no credentials."""

    def make(text: str, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "config": write_config(text),
            "log_level": "debug",
            "auth": "open",
            "store_path": tmp_path / "lgsp.db",
        }
        values.update(overrides)
        return Settings(**values)

    return make


def install_distribution(
    root: Path, name: str, entry_points: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Make a real installed distribution: a ``.dist-info`` with METADATA and entry_points.txt
    on ``sys.path``, found by ``importlib.metadata`` exactly as pip's would be."""
    site = root / f"site-{name}"
    info = site / f"{name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[lgsp.adapters]\n{lines}\n")
    monkeypatch.syspath_prepend(str(site))


@pytest.fixture
def example_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AdapterRegistry]:
    """The example parcels adapter installed as the distribution ``lgsp-example-parcels``."""
    monkeypatch.syspath_prepend(str(EXAMPLE_PLUGIN_DIR))
    install_distribution(
        tmp_path,
        "lgsp-example-parcels",
        {"parcels": "lgsp_example_parcels:ParcelAdapter"},
        monkeypatch,
    )
    return discover()


# -- no secret or personal id in the logs of the whole run ------------------------------------
#
# Tests register the secrets and personal data they use (``sensitive`` fixture); every test's
# captured output (stdout, stderr, log records) is scanned when its report is made, and the run
# fails at the end if any registered value appeared in clear. The values are kept for the whole
# session, so a value registered by one test is also looked for in every later test's logs.

SENSITIVE: set[str] = set()
LEAKS: list[str] = []


@pytest.fixture
def sensitive() -> Callable[[str], str]:
    """Register a value that must never appear in clear in any log of this run; returns it."""

    def register(value: str) -> str:
        if len(value) >= 6:  # shorter values would match by accident
            SENSITIVE.add(value)
        return value

    return register


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not SENSITIVE or report.failed:  # a failing test's own assertion text may quote values
        return
    captured = "\n".join(text for _, text in report.sections)
    for value in SENSITIVE:
        if value in captured:
            LEAKS.append(f"{report.nodeid} ({report.when}): a registered value in the logs")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if LEAKS:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("secrets or personal ids found in captured logs:", red=True)
            for leak in sorted(set(LEAKS)):
                reporter.write_line(f"  {leak}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="module")
def stack() -> Iterator[MockStack]:
    """The six national platform mocks on loopback, once per test module that asks for them."""
    with MockStack() as started:
        yield started
