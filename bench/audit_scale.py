"""How the SQLite exchange log scales: append, verify, export and citizen lookups at N records.

Builds a log of ``--records`` realistic records (default 1,000,000) under ``bench/out/``
(git-ignored), then times:

- ``baseline``: reading ``SELECT seq, data FROM audit_records ORDER BY seq`` and SHA-256-ing
  each record's data: the floor any verification pays (read every byte, hash it once);
- ``verify``: :meth:`SqliteAuditStore.verify` (one snapshot, every hash, link, column and
  signature checked), then again with ``citizen_index=True`` (every citizen index entry too),
  then in ``--verify-workers`` processes (ranges split at signed checkpoints; same report);
- ``export``: :meth:`SqliteAuditStore.export` of the first ``--export`` records (default all)
  to a JSONL file, one line per record ``{"seq", "id", "prev_hash", "hash", "data"}``;
- ``append``: building the log itself (finalise, chain, insert, sign, ``synchronous=FULL``);
- the lookup of every record about one citizen (by blind index) for ``--lookups`` different
  citizens, each looked up once: median and p99 in milliseconds.

How the log is built: every record goes through the store's own
:meth:`~SqliteAuditStore.append`, in batches of ``--batch`` as the gateway's group commit
would write them, so each is finalised, chained, indexed and signed exactly as in production
(and ``verify`` checks all of it before anything else is timed). Only the *making up* of the
records is moved off the appending process: ``--workers`` processes generate the batches
(each batch from a random generator seeded by its first seq, so the log is the same whatever
the number of workers), which is what lets 10,000,000 records be built in minutes, not hours.
``--reuse`` keeps an earlier run's log (and its key file) and only appends the records it
lacks (the same records a full build would have made).

Run from the repository root::

    .venv/bin/python bench/audit_scale.py [--records 1000000] [--batch 5000] [--workers 1]

Absolute figures depend on the host; the ratio column compares each operation with the
baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing
import os
import platform
import random
import sqlite3
import statistics
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
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
    and one record in ten captured in full (an AES-GCM body).

    :meth:`batch` makes records ``first``.. from a random generator seeded by ``first``: the
    same records whichever process makes them (but the encrypted bodies, random anyway)."""

    def __init__(self, keys: AuditKeys, citizens: int = 50_000, seed: int = 7) -> None:
        self.keys = keys
        self.rng = random.Random(seed)  # noqa: S311 - test data, not secrets
        self.citizens = [f"{self.rng.randrange(10**11, 10**12):012d}" for _ in range(citizens)]
        self.blinded = [keys.blind(c) for c in self.citizens]
        self.officers = [f"officer-{n:04d}" for n in range(2_000)]
        self.count = 0
        # A body is encrypted once per shape and reused: the log stores it as given, and the
        # benchmark is about the log, not about AES-GCM.
        self.bodies = [
            keys.encrypt(os.urandom(self.rng.randrange(300, 1500)), b"bench") for _ in range(64)
        ]

    def batch(self, first: int, size: int) -> list[NewRecord]:
        self.rng = random.Random(first)  # noqa: S311 - test data, not secrets
        self.count = first - 1
        return [self.record() for _ in range(size)]

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


def load_keys(key_file: Path) -> AuditKeys:
    """The benchmark's keys, from its key file (created by the first call)."""
    if not key_file.exists():
        AuditKeys.load({}, key_file)  # creates it (and says so)
    stored = json.loads(key_file.read_text())
    environ = {
        "LGSP_AUDIT_KEYS": stored["keys"],
        "LGSP_AUDIT_INDEX_KEY": stored["index"],
        "LGSP_DIGEST_KEY": stored["digest"],
        "LGSP_AUDIT_SIGNING_KEY": stored["signing"],
    }
    return AuditKeys.load(environ, key_file)


# -- making the records in worker processes ----------------------------------------------------

_WORKER: Generator | None = None


def _start_worker(key_file: str, citizens: int) -> None:
    global _WORKER  # one generator per worker process
    _WORKER = Generator(load_keys(Path(key_file)), citizens)


def _make_batch(first: int, size: int) -> list[NewRecord]:
    assert _WORKER is not None
    return _WORKER.batch(first, size)


