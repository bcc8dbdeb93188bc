"""``lgsp``: the operator's command line.

lgsp serve                     run the gateway (uvicorn)
lgsp services list             the services of bus.yaml and their operations
lgsp adapters list             the installed adapters and the packages that provide them
lgsp config check bus.yaml     validate a configuration without starting anything
lgsp consumers ...             add, list, show, suspend, activate, grant, revoke, limits,
                               rotate-secret: the consumers kept in the store (LGSP_STORE_PATH)
lgsp keys ...                  create, revoke and list consumers' API keys
lgsp worker                    deliver queued store-and-forward messages, as its own process
lgsp deliveries ...            list, show, retry, replay-dead, discard: the delivery queue
lgsp status                    a running gateway's upstreams, circuits and delivery queue
"""

from __future__ import annotations

import math
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import uvicorn
from rich.markup import escape
from rich.table import Table

from bus.cli_audit import audit_app
from bus.cli_auditors import auditors_app
from bus.cli_deliveries import deliveries_app, status, worker
from bus.cli_support import ConfigOption, JsonOption, err, on_store, out
from bus.cli_support import fail as _fail
from bus.cli_support import gateway as _gateway
from bus.cli_support import print_json as _print_json
from bus.cli_support import settings as _settings
from bus.config import ConfigError
from bus.errors import BusError
from bus.registry import RegistryError, discover
from bus.security.consumers import Consumers, check_quota_key, consumer_view, key_view
from bus.security.store import ApiKeyRecord, ConsumerRecord, Limits, SqliteConsumerStore, StoreError
from bus.settings import Settings
from bus.workers import balanced, serve_workers

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
consumers_app = typer.Typer(
    help="Manage the consumers kept in the store ($LGSP_STORE_PATH).", no_args_is_help=True
)
keys_app = typer.Typer(help="Manage consumers' API keys.", no_args_is_help=True)
app.add_typer(services_app, name="services")
app.add_typer(mocks_app, name="mocks")
app.add_typer(adapters_app, name="adapters")
app.add_typer(config_app, name="config")
app.add_typer(consumers_app, name="consumers")
app.add_typer(keys_app, name="keys")
app.add_typer(deliveries_app, name="deliveries")
app.add_typer(audit_app, name="audit")
app.add_typer(auditors_app, name="auditors")
app.command("worker")(worker)
app.command("status")(status)

T = TypeVar("T")


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
    run_gateway(settings, application, "bus.app:app_from_env")


