"""Client throughput of httpx's own transport against the httpx-aiohttp transport.

The bus sends every upstream call through one shared ``httpx.AsyncClient`` built by
``bus.gateway.make_http_client``; ``Settings.http_transport`` picks its transport. This script
measures GET throughput of that exact client with ``http_transport="httpx"`` (httpx's own
connection pool) and ``http_transport="aiohttp"`` (httpx-aiohttp), the same transport under a
plain ``httpx.AsyncClient`` (what the bus's ``BusHttpClient`` saves), with a raw
``aiohttp.ClientSession`` as the ceiling, against a fixed ~100-byte JSON reply served by uvicorn
from a separate process on a free loopback port.

For each concurrency C, C worker coroutines loop ``GET`` and read the body for a fixed time after
a short warm-up. Rounds are interleaved in rotating client order and the median req/s per
(client, C) is reported, with p50/p99 latencies pooled over the rounds.

Run from the repository root::

    .venv/bin/python bench/http_transports.py [--seconds 3] [--concurrency 16,64] [--rounds 3]

Client and server share the machine's cores, so absolute figures depend on the host and its
load; read the ratios, which compare the clients under the same conditions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from importlib.metadata import version
from typing import Any

import aiohttp
import httpx
from rich.console import Console
from rich.table import Table

from bus.gateway import make_http_client
from bus.settings import Settings
from bus.transport import BusAiohttpTransport

LIMITS = httpx.Limits(max_connections=Settings().http_max_connections)

CLIENTS = ("httpx-default", "httpx-aiohttp-plain", "httpx-aiohttp", "aiohttp-raw")
WARMUP_SECONDS = 0.5
BODY = json.dumps(
    {
        "status": "ok",
        "service": "lgsp-bench-upstream",
        "payload": {"id": 4242, "items": [1, 2, 3, 4]},
    }
).encode()

Fetch = Callable[[], Awaitable[bytes]]
Results = dict[tuple[str, int], tuple[float, list[float]]]  # (client, C) -> median req/s, latencies


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Raw ASGI upstream: the same small JSON reply to every HTTP request."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


def serve_upstream(fd: int) -> None:
    """Child-process entry point: serve :func:`app` on the inherited listening socket."""
    import uvicorn

    config = uvicorn.Config(app, access_log=False, log_level="warning", lifespan="off")
    uvicorn.Server(config).run(sockets=[socket.socket(fileno=fd)])


def start_upstream() -> tuple[subprocess.Popen[bytes], str]:
    """Bind a free loopback port here (no race), hand it to a uvicorn child, wait for a reply."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        fd = sock.fileno()
        cmd = [sys.executable, __file__, "--upstream-fd", str(fd)]
        proc = subprocess.Popen(cmd, pass_fds=(fd,))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and proc.poll() is None:
        with suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0, trust_env=False).content == BODY:
                return proc, url
        time.sleep(0.1)
    stop_upstream(proc)
    raise RuntimeError("upstream did not answer within 15 s")


