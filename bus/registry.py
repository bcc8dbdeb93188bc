"""Adapter discovery: entry points of the group ``lgsp.adapters`` into a name -> adapter registry.

The bus's own adapters are registered by the same entry points (in this project's
``pyproject.toml``), so ``bus/`` never imports a concrete adapter. Two distributions that offer
the same adapter name are refused at start-up with a message naming both packages, the way pluggy
loads setuptools plugins.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata

from adapters.base import Adapter

__all__ = ["ENTRY_POINT_GROUP", "AdapterEntry", "AdapterRegistry", "RegistryError", "discover"]

ENTRY_POINT_GROUP = "lgsp.adapters"


class RegistryError(Exception):
    """The installed adapters cannot be used together; the message says which and why."""


@dataclass(frozen=True, slots=True)
class AdapterEntry:
    name: str
    adapter: type[Adapter]
    package: str
    target: str


class AdapterRegistry:
    """Adapter name -> adapter class, with the distribution that provides it."""

    def __init__(self, entries: Iterable[AdapterEntry] = ()) -> None:
        self._entries: dict[str, AdapterEntry] = {}
        for entry in entries:
            self.add(entry)

    def add(self, entry: AdapterEntry) -> None:
        if not (isinstance(entry.adapter, type) and issubclass(entry.adapter, Adapter)):
            raise RegistryError(
                f"adapter {entry.name!r} from package {entry.package!r} ({entry.target}) "
                "is not a subclass of adapters.base.Adapter"
            )
        if not entry.adapter.operations:
            raise RegistryError(
                f"adapter {entry.name!r} from package {entry.package!r} declares no operations"
            )
        other = self._entries.get(entry.name)
        if other is not None:
            raise RegistryError(
                f"adapter name {entry.name!r} is provided by two packages: "
                f"{other.package!r} ({other.target}) and {entry.package!r} ({entry.target}); "
                "uninstall one of them or rename its entry point"
            )
        self._entries[entry.name] = entry

    def register(self, name: str, adapter: type[Adapter], package: str = "<code>") -> None:
        """Register an adapter class directly (tests, embedding applications)."""
        self.add(
            AdapterEntry(name, adapter, package, f"{adapter.__module__}:{adapter.__qualname__}")
        )

    def get(self, name: str) -> AdapterEntry | None:
        return self._entries.get(name)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __iter__(self) -> Iterator[AdapterEntry]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __len__(self) -> int:
        return len(self._entries)


def discover(group: str = ENTRY_POINT_GROUP) -> AdapterRegistry:
    """Load every adapter installed under the entry-point ``group``."""
    registry = AdapterRegistry()
    for ep in metadata.entry_points(group=group):
        package = ep.dist.name if ep.dist is not None else "<unknown distribution>"
        try:
            loaded = ep.load()
        except Exception as exc:  # any import-time failure of a third-party plugin
            raise RegistryError(
                f"adapter {ep.name!r} from package {package!r} cannot be loaded ({ep.value}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        registry.add(AdapterEntry(ep.name, loaded, package, ep.value))
    return registry
