"""`lgsp audit`: query, show, verify, stats, export, verify-bundle and purge on a real log;
JSON that parses, plain refusals (exit 2), failures (exit 1), and every read recorded."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import zipfile
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from bus.audit.keys import AuditKeys
from bus.audit.record import NewRecord, canonical
from bus.audit.sqlite_store import SqliteAuditStore
from bus.cli import app
from bus.cli_audit import _moment
from bus.settings import Settings

runner = CliRunner()
CITIZEN = "079199001234"
OTHER_CITIZEN = "001088009876"
DAY = datetime(2026, 11, 1, 1, 0, tzinfo=UTC)  # 08:00 in Hanoi

Lgsp = Callable[..., Result]


@dataclass
class Built:
    keys: AuditKeys
    settings: Settings


def _record(n: int, keys: AuditKeys) -> NewRecord:
    """Exchange ``n``: every fifth an error; the third about CITIZEN, with its bodies."""
    received = DAY + timedelta(days=(n - 1) // 10, minutes=n)
    rid = f"rec-{n:04d}"
    about = n == 3
    body = (
        keys.encrypt(
            canonical({"request": f'{{"id":"{CITIZEN}"}}', "reply": '{"found":true}'}),
            rid.encode(),
        )
        if about
        else None
    )
    return NewRecord(
        id=rid,
        kind="call",
        request_id=f"req-{n}",
        received_at=received.isoformat(),
        replied_at=(received + timedelta(milliseconds=30)).isoformat(),
        consumer="so-tp" if n % 2 else "ubnd-q1",
        agency="000.00.01.H29",
        end_user="cb.042",
        service="population" if n % 3 else "land",
        operation="lookup",
        outcome="error" if n % 5 == 0 else "ok",
        error_code="upstream.timeout" if n % 5 == 0 else None,
        http_status=504 if n % 5 == 0 else 200,
        attempts=1,
        duration_ms=float(n),
        request_bytes=100,
        reply_bytes=300,
        request_digest=keys.digest(b"request"),
        reply_digest=keys.digest(b"reply"),
        capture="full" if about else "metadata",
        subjects=(keys.blind(CITIZEN),) if about else (),
        body=body,
    )


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "lgsp.db"


@pytest.fixture
def built(store_path: Path) -> Built:
    """A log of 30 calls, ten recorded on each of 2026-11-01, -02 and -03 (UTC, 01:00 on),
    appended straight into the store with the keys the CLI then loads from the key file."""
    settings = Settings(store_path=store_path)
    keys = AuditKeys.load({}, settings.audit_keys_file())
    clock = {"now": ""}

    async def fill() -> None:
        store = SqliteAuditStore(
            settings.audit_file(), keys, checkpoint_every=5, now=lambda: clock["now"]
        )
        try:
            for n in range(1, 31):
                moment = DAY + timedelta(days=(n - 1) // 10, minutes=n)
                clock["now"] = moment.isoformat(timespec="microseconds")
                await store.append([_record(n, keys)])
        finally:
            await store.close()

    asyncio.run(fill())
    return Built(keys, settings)


@pytest.fixture
def lgsp(store_path: Path) -> Lgsp:
    def run(*args: str, input: str | None = None) -> Result:
        return runner.invoke(
            app,
            ["audit", *args],
            env={"LGSP_STORE_PATH": str(store_path), "COLUMNS": "200"},
            input=input,
        )

    return run


def _json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _refused(result: Result, *reasons: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for reason in reasons:
        assert reason in result.output, result.output


def _reads(lgsp: Lgsp) -> list[dict[str, Any]]:
    """The audit records of the CLI's reads, oldest first."""
    records = _json(lgsp("query", "--kind", "audit", "--json", "--limit", "1000"))["records"]
    return list(reversed(records))


def _log_bytes(settings: Settings) -> bytes:
    audit = settings.audit_file()
    return b"".join(p.read_bytes() for p in sorted(audit.parent.glob(f"{audit.name}*")))


# --- dates ----------------------------------------------------------------------------------