def _batches(start: int, records: int, batch: int) -> Iterator[tuple[int, int]]:
    for first in range(start, records + 1, batch):
        yield first, min(batch, records - first + 1)


def _rate(records: int, seconds: float) -> str:
    return f"{records / seconds:,.0f}" if seconds > 0 else "-"


async def build(
    store: SqliteAuditStore,
    gen: Generator,
    key_file: Path,
    records: int,
    batch: int,
    workers: int,
    start: int = 1,
) -> float:
    """Append records ``start``..``records`` in batches through
    :meth:`SqliteAuditStore.append`, the batches made by ``workers`` processes (0: by this
    one); the seconds spent in ``append`` only."""
    spent = 0.0
    done = start - 1
    last_report = time.perf_counter()

    async def append(chunk: list[NewRecord]) -> None:
        nonlocal spent, done, last_report
        t0 = time.perf_counter()
        await store.append(chunk)
        spent += time.perf_counter() - t0
        done += len(chunk)
        if time.perf_counter() - last_report > 10:
            last_report = time.perf_counter()
            print(f"  appended {done:,} of {records:,}", file=sys.stderr)

    if workers < 1:
        for first, size in _batches(start, records, batch):
            await append(gen.batch(first, size))
        return spent
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers,
        mp_context=context,
        initializer=_start_worker,
        initargs=(str(key_file), len(gen.citizens)),
    ) as pool:
        # A few batches ahead of the appends, never the whole log in memory.
        pending: deque[Future[list[NewRecord]]] = deque()
        todo = _batches(start, records, batch)
        for first, size in todo:
            pending.append(pool.submit(_make_batch, first, size))
            if len(pending) >= 2 * workers + 2:
                break
        while pending:
            chunk = await asyncio.wrap_future(pending.popleft())
            step = next(todo, None)
            if step is not None:
                pending.append(pool.submit(_make_batch, *step))
            await append(chunk)
    return spent


