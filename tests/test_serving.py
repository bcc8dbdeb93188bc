"""What a served gateway process sets up for itself once started: the garbage collector and
the GIL's switch interval."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterator

import pytest

from bus import create_app
from bus.app import GC_THRESHOLD
from bus.settings import Settings
from tests.support import running

pytestmark = pytest.mark.anyio


@pytest.fixture
def gc_state() -> Iterator[None]:
    """Put the collector back as it was: the tests below change it for the whole process."""
    threshold, interval = gc.get_threshold(), sys.getswitchinterval()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
    sys.setswitchinterval(interval)


async def test_started_gateway_freezes_start_up_objects(
    settings_for: Callable[..., Settings], gc_state: None
) -> None:
    """With gc_freeze (the default of a served gateway), what start-up built is out of the
    collector's scans and the youngest generation is collected less often."""
    gc.unfreeze()
    app = create_app(settings_for("version: 1\n", gc_freeze=True))
    async with running(app) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == GC_THRESHOLD


async def test_gc_freeze_off_leaves_the_collector_alone(
    settings_for: Callable[..., Settings], gc_state: None
) -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    app = create_app(settings_for("version: 1\n", gc_freeze=False))
    async with running(app) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert gc.get_freeze_count() == 0
        assert gc.get_threshold() == (700, 10, 10)


async def test_switch_interval_is_set_once_started(
    settings_for: Callable[..., Settings], gc_state: None
) -> None:
    sys.setswitchinterval(0.005)
    app = create_app(settings_for("version: 1\n", switch_interval_ms=0.5))
    assert sys.getswitchinterval() == pytest.approx(0.005)  # not before the app starts
    async with running(app) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert sys.getswitchinterval() == pytest.approx(0.0005)


def test_switch_interval_defaults_to_a_fifth_of_a_millisecond() -> None:
    assert Settings().switch_interval_ms == 0.2
    with pytest.raises(ValueError, match="switch_interval_ms"):
        Settings(switch_interval_ms=0)


def test_gc_freeze_is_on_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests' process turns it off (conftest); a deployment gets it unless it says no."""
    monkeypatch.delenv("LGSP_GC_FREEZE", raising=False)
    assert Settings().gc_freeze is True
    monkeypatch.setenv("LGSP_GC_FREEZE", "false")
    assert Settings().gc_freeze is False


def test_mocks_serve_freezes_what_start_up_built(
    monkeypatch: pytest.MonkeyPatch, gc_state: None
) -> None:
    """`lgsp mocks serve` is a server process too: once the mocks are up, their seeded
    registries are out of the collector's scans (a full collection over them paused every call
    in flight), and the youngest generation is collected as in the bus."""
    from typer.testing import CliRunner

    from bus.cli import app as cli
    from mocks.stack import MockStack

    seen: dict[str, object] = {}

    def interrupted(stack: MockStack) -> None:  # instead of serving until Ctrl-C
        seen["frozen"], seen["threshold"] = gc.get_freeze_count(), gc.get_threshold()
        raise KeyboardInterrupt

    monkeypatch.setattr(MockStack, "wait", interrupted)
    gc.unfreeze()
    result = CliRunner().invoke(cli, ["mocks", "serve", "--port", "0"])
    assert result.exit_code == 0, result.output
    assert "population" in result.output
    frozen = seen["frozen"]
    assert isinstance(frozen, int)
    assert frozen > 50_000  # what start-up built: the modules imported and the registries
    assert seen["threshold"] == GC_THRESHOLD