def test_dates_are_hanoi_time_unless_they_say_otherwise() -> None:
    assert _moment("2026-11-01", "--since") == "2026-10-31T17:00:00+00:00"
    assert _moment("2026-11-01T08:30", "--since") == "2026-11-01T01:30:00+00:00"
    assert _moment("2026-11-01T08:30Z", "--since") == "2026-11-01T08:30:00+00:00"
    assert _moment("2026-11-01T08:30:00.25+09:00", "--x") == "2026-10-31T23:30:00.250000+00:00"


@pytest.mark.usefixtures("built")
@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["query", "--since", "yesterday"], "--since"),
        (["query", "--until", "2026-13-01"], "--until"),
        (["query", "--since", "2026-11-02", "--until", "2026-11-01"], "--until"),
        (["query", "--outcome", "maybe"], "--outcome"),
        (["query", "--kind", "soap"], "--kind"),
        (["query", "--limit", "0"], "--limit"),
        (["stats", "--since", "1/11/2026"], "--since"),
        (["export", "--from", "nope", "--out", "x.zip"], "--from"),
        (["purge", "--before", "soon", "--yes"], "--before"),
        (["query", "--since", "0001-01-01"], "--since"),
        (["purge", "--before", "2026-11-02", "--json"], "--yes"),
    ],
)
def test_bad_options_exit_2_naming_the_option(lgsp: Lgsp, args: list[str], named: str) -> None:
    _refused(lgsp(*args), named)


def test_no_log_exits_2(lgsp: Lgsp, store_path: Path) -> None:
    _refused(lgsp("verify"), "no exchange log")
    assert not Settings(store_path=store_path).audit_file().exists()


def test_help_lists_the_audit_commands() -> None:
    result = runner.invoke(app, ["audit", "--help"])
    assert result.exit_code == 0
    for command in ("query", "show", "verify", "stats", "export", "verify-bundle", "purge"):
        assert command in result.output


# --- query and show -------------------------------------------------------------------------


def test_query_pages_newest_first(lgsp: Lgsp, built: Built) -> None:
    page = _json(lgsp("query", "--kind", "call", "--limit", "4", "--json"))
    assert [r["seq"] for r in page["records"]] == [30, 29, 28, 27]
    assert page["next_cursor"] == 27
    more = _json(lgsp("query", "--kind", "call", "--limit", "4", "--cursor", "27", "--json"))
    assert [r["seq"] for r in more["records"]] == [26, 25, 24, 23]
    record = more["records"][1]
    assert (record["id"], record["outcome"], record["error_code"]) == (
        "rec-0025",
        "error",
        "upstream.timeout",
    )
    assert record["hash"]
    assert record["prev_hash"]


def test_query_filters(lgsp: Lgsp, built: Built) -> None:
    errors = _json(lgsp("query", "--outcome", "error", "--json"))["records"]
    assert [r["seq"] for r in errors] == [30, 25, 20, 15, 10, 5]
    land = _json(lgsp("query", "--service", "land", "--consumer", "so-tp", "--json"))["records"]
    assert [r["seq"] for r in land] == [27, 21, 15, 9, 3]
    # 2026-11-02 in Hanoi is 2026-11-01T17:00Z to 2026-11-02T17:00Z: the second day's calls
    day = _json(
        lgsp("query", "--kind", "call", "--since", "2026-11-02", "--until", "2026-11-03", "--json")
    )
    assert [r["seq"] for r in day["records"]] == list(range(20, 10, -1))
    none = _json(lgsp("query", "--error-code", "client.nope", "--json"))
    assert none == {"records": [], "next_cursor": None}


def test_query_table(lgsp: Lgsp, built: Built) -> None:
    result = lgsp("query", "--kind", "call", "--limit", "3")
    assert result.exit_code == 0, result.output
    assert "population.lookup" in result.output
    assert "more: --cursor 28" in result.stdout


