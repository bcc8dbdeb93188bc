"""What every ``lgsp`` command shares: the consoles, common options, and the ways a command
turns a bad setting or configuration into a plain message and exit code 2."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Protocol, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from bus.config import ConfigError, load_config
from bus.errors import BusError
from bus.gateway import Gateway, build_gateway
from bus.registry import RegistryError, discover
from bus.settings import Settings

__all__ = [
    "ConfigOption",
    "JsonOption",
    "err",
    "fail",
    "gateway",
    "on_store",
    "out",
    "print_json",
    "refused",
    "settings",
]

T = TypeVar("T")


class _Closable(Protocol):
    async def close(self) -> None: ...


StoreT = TypeVar("StoreT", bound=_Closable)

out = Console()
err = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="bus.yaml to use [default: $LGSP_CONFIG or ./bus.yaml]"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def fail(exc: Exception) -> typer.Exit:
    err.print(f"[bold red]configuration refused[/]\n{exc}", highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


def settings(**overrides: Any) -> Settings:
    """The process settings (``LGSP_*``) with ``overrides``; exit 2 naming each bad variable."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "\n".join(
            f"LGSP_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        err.print(f"[bold red]settings refused[/]\n{problems}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from exc


def gateway(config: Path | None, **overrides: Any) -> Gateway:
    """The gateway of bus.yaml (not started); exit 2 with every configuration problem."""
    chosen = settings(config=config, **overrides)
    try:
        return build_gateway(chosen, load_config(chosen.config), discover())
    except (ConfigError, RegistryError) as exc:
        raise fail(exc) from exc


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2))


def refused(exc: Exception) -> typer.Exit:
    """Exit 2 with the reason (and each refused field of a BusError); never a traceback."""
    lines = [escape(str(exc))]
    if isinstance(exc, BusError):
        lines += [escape(f"  {f.field}: {f.reason}") for f in exc.field_errors]
    err.print("[bold red]refused[/]\n" + "\n".join(lines), highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


def on_store(
    open_store: Callable[[Path], StoreT],
    work: Callable[[StoreT], Awaitable[T]],
    refusals: tuple[type[Exception], ...],
) -> T:
    """Run ``work`` on a store opened on ``LGSP_STORE_PATH``, then close it. A refusal (one of
    ``refusals``) or a store that cannot be used exits 2 with the reason, plainly."""
    chosen = settings()

    async def run() -> T:
        store = open_store(chosen.store_path)
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except refusals as exc:
        raise refused(exc) from exc
    except (sqlite3.Error, OSError) as exc:
        err.print(
            f"[bold red]cannot use the store[/] {escape(str(chosen.store_path))}: "
            f"{escape(str(exc))}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(code=2) from exc
