"""Export bundles: written from the store, checked offline, every tampering caught and named;
purges only remove what was exported, and the log still verifies from the anchor."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import zipfile
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bus.audit.bundle import BundleError, BundleReport, export_bundle, verify_bundle
from bus.audit.keys import AuditKeys
from bus.audit.record import GENESIS, NewRecord, canonical, chain_hash
from bus.audit.sqlite_store import SqliteAuditStore
from bus.audit.store import AuditStoreError

pytestmark = pytest.mark.anyio

DAY = datetime(2026, 11, 1, 1, 0, tzinfo=UTC)


def new_record(n: int, keys: AuditKeys | None = None) -> NewRecord:
    """Exchange ``n``: every fifth one an error; with ``keys``, its bodies encrypted."""
    received = DAY + timedelta(minutes=n)
    rid = f"rec-{n:04d}"
    body = keys.encrypt(canonical({"request": "{}", "reply": "{}"}), rid.encode()) if keys else None
    return NewRecord(
        id=rid,
        kind="call",
        request_id=f"req-{n}",
        received_at=received.isoformat(),
        replied_at=(received + timedelta(milliseconds=40)).isoformat(),
        consumer="so-tp",
        agency="000.00.01.H29",
        end_user="cb.042",
        service="population",
        operation="lookup",
        outcome="error" if n % 5 == 0 else "ok",
        error_code="upstream.timeout" if n % 5 == 0 else None,
        http_status=504 if n % 5 == 0 else 200,
        attempts=1,
        duration_ms=10.0 + n,
        request_bytes=120,
        reply_bytes=480,
        request_digest=None,
        reply_digest=None,
        capture="full" if keys else "metadata",
        body=body,
    )


@dataclass
class Clock:
    """The store's recorded_at, set by the test."""

    value: str = DAY.isoformat(timespec="microseconds")

    def __call__(self) -> str:
        return self.value


@dataclass
class Log:
    store: SqliteAuditStore
    keys: AuditKeys
    clock: Clock
    path: Path

    async def fill(self, days: int = 3, per_day: int = 10, *, bodies: bool = False) -> None:
        """``per_day`` records (one append each) recorded on each of ``days`` days from
        2026-11-01, UTC."""
        n = 0
        for day in range(days):
            for i in range(per_day):
                n += 1
                moment = DAY + timedelta(days=day, minutes=i)
                self.clock.value = moment.isoformat(timespec="microseconds")
                await self.store.append([new_record(n, self.keys if bodies else None)])


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[Log]:
    """An exchange log whose records are appended straight into the store (checkpoints
    every 5 records)."""
    keys = AuditKeys.generate()
    clock = Clock()
    store = SqliteAuditStore(tmp_path / "audit.db", keys, checkpoint_every=5, now=clock)
    try:
        yield Log(store, keys, clock, tmp_path)
    finally:
        await store.close()


def day(n: int) -> str:
    """The first moment of 2026-11-``n``, UTC, as the store's time text."""
    return datetime(2026, 11, n, tzinfo=UTC).isoformat(timespec="microseconds")


async def exported(log: Log, name: str = "bundle.zip", **period: str | None) -> Path:
    path = log.path / name
    await export_bundle(log.store, log.keys, period.get("since"), period.get("until"), path)
    return path


# --- tampering helpers ----------------------------------------------------------------------


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as bundle:
        return {name: bundle.read(name) for name in bundle.namelist()}


def rewrite(path: Path, files: dict[str, bytes]) -> Path:
    """The bundle rebuilt with ``files``: a well-formed zip, as a careful forger writes it."""
    forged = path.with_name(f"forged-{path.name}")
    with zipfile.ZipFile(forged, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for name, data in files.items():
            bundle.writestr(name, data)
    return forged


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in members(path)["records.jsonl"].splitlines()]


def with_lines(path: Path, lines: list[dict[str, Any]]) -> Path:
    files = members(path)
    files["records.jsonl"] = b"".join(canonical(line) + b"\n" for line in lines)
    return rewrite(path, files)