def stop_upstream(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@asynccontextmanager
async def open_client(name: str, url: str) -> AsyncIterator[Fetch]:
    """A fresh client of kind ``name``, as a coroutine that GETs ``url`` and returns the body."""
    if name == "aiohttp-raw":
        connector = aiohttp.TCPConnector(limit=Settings().http_max_connections)
        async with aiohttp.ClientSession(connector=connector, raise_for_status=True) as session:

            async def fetch_raw() -> bytes:
                async with session.get(url) as resp:
                    return await resp.read()

            yield fetch_raw
        return
    settings = Settings(http_transport="httpx" if name == "httpx-default" else "aiohttp")
    bus_client = make_http_client(settings)
    if name == "httpx-aiohttp-plain":  # the same transport under a plain httpx.AsyncClient
        await bus_client.aclose()
        bus_client = httpx.AsyncClient(transport=BusAiohttpTransport(limits=LIMITS))
    async with bus_client as client:

        async def fetch() -> bytes:
            resp = await client.get(url)
            resp.raise_for_status()
            return resp.content

        yield fetch


async def load(fetch: Fetch, concurrency: int, seconds: float) -> tuple[float, list[float]]:
    """Run ``concurrency`` workers for ``seconds``; return req/s and per-request latencies."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while (start := time.perf_counter()) < deadline:
            await fetch()
            latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies) / (time.perf_counter() - began), latencies


async def bench(url: str, levels: list[int], seconds: float, rounds: int) -> Results:
    rates: dict[tuple[str, int], list[float]] = {(n, c): [] for n in CLIENTS for c in levels}
    lats: dict[tuple[str, int], list[float]] = {key: [] for key in rates}
    for r in range(rounds):
        order = CLIENTS[r % len(CLIENTS) :] + CLIENTS[: r % len(CLIENTS)]
        for conc in levels:
            for name in order:
                async with open_client(name, url) as fetch:
                    await load(fetch, conc, WARMUP_SECONDS)
                    rate, samples = await load(fetch, conc, seconds)
                rates[name, conc].append(rate)
                lats[name, conc].extend(samples)
                print(f"  round {r + 1}/{rounds}  C={conc:<3} {name:<14} {rate:8.0f} req/s")
    return {key: (statistics.median(rates[key]), lats[key]) for key in rates}


def report(results: Results, levels: list[int], console: Console) -> None:
    table = Table(
        title="GET throughput, median over rounds",
        caption="÷ default: ratio to httpx-default; ÷ raw: ratio to aiohttp-raw",
    )
    for col in ("client", "C", "req/s", "p50 ms", "p99 ms", "÷ default", "÷ raw"):
        table.add_column(col, justify="left" if col == "client" else "right", no_wrap=True)
    for conc in levels:
        base, ceiling = results["httpx-default", conc][0], results["aiohttp-raw", conc][0]
        for name in CLIENTS:
            rate, samples = results[name, conc]
            cuts = statistics.quantiles(samples, n=100)
            table.add_row(
                name, str(conc), f"{rate:,.0f}", f"{cuts[49] * 1e3:.2f}", f"{cuts[98] * 1e3:.2f}",
                f"{rate / base:.2f}x", f"{rate / ceiling:.2f}x",
            )  # fmt: skip
        table.add_section()
    console.print(table)
    plain = {c: results["httpx-aiohttp-plain", c][0] for c in levels}
    lean = {c: results["httpx-aiohttp", c][0] / plain[c] for c in levels}
    console.print(
        "the bus's client (BusHttpClient) / a plain httpx.AsyncClient on the same transport = "
        + ", ".join(f"{lean[c]:.2f} at {c}" for c in levels),
        soft_wrap=True,
    )
    ratios = {c: results["httpx-aiohttp", c][0] / results["httpx-default", c][0] for c in levels}
    shown = ", ".join(f"{ratio:.2f}x at C={c}" for c, ratio in ratios.items())
    if all(ratio > 1 for ratio in ratios.values()):
        verdict = 'httpx-aiohttp (http_transport="aiohttp") is faster'
    elif all(ratio < 1 for ratio in ratios.values()):
        verdict = 'httpx default (http_transport="httpx") is faster'
    else:
        verdict = "no single winner across concurrencies"
    console.print(f"choice: {verdict}; httpx-aiohttp / httpx-default = {shown}", soft_wrap=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured time per run")
    parser.add_argument("--concurrency", default="16,64", help="comma-separated worker counts")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per client")
    parser.add_argument("--upstream-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream_fd is not None:
        serve_upstream(args.upstream_fd)
        return
    levels = [int(part) for part in args.concurrency.split(",")]
    console = Console()
    packages = ("httpx", "httpcore", "httpx-aiohttp", "aiohttp", "uvicorn")
    console.print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs; "
        + ", ".join(f"{pkg} {version(pkg)}" for pkg in packages)
        + f"; {len(BODY)}-byte body; {args.seconds:g} s x {args.rounds} rounds per client and C",
        soft_wrap=True,
    )
    proc, url = start_upstream()
    try:
        console.print(f"upstream {url} (pid {proc.pid})")
        results = asyncio.run(bench(url, levels, args.seconds, args.rounds))
    finally:
        stop_upstream(proc)
    report(results, levels, console)


if __name__ == "__main__":
    main()
