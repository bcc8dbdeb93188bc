"""``lgsp deliveries``, ``lgsp worker`` and ``lgsp status``: the operator's view of delivery.

lgsp worker                          deliver queued messages (as its own process)
lgsp deliveries list [--state S]     the queue, newest first
lgsp deliveries show ID              one delivery with its attempts
lgsp deliveries retry ID             a dead (or waiting) delivery: try again now
lgsp deliveries replay-dead          every dead delivery: try again now
lgsp deliveries discard ID           give up a dead or queued delivery (unblocks its order key)
lgsp status [--url URL]              a running gateway's upstreams: reachability, circuit,
                                     in-flight calls; and the delivery queue
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import httpx
import typer
from rich.markup import escape
from rich.table import Table

from bus.cli_support import ConfigOption, JsonOption, err, on_store, out, print_json
from bus.cli_support import gateway as build
from bus.delivery.store import (
    STATES,
    Delivery,
    DeliveryStore,
    DeliveryStoreError,
    SqliteDeliveryStore,
)
from bus.delivery.views import view_of

__all__ = ["deliveries_app", "status", "worker"]

T = TypeVar("T")

deliveries_app = typer.Typer(
    help="Inspect and act on store-and-forward deliveries ($LGSP_STORE_PATH).",
    no_args_is_help=True,
)
DeliveryId = Annotated[str, typer.Argument(metavar="DELIVERY_ID", help="e.g. dlv_0f3a...")]
_OUTCOME_STATE = {"ok": "delivered", "error": "error", "lost": "dead"}  # colours of outcomes
_STATE_STYLE = {
    "error": "yellow",
    "dead": "red",
    "delivered": "green",
    "in_flight": "yellow",
    "discarded": "dim",
}


def _with_store(work: Callable[[DeliveryStore], Awaitable[T]]) -> T:
    """Run ``work`` on the delivery store of ``LGSP_STORE_PATH``; refusals exit 2, plainly."""
    return on_store(SqliteDeliveryStore, work, (DeliveryStoreError,))


def _now() -> float:
    return datetime.now(UTC).timestamp()


def _when(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _state(state: str) -> str:
    style = _STATE_STYLE.get(state)
    return f"[{style}]{state}[/]" if style else state


def _json(delivery: Delivery) -> dict[str, Any]:
    view = view_of(delivery).model_dump(mode="json", exclude={"attempt_log", "result"})
    view["consumer"] = delivery.consumer
    view["order_key"] = delivery.order_key
    return view


@deliveries_app.command("list")
def deliveries_list(
    state: Annotated[str | None, typer.Option(help=f"Only this state: {', '.join(STATES)}")] = None,
    service: Annotated[str | None, typer.Option(help="Only this service")] = None,
    consumer: Annotated[str | None, typer.Option(help="Only this consumer")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many")] = 50,
    before: Annotated[
        int | None, typer.Option(help="Cursor: only deliveries older than this sequence number")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List deliveries, newest first, with the queue's counts per state."""
    if state is not None and state not in STATES:
        raise typer.BadParameter(f"one of {', '.join(STATES)}", param_hint="--state")

    async def read(store: DeliveryStore) -> tuple[list[Delivery], dict[str, int]]:
        rows = await store.list(
            state=state,
            service=service,
            consumer=consumer,
            after_seq=before,
            limit=limit,
        )
        return rows, await store.counts()

    rows, counts = _with_store(read)
    if as_json:
        print_json({"counts": counts, "deliveries": [_json(d) for d in rows]})
        return
    table = Table(title=f"Deliveries ({len(rows)} shown)")
    columns = ("seq", "id", "state", "service/operation", "consumer", "attempts", "next / done")
    for column in (*columns, "last error"):
        table.add_column(column, no_wrap=column in ("id", "seq"))
    for d in rows:
        table.add_row(
            str(d.seq),
            d.id,
            _state(d.state),
            escape(f"{d.service}/{d.operation}"),
            escape(d.consumer),
            f"{d.attempts}/{d.max_attempts}",
            _when(d.delivered_at if d.state == "delivered" else d.next_attempt_at)
            if d.state in ("queued", "delivered")
            else "",
            escape(d.last_error_code or ""),
        )
    out.print(table)
    out.print(
        "  ".join(f"{_state(s)}: {counts.get(s, 0)}" for s in STATES),
        highlight=False,
    )
    if len(rows) == limit:
        out.print(f"more: --before {rows[-1].seq}", highlight=False)