def edit_data(line: dict[str, Any], **changes: Any) -> dict[str, Any]:
    data = json.loads(line["data"])
    data.update(changes)
    return line | {"data": canonical(data).decode()}


def failure(report: BundleReport) -> tuple[str, int, str | None]:
    assert not report.ok
    assert report.problem is not None, report.errors
    return report.problem.kind, report.problem.seq, report.problem.id


# --- export and verify ----------------------------------------------------------------------


async def test_export_then_verify_offline(log: Log) -> None:
    """A bundle of one day verifies with nothing but the file; its manifest says what it
    holds and who signed it; the store keeps the export."""
    await log.fill()
    path = await exported(log, since=day(2), until=day(3))
    report = verify_bundle(path, public_key=log.keys.public_key)
    assert report.ok, (report.problem, report.errors)
    assert report.checked == 10
    assert report.pinned
    assert report.fingerprint == log.keys.signer_id
    manifest = report.manifest
    assert manifest is not None
    assert (manifest["first_seq"], manifest["last_seq"], manifest["count"]) == (11, 20, 10)
    assert manifest["period"] == {"from": day(2), "to": day(3)}
    assert manifest["signer"]["public_key"] == log.keys.public_key
    assert manifest["body_keys"] == []
    lines = lines_of(path)
    assert [line["seq"] for line in lines] == list(range(11, 21))
    assert manifest["prev_hash"] == lines[0]["prev_hash"] != GENESIS
    assert manifest["last_hash"] == lines[-1]["hash"]
    # the data is the stored bytes exactly: its hash follows from the line before
    assert chain_hash(lines[0]["prev_hash"], lines[0]["data"].encode()) == lines[0]["hash"]
    files = members(path)
    assert set(files) == {"records.jsonl", "checkpoints.json", "manifest.json", "manifest.sig"}
    sha = hashlib.sha256(files["records.jsonl"]).hexdigest()
    assert manifest["files"]["records.jsonl"]["sha256"] == sha
    assert [p["seq"] for p in json.loads(files["checkpoints.json"])] == [15, 20]
    (entry,) = await log.store.exports()
    assert (entry.first_seq, entry.last_seq) == (11, 20)
    assert entry.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert entry.path == str(path.resolve())


async def test_consecutive_bundles_join_up(log: Log) -> None:
    """The first bundle chains from the all-zero hash; each next one from the last hash of
    the one before."""
    await log.fill()
    first = await exported(log, "a.zip", until=day(2))
    second = await exported(log, "b.zip", since=day(2))
    a, b = verify_bundle(first), verify_bundle(second)
    assert a.ok
    assert b.ok
    assert not a.pinned
    assert a.manifest is not None
    assert b.manifest is not None
    assert a.manifest["prev_hash"] == GENESIS
    assert b.manifest["prev_hash"] == a.manifest["last_hash"]
    assert (b.manifest["first_seq"], b.manifest["last_seq"]) == (11, 30)


async def test_body_keys_are_named(log: Log) -> None:
    await log.fill(days=1, per_day=3, bodies=True)
    path = await exported(log)
    report = verify_bundle(path)
    assert report.ok
    assert report.manifest is not None
    assert report.manifest["body_keys"] == [log.keys.current_kid]


async def test_export_refuses_an_empty_period_and_an_existing_file(log: Log) -> None:
    await log.fill(days=1)
    with pytest.raises(BundleError, match="no record"):
        await exported(log, since=day(5))
    path = log.path / "taken.zip"
    path.write_bytes(b"keep me")
    with pytest.raises(BundleError, match="never overwritten"):
        await exported(log, "taken.zip")
    assert path.read_bytes() == b"keep me"
    assert await log.store.exports() == []
    assert not list(log.path.glob("*.partial"))


async def test_export_refuses_a_log_that_does_not_verify(log: Log) -> None:
    """The bus does not sign a manifest over a tampered chain."""
    await log.fill(days=1)
    with closing(sqlite3.connect(log.path / "audit.db")) as db, db:
        db.execute("UPDATE audit_records SET data = replace(data, 'so-tp', 'so-xx') WHERE seq = 3")
    with pytest.raises(BundleError, match="record 3 is modified"):
        await exported(log)
    assert not (log.path / "bundle.zip").exists()