def run_gateway(settings: Settings, application: Any, factory: str) -> None:
    """Serve ``application`` with uvicorn as ``lgsp serve`` does; with several workers each
    worker builds its own app by calling ``factory`` (``module:function``) instead, on a
    listening socket of its own where the kernel balances them (:mod:`bus.workers`)."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "backlog": settings.backlog,
        "access_log": False,  # the exchange record is the access log
        "log_level": settings.log_level,
        "log_config": None,  # uvicorn's loggers go through the bus's structlog configuration
        "proxy_headers": False,
        # SIGTERM: stop accepting, let calls in flight finish for this long, then shut down
        # (the delivery worker then gets the same grace; undelivered messages stay queued).
        "timeout_graceful_shutdown": math.ceil(settings.grace_seconds),
    }
    if settings.workers == 1:
        uvicorn.run(application, **options)
        return
    if not balanced():
        uvicorn.run(factory, factory=True, workers=settings.workers, **options)
        return
    code = serve_workers(
        settings.workers, {"app": factory, "factory": True, **options}, settings.grace_seconds
    )
    if code:
        raise SystemExit(code)


@services_app.command("list")
def services_list(config: ConfigOption = None) -> None:
    """Show every configured service with its adapter and operations."""
    gw = _gateway(config)
    table = Table(title=f"Services ({len(gw.services)})")
    for column in ("service", "adapter (package)", "operation", "mode", "description"):
        table.add_column(column)
    for svc in gw.services.values():
        first = True
        for spec in svc.operations.values():
            table.add_row(
                svc.name if first else "",
                f"{svc.entry.name} ({svc.entry.package})" if first else "",
                spec.name,
                svc.mode_of(spec.name),
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


@app.command()
def demo(
    keep: Annotated[
        Path | None,
        typer.Option(
            "--keep",
            help="Keep the demo's bus.yaml, stores and exchange log in this directory "
            "(default: a temporary directory, removed at the end)",
        ),
    ] = None,
) -> None:
    """Play a land-change registration through the bus and every national platform mock, then
    verify the exchange log of the whole story. Needs nothing installed or running."""
    import asyncio

    from bus.demo import run_demo

    def line(text: str) -> None:
        typer.echo(text)

    raise typer.Exit(asyncio.run(run_demo(line, keep)))


@mocks_app.command("serve")
def mocks_serve(
    host: Annotated[str, typer.Option(help="Listen address")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help="NGSP's port; the other mocks take the next five")
    ] = 9100,
    bus: Annotated[
        str,
        typer.Option(help="The bus PayGov confirmations and tax notices are sent to"),
    ] = "http://127.0.0.1:8000",
) -> None:
    """Run the national platform mocks (NGSP, population, PayGov, DVCQG, edoc, tax), each on
    its own port, until Ctrl-C."""
    from bus.app import freeze_heap
    from mocks.paygov import DEMO_PARTNER, PaygovSettings
    from mocks.stack import DEMO_CONSUMER_KEY, DEMO_CONSUMER_SECRET, MockStack
    from mocks.tax import TaxSettings

    bus = bus.rstrip("/")
    paygov = PaygovSettings()
    paygov.partners[DEMO_PARTNER].callback_url = f"{bus}/v1/callbacks/paygov"
    tax = TaxSettings(notice_url=f"{bus}/v1/callbacks/tax")
    stack = MockStack(host=host, base_port=port, paygov=paygov, tax=tax).start()
    # This process serves the mocks and nothing else: as a served bus does, exempt what
    # start-up built (the seeded registries) from the collector's scans.
    freeze_heap()
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


# --- consumers and API keys ------------------------------------------------------------------
# The JSON views and the rights change are shared with the admin API (bus.admin); they are
# imported where used because bus.admin pulls in FastAPI, which the other commands do not need.

SHOWN_ONCE = (
    "Shown once: the store keeps only a hash and cannot show it again. Store it now, "
    "in the consumer's secret store."
)
ConsumerId = Annotated[
    str, typer.Argument(metavar="CONSUMER_ID", help="The consumer's id (its client id)")
]


def _with_consumers(work: Callable[[Consumers], Awaitable[T]]) -> T:
    """Run ``work`` on the consumers of the store at ``LGSP_STORE_PATH``."""
    return on_store(
        SqliteConsumerStore, lambda store: work(Consumers(store)), (StoreError, BusError)
    )


def _limits_text(limits: Limits) -> str:
    quota = "no daily quota" if limits.daily_quota is None else f"{limits.daily_quota}/day"
    text = f"{limits.rate_per_second:g}/s, burst {limits.burst}, {quota}"
    extra = ", ".join(f"{op} {n}/day" for op, n in sorted(limits.quotas.items()))
    return f"{text}; {extra}" if extra else text


def _limits_short(limits: Limits) -> str:
    quota = "-" if limits.daily_quota is None else f"{limits.daily_quota}/day"
    text = f"{limits.rate_per_second:g}/s, burst {limits.burst}, quota {quota}"
    return f"{text}, +{len(limits.quotas)} per-op" if limits.quotas else text


def _rights(record: ConsumerRecord) -> list[str]:
    return sorted(f"{service}/{operation}" for service, operation in record.rights)


def _print_summary(record: ConsumerRecord) -> None:
    rights = ", ".join(_rights(record)) or "none"
    out.print(
        f"consumer {escape(record.id)} ({escape(record.name)}): {record.status}\n"
        f"  rights: {escape(rights)}\n  limits: {escape(_limits_text(record.limits))}",
        highlight=False,
        soft_wrap=True,
    )


def _print_secret(label: str, secret: str) -> None:
    # Plain echo: no markup, no wrapping, so the secret can be copied exactly.
    typer.echo(f"{label}: {secret}")
    err.print(f"[bold yellow]{SHOWN_ONCE}[/]", highlight=False, soft_wrap=True)


def _keys_table(keys: list[ApiKeyRecord], title: str) -> Table:
    table = Table(title=title)
    for column in ("key id", "created", "status", "revoked"):
        table.add_column(column, no_wrap=True)
    for key in keys:
        revoked = key.revoked_at is not None
        table.add_row(
            key.key_id,
            key.created_at,
            "[red]revoked[/]" if revoked else "active",
            key.revoked_at or "",
        )
    return table


def _positive_rate(value: float | None) -> float | None:
    if value is not None and not value > 0:
        raise typer.BadParameter("the rate must be above 0 calls per second")
    return value


RateOption = Annotated[
    float | None,
    typer.Option("--rate", help="Sustained calls per second (> 0)", callback=_positive_rate),
]
BurstOption = Annotated[int | None, typer.Option("--burst", min=1, help="Calls allowed at once")]
DailyQuotaOption = Annotated[
    int | None,
    typer.Option("--daily-quota", min=0, help="Calls per operation per day [default: none]"),
]


@consumers_app.command("add")
def consumers_add(
    consumer_id: ConsumerId,
    name: Annotated[str, typer.Option("--name", help="Display name")],
    agency: Annotated[str | None, typer.Option("--agency", help="Agency code")] = None,
    grant: Annotated[
        list[str] | None,
        typer.Option("--grant", help="A right, service/operation or service/*; repeatable"),
    ] = None,
    rate: RateOption = None,
    burst: BurstOption = None,
    daily_quota: DailyQuotaOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a consumer and print its client secret, once."""
    defaults = Limits()
    limits = Limits(
        rate_per_second=defaults.rate_per_second if rate is None else rate,
        burst=defaults.burst if burst is None else burst,
        daily_quota=daily_quota,
    )

    async def add(c: Consumers) -> tuple[ConsumerRecord, str]:
        return await c.create(consumer_id, name, agency, grant or [], limits)

    record, secret = _with_consumers(add)
    if as_json:
        _print_json({"consumer": consumer_view(record, []), "client_secret": secret})
        return
    out.print("[bold green]created[/]", highlight=False)
    _print_summary(record)
    typer.echo(f"client id: {record.id}")
    _print_secret("client secret", secret)