def remove_log(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


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


def _nearest_rank(ordered: list[float], percent: float) -> float:
    rank = max(1, -(-len(ordered) * percent // 100))
    return ordered[int(rank) - 1]


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5_000, help="records per append")
    parser.add_argument("--checkpoint-every", type=int, default=1_000)
    parser.add_argument(
        "--workers", type=int, default=1, help="processes making up records (0: this one)"
    )
    parser.add_argument("--citizens", type=int, default=50_000)
    parser.add_argument("--lookups", type=int, default=100, help="citizens looked up")
    parser.add_argument("--export", type=int, default=0, help="records exported (0: all)")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the log an earlier run built (appending what it lacks of --records)",
    )
    parser.add_argument(
        "--build-only", action="store_true", help="build the log and stop (for a later --reuse)"
    )
    parser.add_argument(
        "--verify-workers",
        type=int,
        default=os.cpu_count() or 1,
        help="processes of the parallel verify (default: one per CPU)",
    )
    args = parser.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "audit.db"
    key_file = OUT / "keys.json"
    console = Console(width=120)
    reuse = args.reuse and path.exists() and key_file.exists()
    if not reuse:
        remove_log(path)
        key_file.unlink(missing_ok=True)
    keys = load_keys(key_file)
    gen = Generator(keys, args.citizens)
    store = SqliteAuditStore(path, keys, checkpoint_every=args.checkpoint_every)
    head = await store.head()
    held = head.seq if head is not None else 0
    if held > args.records:
        raise SystemExit(f"the log in {OUT} holds more than {args.records:,} records")
    console.print(
        f"[bold]audit log at scale[/]: {args.records:,} records, batches of {args.batch:,}, "
        f"checkpoint every {args.checkpoint_every:,}; Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs"
    )

    append_s = build_s = 0.0
    built = args.records - held
    if built:
        t0 = time.perf_counter()
        append_s = await build(
            store, gen, key_file, args.records, args.batch, args.workers, start=held + 1
        )
        await store._run(lambda db: db.execute("PRAGMA wal_checkpoint(TRUNCATE)"))
        build_s = time.perf_counter() - t0
    size_mb = path.stat().st_size / 1e6
    if args.build_only:
        await store.close()
        console.print(
            f"built {built:,} records in {build_s:,.0f} s ({_rate(built, build_s)} "
            f"records/s; {_rate(built, append_s)} records/s in append); "
            f"log file {size_mb:,.0f} MB"
        )
        return

    base_s = baseline(path)

    t0 = time.perf_counter()
    report = await store.verify(trusted=frozenset({keys.public_key}))
    verify_s = time.perf_counter() - t0
    if not report.ok or report.checked != args.records:
        raise SystemExit(f"verify failed: {report.as_json()}")

    t0 = time.perf_counter()
    report = await store.verify(trusted=frozenset({keys.public_key}), citizen_index=True)
    verify_index_s = time.perf_counter() - t0
    if not report.ok or report.checked != args.records:
        raise SystemExit(f"verify with the citizen index failed: {report.as_json()}")

    t0 = time.perf_counter()
    parallel = await store.verify(trusted=frozenset({keys.public_key}), workers=args.verify_workers)
    verify_parallel_s = time.perf_counter() - t0
    if parallel != report:  # the citizen index does not change an intact log's report
        raise SystemExit(f"the parallel verify differs: {parallel.as_json()}")

    exported = args.export or args.records
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
        points = await store.export(1, exported, write)
        export_s = time.perf_counter() - t0
    export_mb = export_path.stat().st_size / 1e6
    export_path.unlink()

    # Every record about one citizen (a data-subject request), for citizens picked at random,
    # each looked up once; then, for comparison, the newest page of one of five consumers.
    picked = random.Random(11).sample(gen.blinded, min(args.lookups, len(gen.blinded)))  # noqa: S311
    lookup_ms: list[float] = []
    found: list[int] = []
    for subject in picked:
        t0 = time.perf_counter()
        rows = await store.query(AuditQuery(subject=subject), limit=100_000)
        lookup_ms.append((time.perf_counter() - t0) * 1000)
        found.append(len(rows))
    page_ms = []
    for _ in range(5):
        t0 = time.perf_counter()
        await store.query(AuditQuery(consumer=CONSUMERS[1]), limit=50)
        page_ms.append((time.perf_counter() - t0) * 1000)
    await store.close()

    table = Table(title="exchange log operations")
    table.add_column("operation")
    table.add_column("records", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("records/s", justify="right")
    table.add_column("x baseline", justify="right")
    n = args.records
    rows_out = [
        ("baseline: SELECT data + sha256", n, base_s),
        ("verify", n, verify_s),
        ("verify, citizen index too", n, verify_index_s),
        (f"verify in up to {args.verify_workers} processes", n, verify_parallel_s),
        (f"export to JSONL (records 1 to {exported:,})", exported, export_s),
    ]
    if built:
        rows_out.append((f"append (records {held + 1:,} to {n:,})", built, append_s))
    for name, count, seconds in rows_out:
        per_record = (seconds / count) / (base_s / n)
        table.add_row(
            name, f"{count:,}", f"{seconds:.2f}", _rate(count, seconds), f"{per_record:.1f}"
        )
    console.print(table)
    if built:
        console.print(
            f"built records {held + 1:,} to {n:,} in {build_s:,.0f} s ({_rate(built, build_s)} "
            f"records/s, records made by {args.workers} worker processes)"
        )
    console.print(
        f"log file {size_mb:,.0f} MB; export {export_mb:,.0f} MB with {len(points)} signed "
        f"points; verify checked {report.checked:,} records up to the signed head {report.last_seq}"
    )
    lookup_ms.sort()
    console.print(
        f"records about one citizen (blind index), {len(picked)} citizens looked up once each "
        f"({min(found)} to {max(found)} records, median {statistics.median(found):.0f}): "
        f"median {statistics.median(lookup_ms):.2f} ms, p99 {_nearest_rank(lookup_ms, 99):.2f} ms, "
        f"max {lookup_ms[-1]:.2f} ms"
    )
    console.print(
        f"newest 50 records of one consumer: median {statistics.median(page_ms):.2f} ms over 5"
    )


if __name__ == "__main__":
    asyncio.run(main())