# --- tampering ------------------------------------------------------------------------------


async def test_a_changed_line_is_named(log: Log) -> None:
    await log.fill()
    path = await exported(log)
    lines = lines_of(path)
    lines[6] = edit_data(lines[6], consumer="someone-else")
    report = verify_bundle(with_lines(path, lines))
    assert failure(report) == ("modified", 7, "rec-0007")
    assert any("records.jsonl is not the file" in e for e in report.errors)


async def test_a_changed_line_with_the_chain_rewritten_is_caught(log: Log) -> None:
    """A forger who recomputes every hash after the change is stopped by the next signed
    checkpoint; the report names the first record after the last good checkpoint."""
    await log.fill()
    path = await exported(log)
    lines = lines_of(path)
    lines[6] = edit_data(lines[6], outcome="error", error_code="upstream.timeout")
    prev = lines[5]["hash"]
    for line in lines[6:]:
        line["prev_hash"] = prev
        line["hash"] = prev = chain_hash(prev, line["data"].encode())
    assert failure(verify_bundle(with_lines(path, lines))) == ("modified", 6, "rec-0006")


async def test_a_removed_line_is_named(log: Log) -> None:
    await log.fill()
    path = await exported(log)
    lines = lines_of(path)
    del lines[11]
    assert failure(verify_bundle(with_lines(path, lines))) == ("deleted", 12, None)


async def test_a_removed_last_line_is_named(log: Log) -> None:
    await log.fill(days=1, per_day=7)
    path = await exported(log)
    lines = lines_of(path)[:-1]
    assert failure(verify_bundle(with_lines(path, lines))) == ("truncated", 7, None)


async def test_swapped_lines_are_named(log: Log) -> None:
    await log.fill()
    path = await exported(log)
    lines = lines_of(path)
    lines[3], lines[4] = lines[4], lines[3]
    assert failure(verify_bundle(with_lines(path, lines))) == ("reordered", 4, "rec-0004")


async def test_a_repeated_line_is_named(log: Log) -> None:
    await log.fill()
    path = await exported(log)
    lines = lines_of(path)
    lines.insert(9, lines[8])
    assert failure(verify_bundle(with_lines(path, lines))) == ("inserted", 10, "rec-0009")