@consumers_app.command("list")
def consumers_list(as_json: JsonOption = False) -> None:
    """Show every consumer with its status, rights and limits."""
    records = _with_consumers(lambda c: c.list_all())
    if as_json:
        _print_json([consumer_view(r) for r in records])
        return
    table = Table(title=f"Consumers ({len(records)})")
    for column in ("id", "name", "agency", "status", "rights", "limits"):
        table.add_column(column)
    for r in records:
        table.add_row(
            escape(r.id),
            escape(r.name),
            escape(r.agency or ""),
            r.status if r.active else f"[red]{r.status}[/]",
            str(len(r.rights)),
            escape(_limits_short(r.limits)),
        )
    out.print(table)


@consumers_app.command("show")
def consumers_show(consumer_id: ConsumerId, as_json: JsonOption = False) -> None:
    """Show one consumer: every field, its rights and its API keys (never a secret or hash)."""

    async def show(c: Consumers) -> tuple[ConsumerRecord, list[ApiKeyRecord]]:
        return await c.get(consumer_id), await c.keys(consumer_id)

    record, keys = _with_consumers(show)
    if as_json:
        _print_json(consumer_view(record, keys))
        return
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold")
    fields.add_column()
    limits = record.limits
    for label, value in (
        ("id", record.id),
        ("name", record.name),
        ("agency", record.agency or "-"),
        ("status", record.status),
        ("created", record.created_at),
        ("rate", f"{limits.rate_per_second:g}/s, burst {limits.burst}"),
        ("daily quota", "none" if limits.daily_quota is None else f"{limits.daily_quota}/day"),
        *((f"quota {op}", f"{n}/day") for op, n in sorted(limits.quotas.items())),
        ("rights", "\n".join(_rights(record)) or "none"),
    ):
        fields.add_row(label, escape(value))
    out.print(fields)
    out.print(_keys_table(keys, f"API keys ({len(keys)})"))


