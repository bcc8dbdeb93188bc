"""``lgsp``: the operator's command line.

lgsp serve                     run the gateway (uvicorn)
lgsp services list             the services of bus.yaml and their operations
lgsp adapters list             the installed adapters and the packages that provide them
lgsp config check bus.yaml     validate a configuration without starting anything
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from bus.config import ConfigError, load_config
from bus.gateway import Gateway, build_gateway
from bus.registry import RegistryError, discover
from bus.settings import Settings

__all__ = ["app", "main"]

app = typer.Typer(
    name="lgsp",
    help="The LGSP provincial integration bus.",
    no_args_is_help=True,
    add_completion=False,
)
services_app = typer.Typer(help="Inspect the configured services.", no_args_is_help=True)
adapters_app = typer.Typer(help="Inspect the installed adapters.", no_args_is_help=True)
config_app = typer.Typer(help="Work with bus.yaml.", no_args_is_help=True)
mocks_app = typer.Typer(help="Run the national platform mocks.", no_args_is_help=True)
app.add_typer(services_app, name="services")
app.add_typer(mocks_app, name="mocks")
app.add_typer(adapters_app, name="adapters")
app.add_typer(config_app, name="config")

out = Console()
err = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="bus.yaml to use [default: $LGSP_CONFIG or ./bus.yaml]"),
]


def _fail(exc: Exception) -> typer.Exit:
    err.print(f"[bold red]configuration refused[/]\n{exc}", highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "\n".join(
            f"LGSP_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        err.print(f"[bold red]settings refused[/]\n{problems}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from exc


def _gateway(config: Path | None) -> Gateway:
    settings = _settings(config=config)
    try:
        return build_gateway(settings, load_config(settings.config), discover())
    except (ConfigError, RegistryError) as exc:
        raise _fail(exc) from exc


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Listen address [default: $LGSP_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port [default: $LGSP_PORT]")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes")] = None,
) -> None:
    """Run the gateway with uvicorn."""
    overrides = {
        "LGSP_CONFIG": str(config) if config else None,
        "LGSP_HOST": host,
        "LGSP_PORT": None if port is None else str(port),
        "LGSP_WORKERS": None if workers is None else str(workers),
    }
    # Worker processes rebuild the app from the environment, so the options go there.
    os.environ.update({k: v for k, v in overrides.items() if v is not None})
    settings = _settings()
    from bus.app import create_app  # the app pulls in FastAPI; other commands do not need it

    try:
        application = create_app(settings)
    except (ConfigError, RegistryError) as exc:
        raise _fail(exc) from exc
    err.print(
        f"lgsp: serving {len(application.state.gateway.services)} service(s) from "
        f"{settings.config} on http://{settings.host}:{settings.port}",
        highlight=False,
        soft_wrap=True,
    )
    multi = settings.workers > 1
    # Several workers each build the app from the environment; one worker serves this app.
    target: Any = "bus.app:app_from_env" if multi else application
    uvicorn.run(
        target,
        factory=multi,
        workers=settings.workers if multi else None,
        host=settings.host,
        port=settings.port,
        access_log=False,  # the exchange record is the access log
        log_level=settings.log_level,
        log_config=None,  # uvicorn's loggers go through the bus's structlog configuration
        proxy_headers=False,
    )


@services_app.command("list")
def services_list(config: ConfigOption = None) -> None:
    """Show every configured service with its adapter and operations."""
    gw = _gateway(config)
    table = Table(title=f"Services ({len(gw.services)})")
    for column in ("service", "adapter (package)", "mode", "operation", "description"):
        table.add_column(column)
    for svc in gw.services.values():
        first = True
        for spec in svc.operations.values():
            table.add_row(
                svc.name if first else "",
                f"{svc.entry.name} ({svc.entry.package})" if first else "",
                svc.config.mode if first else "",
                spec.name,
                spec.description,
            )
            first = False
    out.print(table)


@adapters_app.command("list")
def adapters_list() -> None:
    """Show the adapters installed under the entry-point group lgsp.adapters."""
    try:
        registry = discover()
    except RegistryError as exc:
        raise _fail(exc) from exc
    table = Table(title=f"Adapters ({len(registry)})")
    for column in ("adapter", "package", "target", "operations"):
        table.add_column(column)
    for entry in registry:
        table.add_row(entry.name, entry.package, entry.target, ", ".join(entry.adapter.operations))
    out.print(table)


@config_app.command("check")
def config_check(
    path: Annotated[Path, typer.Argument(help="The bus.yaml to check")],
) -> None:
    """Validate bus.yaml: syntax, keys, adapters, retry policies, credential variables."""
    gw = _gateway(path)
    operations = sum(len(s.operations) for s in gw.services.values())
    out.print(
        f"{path}: OK, {len(gw.services)} service(s), {operations} operation(s)",
        highlight=False,
        soft_wrap=True,
    )


@mocks_app.command("serve")
def mocks_serve(
    host: Annotated[str, typer.Option(help="Listen address")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help="NGSP's port; the population mock takes the next")
    ] = 9100,
) -> None:
    """Run NGSP and the population database mock, each on its own port, until Ctrl-C."""
    from mocks.stack import DEMO_CONSUMER_KEY, DEMO_CONSUMER_SECRET, MockStack

    stack = MockStack(host=host, base_port=port).start()
    for name, url in stack.urls.items():
        out.print(f"{name:<11} {url}", highlight=False)
    out.print(
        "NGSP consumer for the bus: "
        f"NGSP_CONSUMER_KEY={DEMO_CONSUMER_KEY} NGSP_CONSUMER_SECRET={DEMO_CONSUMER_SECRET}\n"
        "fault injection: PUT /__admin/faults on any mock",
        highlight=False,
        soft_wrap=True,
    )
    try:
        stack.wait()
    except KeyboardInterrupt:
        stack.stop()


def main() -> None:
    app()
