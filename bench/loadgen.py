"""The benchmark's Python load generator, for machines without wrk, and its burst client.

Closed loop (the default), wrk's model: ``-c`` connections, each sending the next request as
soon as the previous reply is read, for ``-d`` seconds; every request is the same (method,
body, headers). At the end one line is printed, the same one ``bench/run.py``'s wrk script
prints::

    BENCH {"requests": ..., "duration_us": ..., "p50_us": ..., "p99_us": ...,
           "connect": ..., "read": ..., "write": ..., "timeout": ..., "status": ...}

``requests`` counts completed replies whatever their status, as wrk does; ``status`` counts
those with a status of 400 or more (wrk's ``errors.status``), the other error fields count
requests that got no reply. Latencies are measured per reply, from sending to the last byte.

Burst (``--burst N``): N requests at once, each on its own connection (no connection limit),
then one line::

    BURST {"calls": N, "ok": ..., "failed": {"<status or exception>": count, ...},
           "reasons": {"<status, error code and message, numbers as N>": count, ...},
           "last_ok_s": ..., "last_s": ..., "p50_s": ..., "p99_s": ..., "max_s": ...}

where times are seconds from the moment the burst was fired. ``bench/run.py`` starts this as a
subprocess (``--loadgen python``, and always for the slow-upstream burst)::

    .venv/bin/python bench/loadgen.py http://127.0.0.1:8000/v1/services/relay/record.status \\
        -c 16 -d 10 --method POST --body '{"record_id": "..."}' -H 'Authorization: Bearer ...'
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import aiohttp


def percentile(ordered: list[float], pct: float) -> float:
    """The ``pct`` percentile of an ascending list (nearest rank), 0 for an empty one."""
    if not ordered:
        return 0.0
    rank = max(1, round(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def reason(body: bytes) -> str:
    """A failed reply's error code and message (the bus's envelope), numbers replaced by N."""
    try:
        error = json.loads(body)["error"]
        text = f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        text = body[:120].decode(errors="replace")
    return re.sub(r"\d+(\.\d+)?", "N", text)[:200]


def error_kind(exc: BaseException) -> str:
    """wrk's error classes: connect, timeout, read (write errors surface as read errors here)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect"
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return "timeout"
    return "read"


@dataclass(frozen=True)
class Shot:
    """The one request every call sends."""

    url: str
    method: str
    body: bytes
    headers: dict[str, str]
    seconds: float  # the per-request timeout

    def send(self, session: aiohttp.ClientSession) -> Any:
        return session.request(self.method, self.url, data=self.body, headers=self.headers)


async def closed_loop(shot: Shot, conns: int, duration: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    client_timeout = aiohttp.ClientTimeout(total=shot.seconds)
    connector = aiohttp.TCPConnector(limit=conns, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        deadline = time.perf_counter() + duration

        async def worker() -> None:
            while (start := time.perf_counter()) < deadline:
                try:
                    async with shot.send(session) as resp:
                        await resp.read()
                        if resp.status > 399:
                            errors["status"] += 1
                except (TimeoutError, aiohttp.ClientError) as exc:
                    errors[error_kind(exc)] += 1
                    continue
                latencies.append(time.perf_counter() - start)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conns)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "requests": len(latencies),
        "duration_us": round(elapsed * 1e6),
        "p50_us": round(percentile(latencies, 50) * 1e6),
        "p99_us": round(percentile(latencies, 99) * 1e6),
        **{kind: errors[kind] for kind in ("connect", "read", "write", "timeout", "status")},
    }


async def burst(shot: Shot, calls: int) -> dict[str, Any]:
    failed: Counter[str] = Counter()
    reasons: Counter[str] = Counter()  # why, from the error envelope (numbers as N)
    ok_times: list[float] = []
    ends: list[float] = []
    connector = aiohttp.TCPConnector(limit=0)  # no limit: one connection per call
    client_timeout = aiohttp.ClientTimeout(total=shot.seconds)
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        fired = time.perf_counter()

        async def one() -> None:
            try:
                async with shot.send(session) as resp:
                    body = await resp.read()
                    status = resp.status
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                failed[type(exc).__name__] += 1
                reasons[re.sub(r"\d+(\.\d+)?", "N", repr(exc))[:200]] += 1
            else:
                if status == 200:
                    ok_times.append(time.perf_counter() - fired)
                else:
                    failed[f"HTTP {status}"] += 1
                    reasons[f"HTTP {status} {reason(body)}"] += 1
            ends.append(time.perf_counter() - fired)

        await asyncio.gather(*(one() for _ in range(calls)))
    ok_times.sort()
    return {
        "calls": calls,
        "ok": len(ok_times),
        "failed": dict(failed),
        "reasons": dict(reasons.most_common(8)),
        "last_ok_s": ok_times[-1] if ok_times else None,
        "last_s": max(ends) if ends else None,
        "p50_s": percentile(ok_times, 50),
        "p99_s": percentile(ok_times, 99),
        "max_s": ok_times[-1] if ok_times else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("-c", "--connections", type=int, default=16)
    parser.add_argument("-d", "--duration", type=float, default=10.0, help="seconds")
    parser.add_argument("--burst", type=int, help="fire this many calls at once instead")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body", default="", help="request body (UTF-8)")
    parser.add_argument("-H", "--header", action="append", default=[], help="'Name: value'")
    parser.add_argument("--timeout", type=float, default=5.0, help="per request, seconds")
    args = parser.parse_args()
    headers = {}
    for line in args.header:
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    shot = Shot(args.url, args.method, args.body.encode(), headers, args.timeout)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency of the bus on Linux
        runner = asyncio.run
    else:
        runner = uvloop.run
    if args.burst:
        result = runner(burst(shot, args.burst))
        print("BURST " + json.dumps(result), flush=True)
    else:
        result = runner(closed_loop(shot, args.connections, args.duration))
        print("BENCH " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