def _set_status(consumer_id: str, active: bool) -> None:
    record = _with_consumers(lambda c: c.set_status(consumer_id, active))
    _print_summary(record)


@consumers_app.command("suspend")
def consumers_suspend(consumer_id: ConsumerId) -> None:
    """Suspend a consumer: its calls are refused until it is activated again."""
    _set_status(consumer_id, active=False)


@consumers_app.command("activate")
def consumers_activate(consumer_id: ConsumerId) -> None:
    """Activate a suspended consumer."""
    _set_status(consumer_id, active=True)


RightsArgument = Annotated[
    list[str],
    typer.Argument(metavar="RIGHT", help="service/operation, or service/* for all its operations"),
]


@consumers_app.command("grant")
def consumers_grant(consumer_id: ConsumerId, rights: RightsArgument) -> None:
    """Grant rights; nothing is granted if any right is malformed."""
    record = _with_consumers(lambda c: c.change_rights(consumer_id, rights, []))
    _print_summary(record)


@consumers_app.command("revoke")
def consumers_revoke(consumer_id: ConsumerId, rights: RightsArgument) -> None:
    """Revoke rights; nothing is revoked if any is malformed or not held."""
    record = _with_consumers(lambda c: c.change_rights(consumer_id, [], rights))
    _print_summary(record)


def _quotas(entries: list[str]) -> dict[str, int | None]:
    """``service/op=N`` sets a per-operation quota, ``service/op=none`` removes it."""
    quotas: dict[str, int | None] = {}
    for entry in entries:
        key, sep, value = entry.partition("=")
        try:
            right = check_quota_key(key.strip())
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--quota") from exc
        if not sep or not (value.strip().isdigit() or value.strip() == "none"):
            raise typer.BadParameter(
                f"{entry!r}: write service/operation=N (N >= 0) or service/operation=none",
                param_hint="--quota",
            )
        quotas[right] = None if value.strip() == "none" else int(value)
    return quotas


@consumers_app.command("limits")
def consumers_limits(
    consumer_id: ConsumerId,
    rate: RateOption = None,
    burst: BurstOption = None,
    daily_quota: DailyQuotaOption = None,
    no_daily_quota: Annotated[
        bool, typer.Option("--no-daily-quota", help="Remove the daily quota")
    ] = False,
    quota: Annotated[
        list[str] | None,
        typer.Option(
            "--quota",
            help="service/operation=N: that operation's daily quota; =none removes it; repeatable",
        ),
    ] = None,
) -> None:
    """Change a consumer's limits; what is not given is kept. Without options, show them."""
    if daily_quota is not None and no_daily_quota:
        raise typer.BadParameter("give --daily-quota or --no-daily-quota, not both")
    changes = _quotas(quota or [])

    async def set_limits(c: Consumers) -> ConsumerRecord:
        record = await c.get(consumer_id)
        old = record.limits
        quotas = {**old.quotas, **changes}
        limits = Limits(
            rate_per_second=old.rate_per_second if rate is None else rate,
            burst=old.burst if burst is None else burst,
            daily_quota=None
            if no_daily_quota
            else (old.daily_quota if daily_quota is None else daily_quota),
            quotas={op: n for op, n in quotas.items() if n is not None},
        )
        if limits == old:
            return record
        return await c.set_limits(consumer_id, limits)

    _print_summary(_with_consumers(set_limits))


@consumers_app.command("rotate-secret")
def consumers_rotate_secret(consumer_id: ConsumerId, as_json: JsonOption = False) -> None:
    """Issue a new client secret, shown once; the old one stops working at once."""
    secret = _with_consumers(lambda c: c.rotate_secret(consumer_id))
    if as_json:
        _print_json({"consumer_id": consumer_id, "client_secret": secret})
        return
    out.print(
        f"new client secret for {escape(consumer_id)}; the old one no longer works",
        highlight=False,
        soft_wrap=True,
    )
    _print_secret("client secret", secret)


