"""What every ``lgsp`` command shares: the consoles, common options, and the ways a command
turns a bad setting or configuration into a plain message and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console

from bus.config import ConfigError, load_config
from bus.gateway import Gateway, build_gateway
from bus.registry import RegistryError, discover
from bus.settings import Settings

__all__ = [
    "ConfigOption",
    "JsonOption",
    "err",
    "fail",
    "gateway",
    "out",
    "print_json",
    "settings",
]

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
