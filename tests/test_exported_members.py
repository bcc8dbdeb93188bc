"""The public surfaces (`bus` and the adapter SDK `adapters.base`) are exactly their __all__."""

from __future__ import annotations

import adapters.base
import bus
import schemas


@staticmethod
def _public(module: object) -> set[str]:
    return {n for n in dir(module) if not n.startswith("_")}


def test_bus_exports_resolve() -> None:
    """Every name in bus.__all__ can be imported, lazily loaded ones included."""
    for name in bus.__all__:
        assert getattr(bus, name) is not None, name
    assert bus.create_app.__module__ == "bus.app"


def test_adapter_sdk_exports_resolve() -> None:
    """Integrators import everything they need from adapters.base."""
    for name in adapters.base.__all__:
        assert hasattr(adapters.base, name), name
    assert {"Adapter", "Context", "operation", "BusError", "raise_for_upstream_status"} <= set(
        adapters.base.__all__
    )


def test_schemas_exports_resolve() -> None:
    for name in schemas.__all__:
        assert hasattr(schemas, name), name