def test_query_by_citizen_uses_the_blind_index_and_records_it(lgsp: Lgsp, built: Built) -> None:
    """The citizen id finds its records; it is printed nowhere and stored nowhere in clear;
    the read's own record carries its blind index, so it is found by the same question."""
    result = lgsp("query", "--citizen-id", CITIZEN, "--json")
    found = _json(result)["records"]
    assert [r["id"] for r in found] == ["rec-0003"]
    assert CITIZEN not in result.output
    assert found[0]["body"] == {"encrypted": True, "kid": built.keys.current_kid}
    assert _json(lgsp("query", "--citizen-id", OTHER_CITIZEN, "--json"))["records"] == []
    again = _json(lgsp("query", "--citizen-id", CITIZEN, "--json"))["records"]
    assert [r["kind"] for r in again] == ["audit", "call"]
    read = again[0]
    assert read["operation"] == "cli.query"
    assert read["subjects"] == [built.keys.blind(CITIZEN)]
    assert read["detail"]["by_citizen"] is True
    assert CITIZEN not in json.dumps(read)
    assert CITIZEN.encode() not in _log_bytes(built.settings)


def test_show(lgsp: Lgsp, built: Built) -> None:
    shown = _json(lgsp("show", "rec-0007", "--json"))
    assert shown["record"]["seq"] == 7
    assert shown["record"]["consumer"] == "so-tp"
    assert shown["bodies"] is None
    plain = lgsp("show", "rec-0007")
    assert plain.exit_code == 0, plain.output
    assert "so-tp" in plain.stdout
    _refused(lgsp("show", "rec-9999"), "no record")


def test_show_bodies_decrypts(lgsp: Lgsp, built: Built) -> None:
    shown = _json(lgsp("show", "rec-0003", "--bodies", "--json"))
    assert shown["bodies"] == {"request": f'{{"id":"{CITIZEN}"}}', "reply": '{"found":true}'}
    result = lgsp("show", "rec-0003", "--bodies")
    assert result.exit_code == 0, result.output
    assert "request body" in result.stdout
    assert '{"found":true}' in result.stdout
    none = _json(lgsp("show", "rec-0004", "--bodies", "--json"))
    assert "no bodies" in none["bodies"]["error"]
    reads = _reads(lgsp)
    assert [r["detail"]["bodies"] for r in reads if r["operation"] == "cli.show"] == [
        True,
        True,
        True,
    ]


# --- verify and stats -----------------------------------------------------------------------


def test_verify(lgsp: Lgsp, built: Built) -> None:
    report = _json(lgsp("verify", "--json"))
    assert report["ok"] is True
    assert (report["checked"], report["first_seq"], report["last_seq"]) == (30, 1, 30)
    assert report["public_key"] == built.keys.public_key
    plain = lgsp("verify")
    assert plain.exit_code == 0, plain.output
    assert "OK" in plain.stdout
    assert "30 record(s) verified" in plain.stdout


def test_verify_names_the_changed_record_and_exits_1(lgsp: Lgsp, built: Built) -> None:
    with closing(sqlite3.connect(built.settings.audit_file())) as db, db:
        db.execute("UPDATE audit_records SET data = replace(data, 'cb.042', 'cb.999') WHERE seq=12")
    result = lgsp("verify", "--json")
    assert result.exit_code == 1, result.output
    problem = json.loads(result.stdout)["problem"]
    assert (problem["kind"], problem["seq"], problem["id"]) == ("modified", 12, "rec-0012")
    plain = lgsp("verify")
    assert plain.exit_code == 1
    assert "record 12 (rec-0012) modified" in plain.output
    assert "Traceback" not in plain.output


