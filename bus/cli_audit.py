"""``lgsp audit``: the operator's view of the exchange log ($LGSP_AUDIT_PATH, default beside
$LGSP_STORE_PATH).

lgsp audit query [filters]                 records, newest first, with the next cursor
lgsp audit show ID [--bodies]              one record; --bodies decrypts its request and reply
lgsp audit verify                          check the whole hash chain and its signatures
lgsp audit stats [--since --until]         calls, errors, latency per service operation
lgsp audit export --from --to --out FILE   a signed bundle of a period, checkable offline
lgsp audit verify-bundle FILE              check a bundle with nothing but the bundle
lgsp audit purge --before DATE             remove exported records; the chain keeps an anchor

Dates are ISO dates (2026-11-01) or date-times (2026-11-01T08:30, 2026-11-01T01:30Z); without
an offset they are Asia/Ho_Chi_Minh time. A period is ``from <= t < to``: a date alone means
its first moment. ``query`` and ``stats`` select by when the call was received, ``export`` and
``purge`` by when it was recorded.

Every read of the log from here (query, show, stats, export) and every purge is itself
recorded in the log, as an exchange of kind ``audit`` by ``cli:<os user>``. A citizen id given
to ``query --citizen-id`` is only used as its keyed blind index: it is neither printed nor
stored.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bus.audit import Exchange
from bus.audit.bundle import BundleError, export_bundle, verify_bundle
from bus.audit.chain import Problem, StoredRecord, VerifyReport
from bus.audit.keys import AuditKeys, KeyError_
from bus.audit.log import AuditLog, AuditWriteError, open_audit
from bus.audit.record import KINDS, OUTCOMES, record_ref
from bus.audit.sqlite_store import SqliteAuditStore
from bus.audit.store import AuditQuery, AuditStoreError, PurgeResult, StatRow, instant
from bus.audit.store import Progress as StoreProgress
from bus.cli_support import JsonOption, err, out, print_json, refused, settings
from bus.logging import configure_logging

__all__ = ["audit_app", "with_log"]

T = TypeVar("T")

audit_app = typer.Typer(
    help="Read, verify, export and purge the exchange log ($LGSP_AUDIT_PATH).",
    no_args_is_help=True,
)

DATE_HELP = "ISO date or date-time; Asia/Ho_Chi_Minh time without an offset"


def _moment(value: str | None, option: str) -> str | None:
    """``value`` as the store's time text (UTC ISO 8601); a bad value exits 2 naming
    ``option``."""
    if value is None:
        return None
    try:
        return instant(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r}: {exc}", param_hint=option) from exc


def _period(
    since: str | None, until: str | None, names: tuple[str, str] = ("--since", "--until")
) -> tuple[str | None, str | None]:
    start, end = _moment(since, names[0]), _moment(until, names[1])
    if start is not None and end is not None and start >= end:
        raise typer.BadParameter(f"must be later than {names[0]}", param_hint=names[1])
    return start, end


def _choice(value: str | None, choices: tuple[str, ...], option: str) -> str | None:
    if value is not None and value not in choices:
        raise typer.BadParameter(f"one of {', '.join(choices)}", param_hint=option)
    return value


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (a bare container)
        return f"uid-{os.getuid()}"


# --- running on the log ----------------------------------------------------------------------


@dataclass(slots=True)
class _Session:
    """The exchange log opened for one command, and the recorder of the command's reads."""

    store: SqliteAuditStore
    keys: AuditKeys
    recorder: AuditLog
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    _clock: float = field(default_factory=time.perf_counter)

    async def record_read(
        self,
        operation: str,
        detail: Mapping[str, Any],
        *,
        found: bool = True,
        subjects: tuple[str, ...] = (),
    ) -> None:
        """Record this command's read (or change) of the log, before anything is shown.
        ``subjects``: citizen ids read about, in clear here only (the record keeps their
        blind indexes)."""
        exchange = Exchange(
            request_id=f"cli-{uuid.uuid4()}",
            consumer=f"cli:{_os_user()}",
            service="audit",
            operation=f"cli.{operation}",
            received_at=self.started,
            replied_at=datetime.now(UTC),
            duration_ms=round((time.perf_counter() - self._clock) * 1000, 3),
            outcome="ok" if found else "error",
            http_status=200 if found else 404,
            error_code=None if found else "client.not_found",
            attempts=0,  # a read of the log: no upstream
            request_bytes=0,
            reply_bytes=0,
            kind="audit",
            subjects=subjects,
            detail=dict(detail),
        )
        await self.recorder.record(exchange)


