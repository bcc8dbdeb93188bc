"""Adapters arrive through the ``lgsp.adapters`` entry point group and are called end to end."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import respx

from bus import create_app
from bus.registry import AdapterRegistry, RegistryError, discover
from bus.settings import Settings
from tests.conftest import EXAMPLE_PLUGIN_DIR, install_distribution
from tests.support import running

pytestmark = pytest.mark.anyio

PARCELS_YAML = """\
version: 1
services:
  land:
    adapter: parcels
    upstream:
      base_url: https://parcels.example.test/api
      credentials: {api_key: PARCELS_API_KEY}
    timeout: 5
"""
ENV = {"PARCELS_API_KEY": "k-123"}


def test_installed_plugin_is_discovered_with_its_package(example_plugin: AdapterRegistry) -> None:
    """discover() finds the plugin's entry point and names the distribution that provides it."""
    entry = example_plugin.get("parcels")
    assert entry is not None
    assert entry.package == "lgsp-example-parcels"
    assert entry.target == "lgsp_example_parcels:ParcelAdapter"
    assert set(entry.adapter.operations) == {
        "parcel.get",
        "parcel.note",
        "parcel.register",
        "parcel.change",
    }
    builtin = example_plugin.get("echo")
    assert builtin is not None
    assert builtin.package == "lgsp-bus"


async def test_plugin_operation_called_end_to_end(
    example_plugin: AdapterRegistry, settings_for: Callable[..., Settings]
) -> None:
    """POST /v1/services/land/parcel.get reaches the upstream through the plugin and answers
    in the canonical envelope, with the credential taken from the environment."""
    router = respx.MockRouter(assert_all_called=True)
    route = router.get("https://parcels.example.test/api/parcels/12-0034").respond(
        200, json={"id": "12-0034", "area": 512, "use": "ODT"}
    )
    app = create_app(
        settings_for(PARCELS_YAML),
        registry=example_plugin,
        environ=ENV,
        transport=httpx.MockTransport(router.async_handler),
    )
    async with running(app) as client:
        reply = await client.post("/v1/services/land/parcel.get", json={"parcel_id": "12-0034"})
    assert reply.status_code == 200
    body = reply.json()
    assert body == {
        "request_id": reply.headers["x-request-id"],
        "service": "land",
        "operation": "parcel.get",
        "status": "ok",
        "data": {"parcel_id": "12-0034", "area_m2": 512, "land_use": "ODT"},
        "error": None,
    }
    assert route.call_count == 1
    assert route.calls.last.request.headers["x-api-key"] == "k-123"


def test_duplicate_adapter_name_names_both_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second distribution offering the adapter name ``echo`` is refused at discovery, and
    the message names both distributions."""
    monkeypatch.syspath_prepend(str(EXAMPLE_PLUGIN_DIR))
    install_distribution(
        tmp_path, "lgsp-rogue-echo", {"echo": "lgsp_example_parcels:ParcelAdapter"}, monkeypatch
    )
    with pytest.raises(RegistryError) as caught:
        discover()
    message = str(caught.value)
    assert "'echo'" in message
    assert "'lgsp-bus'" in message
    assert "'lgsp-rogue-echo'" in message


def test_duplicate_refuses_app_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings_for: Callable[..., Settings]
) -> None:
    """create_app() itself refuses to start when two packages share an adapter name."""
    monkeypatch.syspath_prepend(str(EXAMPLE_PLUGIN_DIR))
    install_distribution(
        tmp_path, "lgsp-rogue-echo", {"echo": "lgsp_example_parcels:ParcelAdapter"}, monkeypatch
    )
    with pytest.raises(RegistryError, match="lgsp-rogue-echo"):
        create_app(settings_for("version: 1\n"))


def test_broken_plugin_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin whose module cannot be imported is reported with its package and target."""
    install_distribution(tmp_path, "lgsp-broken", {"broken": "no_such_module:Adapter"}, monkeypatch)
    with pytest.raises(RegistryError, match=r"'broken' from package 'lgsp-broken'.*no_such_module"):
        discover()


def test_entry_point_must_be_an_adapter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry point that is not an Adapter subclass is refused, not half-loaded."""
    install_distribution(tmp_path, "lgsp-odd", {"odd": "json:dumps"}, monkeypatch)
    with pytest.raises(RegistryError, match=r"not a subclass of adapters\.base\.Adapter"):
        discover()