async def test_an_added_line_after_the_end_is_named(log: Log) -> None:
    """Records beyond the manifest's last one, even genuine ones of the log, are added."""
    await log.fill()
    whole = await exported(log, "whole.zip")
    path = await exported(log, "first.zip", until=day(2))
    lines = [*lines_of(path), lines_of(whole)[10]]
    assert failure(verify_bundle(with_lines(path, lines))) == ("inserted", 11, "rec-0011")


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda m: m | {"period": {"from": None, "to": None}}, id="period"),
        pytest.param(lambda m: m | {"created_at": "2030-01-01T00:00:00+00:00"}, id="created"),
        pytest.param(lambda m: m | {"last_seq": m["last_seq"] - 1, "count": 29}, id="range"),
    ],
)
async def test_an_edited_manifest_is_caught(
    log: Log, edit: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    await log.fill()
    path = await exported(log)
    files = members(path)
    manifest = edit(json.loads(files["manifest.json"]))
    files["manifest.json"] = json.dumps(manifest, indent=2, sort_keys=True).encode()
    report = verify_bundle(rewrite(path, files), public_key=log.keys.public_key)
    assert not report.ok
    assert any("manifest.sig is not a signature" in e for e in report.errors)


async def test_a_manifest_signed_by_another_key_is_refused_when_pinned(log: Log) -> None:
    """A forger can sign a manifest of their own: pinning the bus's key refuses it, and
    without a pin the report gives the forger's fingerprint, not the bus's."""
    await log.fill(days=1, per_day=4)  # no checkpoint in range: only the manifest pins it
    path = await exported(log)
    forger = AuditKeys.generate()
    files = members(path)
    manifest = json.loads(files["manifest.json"])
    manifest["signer"] = {"public_key": forger.public_key, "fingerprint": forger.signer_id}
    files["manifest.json"] = json.dumps(manifest, indent=2, sort_keys=True).encode()
    files["manifest.sig"] = forger.sign(files["manifest.json"]).encode()
    forged = rewrite(path, files)
    pinned = verify_bundle(forged, public_key=log.keys.public_key)
    assert not pinned.ok
    assert any("not by the pinned key" in e for e in pinned.errors)
    loose = verify_bundle(forged)
    assert not loose.pinned
    assert loose.fingerprint == forger.signer_id != log.keys.signer_id
    # the genuine bundle pinned to another key is refused too
    other = verify_bundle(path, public_key=forger.public_key)
    assert any("not by the pinned key" in e for e in other.errors)


async def test_checkpoints_signed_by_another_key_are_caught(log: Log) -> None:
    await log.fill()
    path = await exported(log)
    forger = AuditKeys.generate()
    files = members(path)
    manifest = json.loads(files["manifest.json"])
    manifest["signer"] = {"public_key": forger.public_key, "fingerprint": forger.signer_id}
    files["manifest.json"] = json.dumps(manifest, indent=2, sort_keys=True).encode()
    files["manifest.sig"] = forger.sign(files["manifest.json"]).encode()
    assert failure(verify_bundle(rewrite(path, files)))[0] == "signature"


async def test_an_edited_checkpoint_file_is_caught(log: Log) -> None:
    await log.fill()
    path = await exported(log)
    files = members(path)
    points = json.loads(files["checkpoints.json"])
    points[0]["hash"] = "f" * 64
    files["checkpoints.json"] = json.dumps(points).encode()
    report = verify_bundle(rewrite(path, files))
    assert failure(report) == ("signature", 5, "rec-0005")
    assert any("checkpoints.json is not the file" in e for e in report.errors)


async def test_an_added_file_and_a_damaged_zip_are_caught(log: Log) -> None:
    await log.fill(days=1)
    path = await exported(log)
    files = members(path) | {"notes.txt": b"nothing to see"}
    report = verify_bundle(rewrite(path, files))
    assert any("notes.txt" in e for e in report.errors)
    assert report.problem is None
    assert not report.ok
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 3] ^= 0xFF
    damaged = path.with_name("damaged.zip")
    damaged.write_bytes(bytes(raw))
    assert not verify_bundle(damaged).ok
    nothing = path.with_name("nothing.zip")
    nothing.write_bytes(b"not a zip")
    assert verify_bundle(nothing).errors == ("it is not a zip archive",)


async def test_a_bad_pinned_key_or_missing_file_raises(log: Log) -> None:
    await log.fill(days=1)
    path = await exported(log)
    with pytest.raises(BundleError, match="32 bytes"):
        verify_bundle(path, public_key=base64.b64encode(b"short").decode())
    with pytest.raises(BundleError, match="cannot read"):
        verify_bundle(log.path / "absent.zip")


# --- purge ----------------------------------------------------------------------------------


async def test_purge_before_export_is_refused(log: Log) -> None:
    await log.fill()
    await exported(log, until=day(2))  # records 1-10 only
    with pytest.raises(AuditStoreError, match="in no export"):
        await log.store.purge(day(3))
    assert (await log.store.verify(trusted=frozenset({log.keys.public_key}))).checked == 30


async def test_export_then_purge_then_the_log_verifies_from_the_anchor(log: Log) -> None:
    await log.fill()
    path = await exported(log, until=day(3))
    result = await log.store.purge(day(3))
    assert result.purged == 20
    assert result.anchor is not None
    assert result.anchor.seq == 20
    manifest = verify_bundle(path).manifest
    assert manifest is not None
    assert result.anchor.hash == manifest["last_hash"]
    report = await log.store.verify(trusted=frozenset({log.keys.public_key}))
    assert report.ok, report.problem
    assert (report.checked, report.first_seq, report.last_seq) == (10, 21, 30)
    # the rest is exported after the purge and chains from the anchor
    rest = verify_bundle(await exported(log, "rest.zip", since=day(3)))
    assert rest.ok
    assert rest.manifest is not None
    assert rest.manifest["prev_hash"] == result.anchor.hash