def with_log(work: Callable[[_Session], Awaitable[T]], *, must_exist: bool = True) -> T:
    """Run ``work`` on the exchange log of the process settings, then close it. A log that
    does not exist (unless ``must_exist`` is False: it is then created), cannot be opened, or
    refuses (a purge of records never exported), and a read that cannot be recorded, exit 2
    with the reason, plainly."""
    chosen = settings()
    # Log lines (e.g. the key-file warning) go to stderr: stdout is for the answer (--json).
    configure_logging(chosen.log_level, chosen.log_format)
    path = chosen.audit_file()
    if must_exist and not path.exists():
        err.print(
            f"[bold red]no exchange log[/] at {escape(str(path))} (set LGSP_AUDIT_PATH, or "
            "LGSP_STORE_PATH beside which it is kept)",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(code=2)

    async def run() -> T:
        store, keys = open_audit(chosen)
        recorder = AuditLog(store, keys, batch=1)
        try:
            return await work(_Session(store, keys, recorder))
        finally:
            await recorder.close()  # writes what is waiting, then closes the store

    try:
        return asyncio.run(run())
    except (AuditStoreError, BundleError, KeyError_) as exc:
        raise refused(exc) from exc
    except AuditWriteError as exc:
        err.print(
            "[bold red]refused[/]\nthis read could not be recorded in the exchange log, so "
            f"nothing is shown: {escape(str(exc))}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(code=2) from exc
    except (sqlite3.Error, OSError) as exc:
        err.print(
            f"[bold red]cannot use the exchange log[/] {escape(str(path))}: {escape(str(exc))}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(code=2) from exc


@contextmanager
def _progress(description: str, shown: bool) -> Iterator[StoreProgress | None]:
    """A progress bar on stderr (not with --json), and the callback that moves it; the store
    calls it from its worker thread, which rich allows."""
    if not shown or not err.is_terminal:
        yield None
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    with bar:
        task = bar.add_task(description, total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield advance


# --- views -----------------------------------------------------------------------------------


def _data(record: StoredRecord) -> dict[str, Any]:
    try:
        return record.parsed()
    except ValueError:
        return {}


def _view(record: StoredRecord) -> dict[str, Any]:
    """A record for --json: its data (the encrypted body reduced to its key id), its place in
    the chain. Nothing in it names a citizen in clear."""
    data = _data(record)
    body = data.pop("body", None)
    view: dict[str, Any] = {"seq": record.seq, "id": record.id}
    view |= data
    view["body"] = (
        {"encrypted": True, "kid": body.get("kid")} if isinstance(body, Mapping) else None
    )
    view["prev_hash"], view["hash"] = record.prev_hash, record.hash
    if not data:
        view["unreadable"] = True
    return view


def _text(value: Any) -> str:
    return "" if value is None else escape(str(value))


def _outcome(data: Mapping[str, Any]) -> str:
    if data.get("outcome") == "ok":
        return "[green]ok[/]"
    code = data.get("error_code")
    return f"[red]{_text(data.get('outcome'))}[/]" + (f" {_text(code)}" if code else "")


_NO_WRAP = frozenset({"seq", "received (UTC)", "kind", "http", "ms"})


def _short_time(value: Any) -> Any:
    """``2026-11-01T01:03:00.120000+00:00`` as ``2026-11-01 01:03:00`` (the column says UTC;
    --json gives the time exactly)."""
    if isinstance(value, str) and value.endswith("+00:00") and len(value) >= 19:
        return value[:19].replace("T", " ")
    return value


def _records_table(records: list[StoredRecord]) -> Table:
    table = Table(title=f"Exchange records ({len(records)} shown, newest first)")
    columns = (
        "seq",
        "received (UTC)",
        "kind",
        "consumer",
        "end user",
        "service.operation",
        "outcome",
        "http",
        "ms",
    )
    for column in columns:
        # fold, never cut: an auditor must see every character of what is shown
        table.add_column(column, overflow="fold", no_wrap=column in _NO_WRAP)
    for record in records:
        data = _data(record)
        duration = data.get("duration_ms")
        table.add_row(
            str(record.seq),
            _text(_short_time(data.get("received_at"))),
            _text(data.get("kind")),
            _text(data.get("consumer")),
            _text(data.get("end_user")),
            _text(f"{data.get('service') or '-'}.{data.get('operation') or '-'}"),
            _outcome(data),
            _text(data.get("http_status")),
            f"{duration:.1f}" if isinstance(duration, int | float) else "",
        )
    return table


def _problem_text(problem: Problem) -> str:
    named = f" ({problem.id})" if problem.id else ""
    return f"record {problem.seq}{named} {problem.kind}: {problem.detail}"


# --- commands --------------------------------------------------------------------------------

SinceOption = Annotated[
    str | None, typer.Option("--since", help=f"Received at or after [{DATE_HELP}]")
]
UntilOption = Annotated[str | None, typer.Option("--until", help=f"Received before [{DATE_HELP}]")]
ServiceOption = Annotated[str | None, typer.Option("--service", help="Only this service")]


@audit_app.command("query")
def audit_query(
    since: SinceOption = None,
    until: UntilOption = None,
    consumer: Annotated[str | None, typer.Option(help="Only this consumer")] = None,
    agency: Annotated[str | None, typer.Option(help="Only this agency")] = None,
    end_user: Annotated[
        str | None, typer.Option("--end-user", help="Only on behalf of this officer")
    ] = None,
    service: ServiceOption = None,
    operation: Annotated[str | None, typer.Option(help="Only this operation")] = None,
    outcome: Annotated[str | None, typer.Option(help="ok or error")] = None,
    error_code: Annotated[
        str | None, typer.Option("--error-code", help="Only this error code")
    ] = None,
    kind: Annotated[str | None, typer.Option(help=f"One of {', '.join(KINDS)}")] = None,
    citizen_id: Annotated[
        str | None,
        typer.Option(
            "--citizen-id",
            help="Only exchanges about this citizen (found by its keyed blind index; the id "
            "is neither shown nor stored)",
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many")] = 50,
    cursor: Annotated[
        int | None,
        typer.Option(min=1, max=2**63 - 1, help="Only records before this seq (the next cursor)"),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Find exchange records, newest first."""
    start, end = _period(since, until)
    filters = {
        "since": start,
        "until": end,
        "consumer": consumer,
        "agency": agency,
        "end_user": end_user,
        "service": service,
        "operation": operation,
        "outcome": _choice(outcome, OUTCOMES, "--outcome"),
        "error_code": error_code,
        "kind": _choice(kind, KINDS, "--kind"),
    }
    if citizen_id is not None and not citizen_id.strip():
        raise typer.BadParameter("is empty", param_hint="--citizen-id")

    async def read(s: _Session) -> tuple[list[StoredRecord], bool]:
        subject = None if citizen_id is None else s.keys.blind(citizen_id)
        query = AuditQuery(**filters, subject=subject)
        records = await s.store.query(query, limit=limit + 1, before_seq=cursor)
        more = len(records) > limit
        records = records[:limit]
        given = {name: value for name, value in filters.items() if value is not None}
        await s.record_read(
            "query",
            {
                "filters": given,
                "by_citizen": citizen_id is not None,
                "limit": limit,
                "cursor": cursor,
                "results": len(records),
            },
            subjects=() if citizen_id is None else (citizen_id,),
        )
        return records, more

    records, more = with_log(read)
    next_cursor = records[-1].seq if more else None
    if as_json:
        print_json({"records": [_view(r) for r in records], "next_cursor": next_cursor})
        return
    out.print(_records_table(records))
    if next_cursor is not None:
        out.print(f"more: --cursor {next_cursor}", highlight=False)


def _decrypt(keys: AuditKeys, record: StoredRecord) -> dict[str, Any]:
    """The request and reply bodies of ``record``, or why they cannot be shown."""
    body = _data(record).get("body")
    if not isinstance(body, dict):
        return {"error": "no bodies were kept for this exchange (capture level metadata)"}
    try:
        request, reply = keys.open_bodies(body, record.id)
    except KeyError_ as exc:
        return {"error": str(exc)}
    return {"request": request, "reply": reply}


@audit_app.command("show")
def audit_show(
    record_id: Annotated[str, typer.Argument(metavar="ID", help="The record's id")],
    bodies: Annotated[
        bool,
        typer.Option("--bodies", help="Decrypt and show the request and reply bodies"),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Show one exchange record; --bodies decrypts its request and reply (personal data:
    the read is recorded)."""

    async def read(s: _Session) -> tuple[StoredRecord | None, dict[str, Any] | None]:
        record = await s.store.get(record_id)
        opened = _decrypt(s.keys, record) if record is not None and bodies else None
        await s.record_read(
            "show", {"record_id": record_ref(record_id), "bodies": bodies}, found=record is not None
        )
        return record, opened

    record, opened = with_log(read)
    if record is None:
        err.print(f"[bold red]no record[/] {escape(record_id)}", highlight=False)
        raise typer.Exit(code=2)
    view = _view(record)
    if as_json:
        print_json({"record": view, "bodies": opened})
        return
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold", no_wrap=True)
    fields.add_column(overflow="fold")
    for name, value in view.items():
        if name == "subjects":
            fields.add_row(name, f"{len(value or [])} citizen(s), as blind indexes")
        elif isinstance(value, dict | list):
            fields.add_row(name, _text(json.dumps(value, ensure_ascii=False)) if value else "")
        else:
            fields.add_row(name, _text(value))
    out.print(fields)
    if opened is None:
        return
    if "error" in opened:
        err.print(f"[bold yellow]bodies:[/] {escape(opened['error'])}", highlight=False)
        return
    for name in ("request", "reply"):
        out.print(f"[bold]{name} body[/]", highlight=False)
        out.print(opened[name] or "(none)", markup=False, highlight=False, soft_wrap=True)


WorkersOption = Annotated[
    int,
    typer.Option(
        "--workers",
        min=0,
        help="Processes checking ranges of the chain side by side, split at signed "
        "checkpoints (0: one per CPU). A log under 200,000 records is checked in one.",
    ),
]


def _processes(workers: int) -> int:
    """``--workers``: 0 is one per CPU."""
    return workers or os.cpu_count() or 1


@audit_app.command("verify")
def audit_verify(
    as_json: JsonOption = False,
    index: Annotated[
        bool,
        typer.Option(
            "--index",
            help="Also check the citizen index: every record found under exactly the citizens "
            "it names (an entry removed would hide an exchange from a citizen's search). "
            "Some 15% slower.",
        ),
    ] = False,
    workers: WorkersOption = 0,
) -> None:
    """Check the whole chain: every record's hash and link, the checkpoints and the signed
    head (from the purge anchor, if purged). Exit 1 if the log does not verify."""

    async def check(s: _Session) -> tuple[VerifyReport, str]:
        with _progress("verifying", not as_json) as progress:
            report = await s.store.verify(
                trusted=frozenset({s.keys.public_key}),
                progress=progress,
                citizen_index=index,
                workers=_processes(workers),
            )
        return report, s.keys.public_key

    report, public_key = with_log(check)
    if as_json:
        print_json(report.as_json() | {"public_key": public_key})
        raise typer.Exit(code=0 if report.ok else 1)
    if not report.ok:
        assert report.problem is not None
        err.print(
            f"[bold red]FAILED[/] after {report.checked} good record(s): "
            f"{escape(_problem_text(report.problem))}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(code=1)
    head = report.head
    if head is None or report.checked == 0:
        out.print("[bold green]OK[/]: the exchange log is empty", highlight=False)
        return
    first = report.first_seq or 1
    start = "" if first == 1 else f", from the purge anchor at record {first - 1}"
    out.print(
        f"[bold green]OK[/]: {report.checked} record(s) verified "
        f"({report.first_seq} to {report.last_seq}{start})\n"
        f"  head: record {head.seq}, hash {head.hash}, signed at {head.signed_at}\n"
        f"  signing key: {public_key}",
        highlight=False,
        soft_wrap=True,
    )


@audit_app.command("stats")
def audit_stats(
    since: SinceOption = None,
    until: UntilOption = None,
    service: ServiceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Calls, errors, error rate and latency percentiles per service operation."""
    start, end = _period(since, until)

    async def read(s: _Session) -> list[StatRow]:
        rows = await s.store.stats(AuditQuery(since=start, until=end, service=service))
        detail = {"since": start, "until": end, "service": service, "results": len(rows)}
        await s.record_read("stats", detail)
        return rows

    rows = with_log(read)
    if as_json:
        print_json([r.as_json() for r in rows])
        return
    table = Table(title=f"Exchanges {start or 'from the start'} to {end or 'now'} (UTC)")
    for column in ("service", "operation", "calls", "errors", "error rate", "p50", "p95", "p99"):
        text = column in ("service", "operation")
        table.add_column(column, justify="left" if text else "right", overflow="fold")
    for r in rows:
        table.add_row(
            _text(r.service or "-"),
            _text(r.operation or "-"),
            str(r.calls),
            str(r.errors),
            f"{r.error_rate:.1%}",
            f"{r.p50_ms:.1f} ms",
            f"{r.p95_ms:.1f} ms",
            f"{r.p99_ms:.1f} ms",
        )
    out.print(table)


@audit_app.command("export")
def audit_export(
    out_file: Annotated[Path, typer.Option("--out", help="The bundle to write (a new file)")],
    from_: Annotated[
        str | None,
        typer.Option("--from", help=f"Recorded at or after [{DATE_HELP}; default: the start]"),
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", help=f"Recorded before [{DATE_HELP}; default: now]")
    ] = None,
    as_json: JsonOption = False,
    workers: WorkersOption = 0,
) -> None:
    """Write the records of a period to a signed bundle (one zip file) that anyone can check
    offline with `lgsp audit verify-bundle`; the whole log is verified first."""
    start, end = _period(from_, to, ("--from", "--to"))

    async def export(s: _Session) -> dict[str, Any]:
        with _progress("exporting", not as_json) as progress:
            manifest = await export_bundle(
                s.store, s.keys, start, end, out_file, progress, workers=_processes(workers)
            )
        detail = {
            "from": start,
            "to": end,
            "first_seq": manifest["first_seq"],
            "last_seq": manifest["last_seq"],
            "count": manifest["count"],
            "records_sha256": manifest["files"]["records.jsonl"]["sha256"],
        }
        await s.record_read("export", detail)
        return manifest

    manifest = with_log(export)
    if as_json:
        print_json({"path": str(out_file), "manifest": manifest})
        return
    signer = manifest["signer"]
    body_keys = ", ".join(manifest["body_keys"]) or "none"
    out.print(
        f"[bold green]exported[/] records {manifest['first_seq']} to {manifest['last_seq']} "
        f"({manifest['count']}) to {escape(str(out_file))}\n"
        f"  period (recorded, UTC): {manifest['period']['from'] or 'the start'} to "
        f"{manifest['period']['to'] or 'now'}\n"
        f"  chains from {manifest['prev_hash']}\n"
        f"  ends at     {manifest['last_hash']}\n"
        f"  records.jsonl sha256 {manifest['files']['records.jsonl']['sha256']}\n"
        f"  signed by key {signer['fingerprint']} ({signer['public_key']})\n"
        f"  body encryption keys: {escape(body_keys)}",
        highlight=False,
        soft_wrap=True,
    )


@audit_app.command("verify-bundle")
def audit_verify_bundle(
    bundle: Annotated[Path, typer.Argument(metavar="FILE", help="The bundle (zip) to check")],
    public_key: Annotated[
        str | None,
        typer.Option(
            "--public-key",
            help="The bus's signing key (base64) the bundle must be signed with",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check a bundle offline: the manifest's signature, the files' digests and the whole
    chain of its records. Needs no log, no keys, no network. Exit 1 if it fails."""
    try:
        with _progress("verifying", not as_json) as progress:
            report = verify_bundle(bundle, public_key=public_key, progress=progress)
    except BundleError as exc:
        raise refused(exc) from exc
    if as_json:
        print_json(report.as_json())
        raise typer.Exit(code=0 if report.ok else 1)
    manifest = report.manifest or {}
    if not report.ok:
        lines = [escape(e) for e in report.errors]
        if report.problem is not None:
            lines.insert(0, escape(_problem_text(report.problem)))
        err.print(
            f"[bold red]FAILED[/] {escape(str(bundle))}\n" + "\n".join(f"  {x}" for x in lines),
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(code=1)
    out.print(
        f"[bold green]OK[/]: {escape(str(bundle))}: records {manifest.get('first_seq')} to "
        f"{manifest.get('last_seq')} ({report.checked}) verified, signed by key "
        f"{report.fingerprint}",
        highlight=False,
        soft_wrap=True,
    )
    if not report.pinned:
        err.print(
            "[bold yellow]the signing key was not pinned[/]: check that fingerprint "
            f"{report.fingerprint} is the bus's, or give --public-key",
            highlight=False,
            soft_wrap=True,
        )


@audit_app.command("purge")
def audit_purge(
    before: Annotated[
        str, typer.Option("--before", help=f"Remove records recorded before this [{DATE_HELP}]")
    ],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
    as_json: JsonOption = False,
) -> None:
    """Remove the records recorded before a date, all of which must be in an export; the
    last one removed stays as the signed anchor the chain then starts from."""
    cutoff = _moment(before, "--before")
    assert cutoff is not None
    if as_json and not yes:
        raise typer.BadParameter("--json asks nothing: give --yes as well", param_hint="--yes")
    if not yes:
        span = with_log(lambda s: s.store.seq_range(None, cutoff))
        if span is None:
            out.print(f"nothing to purge: no record was recorded before {cutoff}", highlight=False)
            return
        typer.confirm(
            f"Remove records {span[0]} to {span[1]} ({span[1] - span[0] + 1}), recorded "
            f"before {cutoff}?",
            abort=True,
        )

    async def purge(s: _Session) -> PurgeResult:
        result = await s.store.purge(cutoff)
        anchor = result.anchor
        detail = {
            "before": cutoff,
            "purged": result.purged,
            "anchor_seq": anchor.seq if anchor else None,
        }
        await s.record_read("purge", detail)
        return result

    result = with_log(purge)
    anchor = result.anchor
    if as_json:
        print_json({"purged": result.purged, "anchor": anchor.as_json() if anchor else None})
        return
    text = f"[bold green]purged[/] {result.purged} record(s) recorded before {cutoff}"
    if anchor is not None:
        text += (
            f"\n  the chain now starts from the signed anchor: record {anchor.seq}, "
            f"hash {anchor.hash}, signed at {anchor.signed_at}"
        )
    out.print(text, highlight=False, soft_wrap=True)