class _WebhookRefused(Exception):
    """A webhook change that cannot be made: the reason is shown plainly."""


@consumers_app.command("webhook")
def consumers_webhook(
    consumer_id: ConsumerId,
    url: Annotated[
        str | None,
        typer.Argument(help="Where the consumer's events are POSTed; omit to show the current"),
    ] = None,
    remove: Annotated[bool, typer.Option("--remove", help="Remove the webhook")] = False,
    rotate_secret: Annotated[
        bool, typer.Option("--rotate-secret", help="Make a new signing secret")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Set, show or remove where a consumer receives its events (payment.confirmed,
    tax.notice...); setting it prints the signing secret the consumer checks them with."""
    import time

    from bus.webhooks import SqliteWebhookStore, Webhook, register, webhook_view

    async def change(hooks: SqliteWebhookStore) -> Webhook | None:
        consumers = SqliteConsumerStore(_settings().store_path)
        try:
            known = await consumers.get(consumer_id)
        finally:
            await consumers.close()
        if known is None:
            raise _WebhookRefused(f"no consumer with id {consumer_id!r}")
        if remove:
            if not await hooks.remove(consumer_id):
                raise _WebhookRefused(f"consumer {consumer_id!r} has no webhook")
            return None
        if url is None:
            current = await hooks.get(consumer_id)
            if current is None:
                raise _WebhookRefused(f"consumer {consumer_id!r} has no webhook")
            return current
        try:
            return await register(hooks, consumer_id, url, time.time(), rotate=rotate_secret)
        except ValueError as exc:
            raise _WebhookRefused(str(exc)) from None

    hook = on_store(SqliteWebhookStore, change, (_WebhookRefused,))
    shown = url is not None
    if as_json:
        _print_json(
            {"consumer_id": consumer_id, "removed": True}
            if hook is None
            else webhook_view(hook, with_secret=shown)
        )
        return
    if hook is None:
        out.print(f"webhook of {escape(consumer_id)} removed", highlight=False)
        return
    out.print(f"webhook of {escape(consumer_id)}: {escape(hook.url)}", highlight=False)
    if shown:
        # Plain echo: no markup, no wrapping, so the secret can be copied exactly.
        typer.echo(f"signing secret: {hook.secret}")
        err.print(
            "[yellow]Give it to the consumer: it checks the webhook-signature header with it.[/]",
            highlight=False,
            soft_wrap=True,
        )


@keys_app.command("create")
def keys_create(consumer_id: ConsumerId, as_json: JsonOption = False) -> None:
    """Create an API key for a consumer and print the full key, once."""
    full, record = _with_consumers(lambda c: c.create_key(consumer_id))
    if as_json:
        _print_json({"key": key_view(record), "api_key": full})
        return
    out.print(
        f"API key {record.key_id} created for {escape(consumer_id)}",
        highlight=False,
        soft_wrap=True,
    )
    _print_secret("API key", full)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[
        str, typer.Argument(metavar="KEY_ID", help="The key id (lgsp keys list CONSUMER_ID)")
    ],
) -> None:
    """Revoke an API key: calls with it are refused from now on."""

    key = _with_consumers(lambda c: c.revoke_key(key_id))
    out.print(
        f"API key {escape(key.key_id)} of {escape(key.consumer_id)} revoked at {key.revoked_at}",
        highlight=False,
        soft_wrap=True,
    )


@keys_app.command("list")
def keys_list(consumer_id: ConsumerId, as_json: JsonOption = False) -> None:
    """List a consumer's API keys, revoked ones included (never the keys themselves)."""
    keys = _with_consumers(lambda c: c.keys(consumer_id))
    if as_json:
        _print_json([key_view(k) for k in keys])
        return
    out.print(_keys_table(keys, f"API keys of {escape(consumer_id)} ({len(keys)})"))


def main() -> None:
    app()
