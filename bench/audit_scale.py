"""How the SQLite exchange log scales: append, verify, export and a subject lookup at N records.

Builds a fresh log of ``--records`` realistic records (default 1,000,000) under ``bench/out/``
(git-ignored), appended in batches as the gateway's group commit would, then times:

- ``baseline``: reading ``SELECT seq, data FROM audit_records ORDER BY seq`` and SHA-256-ing
  each record's data: the floor any verification pays (read every byte, hash it once);
- ``verify``: :meth:`SqliteAuditStore.verify` (one snapshot, every hash, link, column and
  signature checked);
- ``export``: :meth:`SqliteAuditStore.export` of every record to a JSONL file, one line per
  record ``{"seq", "id", "prev_hash", "hash", "data"}``;
- ``append``: building the log itself (finalise, chain, insert, sign, ``synchronous=FULL``);
- a lookup of every record about one citizen (by blind index), in milliseconds.

Run from the repository root::

    .venv/bin/python bench/audit_scale.py [--records 1000000] [--batch 5000]

Absolute figures depend on the host; the ratio column compares each operation with the
baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bus.audit.chain import StoredRecord
from bus.audit.keys import AuditKeys
from bus.audit.record import NewRecord
from bus.audit.sqlite_store import SqliteAuditStore
from bus.audit.store import AuditQuery

OUT = Path(__file__).resolve().parent / "out" / "audit_scale"
START = datetime(2026, 1, 5, 7, 0, tzinfo=UTC)

SERVICES = {
    "population": ("lookup", "verify_identity", "household"),
    "dvcqg": ("submit", "status", "sync_dossier"),
    "land": ("parcel", "owners"),
    "tax": ("debt", "receipt"),
}
CONSUMERS = tuple(f"app-{name}" for name in ("onegate", "portal", "hue-s", "dossier", "land"))
AGENCIES = tuple(f"G12.{n:02d}" for n in range(1, 21))
ERRORS = ("upstream.timeout", "upstream.unavailable", "client.invalid", "upstream.fault")


class Generator:
    """Realistic records: a day's traffic of a province, with citizens named by blind index
    and one record in ten captured in full (an AES-GCM body)."""

    def __init__(self, keys: AuditKeys, seed: int = 7) -> None:
        self.keys = keys
        self.rng = random.Random(seed)  # noqa: S311 - test data, not secrets
        self.citizens = [f"{self.rng.randrange(10**11, 10**12):012d}" for _ in range(50_000)]
        self.blinded = [keys.blind(c) for c in self.citizens]
        self.officers = [f"officer-{n:04d}" for n in range(2_000)]
        self.count = 0
        # A body is encrypted once per shape and reused: the log stores it as given, and the
        # benchmark is about the log, not about AES-GCM.
        self.bodies = [
            keys.encrypt(os.urandom(self.rng.randrange(300, 1500)), b"bench") for _ in range(64)
        ]

    def record(self) -> NewRecord:
        rng = self.rng
        self.count += 1
        n = self.count
        service = rng.choice(tuple(SERVICES))
        operation = rng.choice(SERVICES[service])
        received = START + timedelta(milliseconds=n * 40)
        duration = round(rng.lognormvariate(4.2, 0.6), 3)
        error = rng.random() < 0.03
        upstream_ms = round(duration * 0.8, 3)
        replied = received + timedelta(milliseconds=duration)
        subjects = tuple(sorted({rng.choice(self.blinded) for _ in range(rng.choice((1, 1, 2)))}))
        full = n % 10 == 0
        return NewRecord(
            id=f"ex_{n:012d}{rng.getrandbits(48):012x}",
            kind="call",
            request_id=f"req-{rng.getrandbits(64):016x}",
            received_at=received.isoformat(timespec="microseconds"),
            replied_at=replied.isoformat(timespec="microseconds"),
            consumer=rng.choice(CONSUMERS),
            agency=rng.choice(AGENCIES),
            end_user=rng.choice(self.officers),
            service=service,
            operation=operation,
            outcome="error" if error else "ok",
            error_code=rng.choice(ERRORS) if error else None,
            http_status=502 if error else 200,
            attempts=1 if rng.random() < 0.95 else 2,
            duration_ms=duration,
            request_bytes=rng.randrange(120, 2_000),
            reply_bytes=rng.randrange(200, 8_000),
            request_digest=self.keys.digest(b"req%d" % n),
            reply_digest=self.keys.digest(b"rep%d" % n),
            capture="full" if full else "metadata",
            upstream=f"https://{service}.ngsp.example.vn/ws",
            upstream_started_at=received.isoformat(timespec="microseconds"),
            upstream_ended_at=replied.isoformat(timespec="microseconds"),
            upstream_ms=upstream_ms,
            upstream_exchanges=(
                {
                    "request_digest": self.keys.digest(b"ureq%d" % n),
                    "reply_digest": self.keys.digest(b"urep%d" % n),
                    "request_bytes": rng.randrange(400, 3_000),
                    "reply_bytes": rng.randrange(400, 9_000),
                    "status": 500 if error else 200,
                },
            ),
            subjects=subjects,
            body=self.bodies[n % len(self.bodies)] if full else None,
        )


def _rate(records: int, seconds: float) -> str:
    return f"{records / seconds:,.0f}" if seconds > 0 else "-"


async def build(store: SqliteAuditStore, gen: Generator, records: int, batch: int) -> float:
    """Append ``records`` in batches; the seconds spent in :meth:`append` only."""
    spent = 0.0
    left = records
    last_report = time.perf_counter()
    while left:
        size = min(batch, left)
        chunk = [gen.record() for _ in range(size)]
        t0 = time.perf_counter()
        await store.append(chunk)
        spent += time.perf_counter() - t0
        left -= size
        if time.perf_counter() - last_report > 10:
            last_report = time.perf_counter()
            print(f"  appended {records - left:,} of {records:,}", file=sys.stderr)
    return spent


def fresh_log() -> Path:
    """The path of the benchmark's log, with any earlier run's file removed."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "audit.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def baseline(path: Path) -> float:
    """Read every record's data in seq order and SHA-256 it: the floor of any verify."""
    db = sqlite3.connect(path)
    t0 = time.perf_counter()
    cursor = db.execute("SELECT seq, data FROM audit_records ORDER BY seq")
    sha256 = hashlib.sha256
    n = 0
    while rows := cursor.fetchmany(2000):
        for _seq, data in rows:
            sha256(data).digest()
        n += len(rows)
    seconds = time.perf_counter() - t0
    db.close()
    return seconds


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5_000, help="records per append")
    parser.add_argument("--checkpoint-every", type=int, default=1_000)
    args = parser.parse_args()

    path = fresh_log()
    keys = AuditKeys.generate()
    gen = Generator(keys)
    store = SqliteAuditStore(path, keys, checkpoint_every=args.checkpoint_every)
    console = Console(width=120)
    console.print(
        f"[bold]audit log at scale[/]: {args.records:,} records, batches of {args.batch:,}, "
        f"checkpoint every {args.checkpoint_every:,}; Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs"
    )

    append_s = await build(store, gen, args.records, args.batch)
    await store._run(lambda db: db.execute("PRAGMA wal_checkpoint(TRUNCATE)"))
    size_mb = path.stat().st_size / 1e6

    base_s = baseline(path)

    t0 = time.perf_counter()
    report = await store.verify(trusted=frozenset({keys.public_key}))
    verify_s = time.perf_counter() - t0
    if not report.ok or report.checked != args.records:
        raise SystemExit(f"verify failed: {report.as_json()}")

    export_path = OUT / "export.jsonl"
    with export_path.open("w", encoding="utf-8") as out:

        def write(record: StoredRecord) -> None:
            line = {
                "seq": record.seq,
                "id": record.id,
                "prev_hash": record.prev_hash,
                "hash": record.hash,
                "data": record.data.decode(),
            }
            out.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")))
            out.write("\n")

        t0 = time.perf_counter()
        points = await store.export(1, args.records, write)
        export_s = time.perf_counter() - t0
    export_mb = export_path.stat().st_size / 1e6

    # One citizen's records (about records / 37,500 of them): a data-subject request. And,
    # for comparison, the newest page of one of five consumers (a fifth of the log).
    lookups = {
        "records about one citizen (blind index)": (AuditQuery(subject=gen.blinded[0]), 10_000),
        "newest 50 records of one consumer": (AuditQuery(consumer=CONSUMERS[1]), 50),
    }
    timings: dict[str, tuple[int, list[float]]] = {}
    for name, (query, limit) in lookups.items():
        times = []
        found = []
        for _ in range(5):
            t0 = time.perf_counter()
            found = await store.query(query, limit=limit)
            times.append((time.perf_counter() - t0) * 1000)
        timings[name] = (len(found), times)
    await store.close()

    table = Table(title="exchange log operations")
    table.add_column("operation")
    table.add_column("records", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("records/s", justify="right")
    table.add_column("x baseline", justify="right")
    n = args.records
    for name, seconds in (
        ("baseline: SELECT data + sha256", base_s),
        ("verify", verify_s),
        ("export to JSONL", export_s),
        ("append (batches)", append_s),
    ):
        table.add_row(
            name, f"{n:,}", f"{seconds:.2f}", _rate(n, seconds), f"{seconds / base_s:.1f}"
        )
    console.print(table)
    console.print(
        f"log file {size_mb:,.0f} MB; export {export_mb:,.0f} MB with {len(points)} signed "
        f"points; verify checked {report.checked:,} records up to the signed head {report.last_seq}"
    )
    for name, (count, times) in timings.items():
        console.print(
            f"{name}: {count} found, median {statistics.median(times):.2f} ms "
            f"(min {min(times):.2f}, max {max(times):.2f}) over 5 lookups"
        )


if __name__ == "__main__":
    asyncio.run(main())
