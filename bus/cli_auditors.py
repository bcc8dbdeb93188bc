"""``lgsp auditors``: the people and systems who may read the exchange log (``/v1/audit``).

lgsp auditors add ID --name NAME [--bodies]   create one; its key is printed once
lgsp auditors list                            every auditor, its status and rights
lgsp auditors grant-bodies ID                 may read decrypted request and reply bodies
lgsp auditors revoke-bodies ID
lgsp auditors suspend ID                      its key is refused until activated
lgsp auditors activate ID

Auditors are kept in the exchange log ($LGSP_AUDIT_PATH, default beside $LGSP_STORE_PATH),
apart from consumers: an auditor key opens only the audit API, and neither a consumer's
credential nor the admin token opens it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from bus.audit.auditors import Auditors, auditor_view, key_id_of
from bus.audit.store import Auditor
from bus.cli_audit import with_log
from bus.cli_support import JsonOption, err, out, print_json

__all__ = ["auditors_app"]

T = TypeVar("T")

auditors_app = typer.Typer(
    help="Manage the auditors who may read the exchange log (/v1/audit).", no_args_is_help=True
)

SHOWN_ONCE = (
    "Shown once: the exchange log keeps only a hash and cannot show it again. Give it to the "
    "auditor now, through a secure channel."
)
AuditorId = Annotated[str, typer.Argument(metavar="ID", help="The auditor's id")]


def _with_auditors(work: Callable[[Auditors], Awaitable[T]]) -> T:
    """Run ``work`` on the auditors of the exchange log of the process settings (created if
    the gateway never ran), through the audit CLI's runner and its plain refusals."""
    return with_log(lambda session: work(Auditors(session.store)), must_exist=False)


def _summary(auditor: Auditor) -> None:
    status = "active" if auditor.active else "suspended"
    bodies = "may read bodies" if auditor.can_read_bodies else "may not read bodies"
    out.print(
        f"auditor {escape(auditor.id)} ({escape(auditor.name)}): {status}, {bodies}",
        highlight=False,
        soft_wrap=True,
    )


@auditors_app.command("add")
def auditors_add(
    auditor_id: AuditorId,
    name: Annotated[str, typer.Option("--name", help="Display name")],
    bodies: Annotated[
        bool, typer.Option("--bodies", help="May read decrypted request and reply bodies")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Create an auditor and print its key, once."""
    auditor, key = _with_auditors(lambda a: a.create(auditor_id, name, can_read_bodies=bodies))
    if as_json:
        print_json({"auditor": auditor_view(auditor), "auditor_key": key})
        return
    out.print("[bold green]created[/]", highlight=False)
    _summary(auditor)
    # Plain echo: no markup, no wrapping, so the key can be copied exactly.
    typer.echo(f"auditor key: {key}")
    err.print(f"[bold yellow]{SHOWN_ONCE}[/]", highlight=False, soft_wrap=True)


@auditors_app.command("list")
def auditors_list(as_json: JsonOption = False) -> None:
    """Show every auditor with its status and rights (never a key)."""
    auditors = _with_auditors(lambda a: a.list_all())
    if as_json:
        print_json([auditor_view(a) for a in auditors])
        return
    table = Table(title=f"Auditors ({len(auditors)})")
    for column in ("id", "name", "status", "bodies", "key id", "created"):
        table.add_column(column)
    for a in auditors:
        table.add_row(
            escape(a.id),
            escape(a.name),
            "active" if a.active else "[red]suspended[/]",
            "[yellow]may read[/]" if a.can_read_bodies else "withheld",
            key_id_of(a),
            a.created_at,
        )
    out.print(table)


@auditors_app.command("grant-bodies")
def auditors_grant_bodies(auditor_id: AuditorId) -> None:
    """Let an auditor read the decrypted request and reply bodies of records."""
    _summary(_with_auditors(lambda a: a.set_bodies(auditor_id, True)))


@auditors_app.command("revoke-bodies")
def auditors_revoke_bodies(auditor_id: AuditorId) -> None:
    """Withhold bodies from an auditor again: it sees records' metadata only."""
    _summary(_with_auditors(lambda a: a.set_bodies(auditor_id, False)))


@auditors_app.command("suspend")
def auditors_suspend(auditor_id: AuditorId) -> None:
    """Suspend an auditor: its key is refused until it is activated again."""
    _summary(_with_auditors(lambda a: a.set_active(auditor_id, False)))


@auditors_app.command("activate")
def auditors_activate(auditor_id: AuditorId) -> None:
    """Activate a suspended auditor."""
    _summary(_with_auditors(lambda a: a.set_active(auditor_id, True)))