@deliveries_app.command("show")
def deliveries_show(delivery_id: DeliveryId, as_json: JsonOption = False) -> None:
    """Show one delivery: state, attempts with their errors, and its result once delivered."""

    async def read(store: DeliveryStore) -> tuple[Delivery | None, list[Any]]:
        found = await store.get(delivery_id)
        return found, [] if found is None else await store.attempts(delivery_id)

    found, attempts = _with_store(read)
    if found is None:
        err.print(f"[bold red]no delivery[/] {escape(delivery_id)}", highlight=False)
        raise typer.Exit(code=2)
    view = view_of(found, attempts)
    if as_json:
        data = view.model_dump(mode="json")
        data["consumer"], data["order_key"] = found.consumer, found.order_key
        print_json(data)
        return
    out.print(
        f"delivery {found.id}: {_state(found.state)}\n"
        f"  {escape(found.service)}/{escape(found.operation)} for {escape(found.consumer)}, "
        f"request {escape(found.request_id)}\n"
        f"  queued {_when(found.created_at)}, attempts {found.attempts} "
        f"(this round {found.round_attempts} of {found.max_attempts})"
        + (f"\n  next attempt {_when(found.next_attempt_at)}" if found.state == "queued" else "")
        + (f"\n  delivered {_when(found.delivered_at)}" if found.delivered_at else "")
        + (f"\n  order key {escape(found.order_key)}" if found.order_key else ""),
        highlight=False,
        soft_wrap=True,
    )
    table = Table(title="Attempts")
    for column in ("#", "started", "ended", "outcome", "error"):
        table.add_column(column)
    for a in view.attempt_log:
        error = f"{a.error.code}: {a.error.message}" if a.error else ""
        table.add_row(
            str(a.number),
            a.started_at.isoformat(timespec="seconds"),
            a.ended_at.isoformat(timespec="seconds"),
            _state(_OUTCOME_STATE[a.outcome]),
            escape(error),
        )
    out.print(table)


@deliveries_app.command("retry")
def deliveries_retry(delivery_id: DeliveryId) -> None:
    """Try a dead delivery again now, with a fresh round of attempts."""
    d = _with_store(lambda store: store.retry(delivery_id, _now()))
    out.print(f"delivery {d.id}: {_state(d.state)}, due now", highlight=False)


@deliveries_app.command("replay-dead")
def deliveries_replay_dead(
    service: Annotated[str | None, typer.Option(help="Only this service's")] = None,
) -> None:
    """Try every dead delivery again now (e.g. after the upstream came back)."""
    count = _with_store(lambda store: store.replay_dead(_now(), service))
    out.print(f"{count} dead deliver{'y' if count == 1 else 'ies'} queued again", highlight=False)


@deliveries_app.command("discard")
def deliveries_discard(delivery_id: DeliveryId) -> None:
    """Give up a dead or queued delivery; later messages of its order key may then go."""
    d = _with_store(lambda store: store.discard(delivery_id, _now()))
    out.print(f"delivery {d.id}: {_state(d.state)}", highlight=False)


def worker(config: ConfigOption = None) -> None:
    """Deliver queued messages until SIGTERM or Ctrl-C (then finish or give back in-flight
    ones within LGSP_GRACE_SECONDS)."""
    from bus.delivery.worker import DeliveryWorker
    from bus.logging import configure_logging

    gw = build(config)
    configure_logging(gw.settings.log_level, gw.settings.log_format)

    async def run() -> None:
        await gw.start()
        delivering = DeliveryWorker(gw)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        delivering.start()
        err.print(
            f"lgsp: delivery worker {delivering.owner} on {gw.settings.store_path}",
            highlight=False,
            soft_wrap=True,
        )
        try:
            await stop.wait()
        finally:
            await delivering.stop()
            await gw.stop()

    asyncio.run(run())


def status(
    url: Annotated[str, typer.Option(help="The running gateway")] = "http://127.0.0.1:8000",
    as_json: JsonOption = False,
) -> None:
    """Show a running gateway's upstreams (reachability, circuit breaker, calls in flight) and
    the delivery queue's counts. Circuit state is per gateway process."""
    try:
        reply = httpx.get(f"{url.rstrip('/')}/readyz", timeout=10, trust_env=False)
        ready = reply.json()
    except (httpx.HTTPError, ValueError) as exc:
        err.print(
            f"[bold red]cannot read {escape(url)}/readyz[/]: {escape(str(exc))}", highlight=False
        )
        raise typer.Exit(code=2) from exc
    counts = _with_store(lambda store: store.counts())
    if as_json:
        print_json({"readyz": ready, "deliveries": counts})
        return
    table = Table(title=f"{escape(url)}: {ready.get('status')}")
    for column in ("service", "reachable", "circuit", "failure rate", "in flight", "detail"):
        table.add_column(column)
    for name, up in ready.get("upstreams", {}).items():
        circuit = up.get("circuit") or {}
        state = circuit.get("state", "none")
        if state == "open":
            state = f"[red]open[/] ({circuit.get('retry_in')} s)"
        rate = circuit.get("failure_rate")
        bulkhead = up.get("bulkhead") or {}
        reachable = up.get("reachable")
        table.add_row(
            escape(name),
            "-" if reachable is None else "[green]yes[/]" if reachable else "[red]no[/]",
            state,
            "" if rate is None else f"{rate:.0%} of {circuit.get('calls')}",
            f"{bulkhead.get('in_flight', 0)}/{bulkhead.get('max_in_flight', '')}",
            escape(str(up.get("detail", ""))),
        )
    out.print(table)
    out.print(
        "deliveries: " + "  ".join(f"{_state(s)}: {counts.get(s, 0)}" for s in STATES),
        highlight=False,
    )
