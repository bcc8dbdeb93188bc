"""The LGSP integration bus: one canonical JSON gateway in front of the national platforms.

The public surface is this module's ``__all__``; everything else is internal and may change.
Integrators writing adapters import from :mod:`adapters.base` instead.

``create_app`` and the other names that pull in the adapter contract are loaded lazily (PEP 562),
so that ``adapters.base`` can import ``bus.errors`` without an import cycle.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bus.config import ConfigError
from bus.errors import (
    CATALOGUE,
    BusError,
    ClientError,
    InternalError,
    UpstreamError,
)
from bus.settings import Settings

if TYPE_CHECKING:
    from bus.app import create_app
    from bus.registry import AdapterRegistry, RegistryError

__version__ = "0.1.0"

__all__ = [
    "CATALOGUE",
    "AdapterRegistry",
    "BusError",
    "ClientError",
    "ConfigError",
    "InternalError",
    "RegistryError",
    "Settings",
    "UpstreamError",
    "__version__",
    "create_app",
]

_LAZY = {
    "create_app": "bus.app",
    "AdapterRegistry": "bus.registry",
    "RegistryError": "bus.registry",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bus' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