def test_verify_in_several_processes_names_the_same_record(
    lgsp: Lgsp, built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--workers 2 (ranges split at a checkpoint, each checked in a process of its own, as a
    large log would be): the same report; a negative count is refused by name."""
    monkeypatch.setattr("bus.audit.sqlite_store.PARALLEL_MIN_RECORDS", 10)
    assert _json(lgsp("verify", "--workers", "2", "--json"))["checked"] == 30
    with closing(sqlite3.connect(built.settings.audit_file())) as db, db:
        db.execute("UPDATE audit_records SET data = replace(data, 'cb', 'cx') WHERE seq = 22")
    result = lgsp("verify", "--workers", "2", "--json")
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout) == json.loads(
        lgsp("verify", "--workers", "1", "--json").stdout
    )
    assert json.loads(result.stdout)["problem"]["seq"] == 22
    refused = lgsp("verify", "--workers", "-1")
    assert refused.exit_code == 2
    assert "--workers" in refused.output


def test_export_checks_the_log_in_several_processes_too(
    lgsp: Lgsp, built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """export --workers 2: the whole-log check before signing runs in ranges; a record changed
    in the second range stops the export, naming it, and leaves no bundle."""
    monkeypatch.setattr("bus.audit.sqlite_store.PARALLEL_MIN_RECORDS", 10)
    good = tmp_path / "good.zip"
    exported = _json(lgsp("export", "--out", str(good), "--workers", "2", "--json"))
    assert exported["manifest"]["count"] == 30
    assert _json(lgsp("verify-bundle", str(good), "--json"))["ok"] is True
    with closing(sqlite3.connect(built.settings.audit_file())) as db, db:
        db.execute("UPDATE audit_records SET data = replace(data, 'cb', 'cx') WHERE seq = 27")
    bad = tmp_path / "bad.zip"
    refused = lgsp("export", "--out", str(bad), "--workers", "2")
    assert refused.exit_code != 0
    assert "record 27" in refused.output
    assert not bad.exists()


def test_verify_index_finds_a_removed_citizen_entry(lgsp: Lgsp, built: Built) -> None:
    """Deleting a citizen index entry hides an exchange from that citizen's search without
    touching the chain: plain verify passes, verify --index names the record and exits 1."""
    assert _json(lgsp("verify", "--index", "--json"))["ok"] is True
    with closing(sqlite3.connect(built.settings.audit_file())) as db, db:
        (seq,) = db.execute("SELECT min(seq) FROM audit_subjects").fetchone()
        db.execute("DELETE FROM audit_subjects WHERE seq = ?", (seq,))
    assert lgsp("verify").exit_code == 0
    result = lgsp("verify", "--index", "--json")
    assert result.exit_code == 1, result.output
    problem = json.loads(result.stdout)["problem"]
    assert problem["seq"] == seq
    assert "citizen index" in problem["detail"]
    plain = lgsp("verify", "--index")
    assert plain.exit_code == 1
    assert f"record {seq} (rec-{seq:04d})" in plain.output
    assert "citizens missing" in plain.output


def test_stats(lgsp: Lgsp, built: Built) -> None:
    rows = _json(lgsp("stats", "--until", "2026-11-02", "--json"))
    by_service = {row["service"]: row for row in rows}
    assert set(by_service) == {"land", "population"}
    land = by_service["land"]
    assert (land["calls"], land["errors"]) == (3, 0)  # calls 3, 6, 9
    population = by_service["population"]
    assert (population["calls"], population["errors"]) == (7, 2)  # 5 and 10 failed
    assert population["error_rate"] == pytest.approx(2 / 7)
    assert population["p50_ms"] == 5.0
    table = lgsp("stats", "--service", "land")
    assert table.exit_code == 0, table.output
    assert "land" in table.stdout
    assert "0.0%" in table.stdout


# --- export, verify-bundle, purge -----------------------------------------------------------


def test_export_then_verify_bundle(lgsp: Lgsp, built: Built, tmp_path: Path) -> None:
    out = tmp_path / "nov-01.zip"
    exported = _json(lgsp("export", "--to", "2026-11-02", "--out", str(out), "--json"))
    manifest = exported["manifest"]
    assert (manifest["first_seq"], manifest["last_seq"], manifest["count"]) == (1, 10, 10)
    assert manifest["body_keys"] == [built.keys.current_kid]
    checked = _json(lgsp("verify-bundle", str(out), "--json"))
    assert checked["ok"] is True
    assert checked["pinned"] is False
    assert checked["fingerprint"] == built.keys.signer_id
    pinned = lgsp("verify-bundle", str(out), "--public-key", built.keys.public_key)
    assert pinned.exit_code == 0, pinned.output
    assert "OK" in pinned.stdout
    loose = lgsp("verify-bundle", str(out))
    assert "not pinned" in loose.output
    other = lgsp("verify-bundle", str(out), "--public-key", AuditKeys.generate().public_key)
    assert other.exit_code == 1
    assert "not by the pinned key" in other.output
    _refused(lgsp("export", "--to", "2026-11-02", "--out", str(out)), "never overwritten")
    _refused(lgsp("export", "--from", "2027-01-01", "--out", str(tmp_path / "x.zip")), "no record")
    plain = lgsp(
        "export", "--from", "2026-11-02", "--to", "2026-11-03", "--out", str(tmp_path / "b")
    )
    assert plain.exit_code == 0, plain.output
    assert "exported records 11 to 20 (10)" in plain.stdout
    exports = [r for r in _reads(lgsp) if r["operation"] == "cli.export"]
    assert [(r["detail"]["first_seq"], r["detail"]["last_seq"]) for r in exports] == [
        (1, 10),
        (11, 20),
    ]


def test_verify_bundle_fails_a_tampered_bundle(lgsp: Lgsp, built: Built, tmp_path: Path) -> None:
    out = tmp_path / "all.zip"
    _json(lgsp("export", "--to", "2026-11-04", "--out", str(out), "--json"))
    with zipfile.ZipFile(out) as bundle:
        files = {name: bundle.read(name) for name in bundle.namelist()}
    lines = files["records.jsonl"].splitlines(keepends=True)
    del lines[4]
    files["records.jsonl"] = b"".join(lines)
    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(forged, "w") as bundle:
        for name, data in files.items():
            bundle.writestr(name, data)
    result = lgsp("verify-bundle", str(forged), "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert (report["problem"]["kind"], report["problem"]["seq"]) == ("deleted", 5)
    plain = lgsp("verify-bundle", str(forged))
    assert plain.exit_code == 1
    assert "record 5 deleted" in plain.output
    assert "Traceback" not in plain.output
    _refused(lgsp("verify-bundle", str(tmp_path / "absent.zip")), "cannot read")
    _refused(lgsp("verify-bundle", str(out), "--public-key", "not-a-key"), "32 bytes")


def test_purge_refuses_what_was_not_exported(lgsp: Lgsp, built: Built, tmp_path: Path) -> None:
    _refused(lgsp("purge", "--before", "2026-11-02", "--yes"), "in no export")
    assert _json(lgsp("verify", "--json"))["checked"] >= 30


def test_export_then_purge(lgsp: Lgsp, built: Built, tmp_path: Path) -> None:
    out = tmp_path / "nov-01.zip"
    manifest = _json(lgsp("export", "--to", "2026-11-02", "--out", str(out), "--json"))["manifest"]
    declined = lgsp("purge", "--before", "2026-11-02", input="n\n")
    assert declined.exit_code == 1
    assert (
        _json(lgsp("query", "--kind", "call", "--json", "--limit", "100"))["records"][-1]["seq"]
        == 1
    )
    purged = _json(lgsp("purge", "--before", "2026-11-02", "--yes", "--json"))
    assert purged["purged"] == 10
    assert purged["anchor"]["seq"] == 10
    assert purged["anchor"]["hash"] == manifest["last_hash"]
    report = _json(lgsp("verify", "--json"))
    assert report["ok"] is True
    assert report["first_seq"] == 11
    again = lgsp("purge", "--before", "2026-11-02", input="y\n")
    assert again.exit_code == 0, again.output
    assert "nothing to purge" in again.stdout
    purges = [r for r in _reads(lgsp) if r["operation"] == "cli.purge"]
    assert [r["detail"]["purged"] for r in purges] == [10]


def test_every_read_is_recorded(lgsp: Lgsp, built: Built, tmp_path: Path) -> None:
    for args in (
        ["query", "--json"],
        ["show", "rec-0001", "--json"],
        ["show", "rec-9999", "--json"],
        ["stats", "--json"],
        ["export", "--to", "2026-11-02", "--out", str(tmp_path / "b.zip"), "--json"],
        ["verify", "--json"],  # not a read of records' contents: not recorded
    ):
        lgsp(*args)
    reads = _reads(lgsp)
    assert [(r["operation"], r["outcome"]) for r in reads] == [
        ("cli.query", "ok"),
        ("cli.show", "ok"),
        ("cli.show", "error"),
        ("cli.stats", "ok"),
        ("cli.export", "ok"),
    ]
    for read in reads:
        assert read["kind"] == "audit"
        assert read["service"] == "audit"
        assert read["consumer"].startswith("cli:")
    assert reads[0]["detail"]["results"] == 30
    assert reads[2]["error_code"] == "client.not_found"
    assert _json(lgsp("verify", "--json"))["ok"] is True
