"""The bus's benchmark: the gateway against a direct call and three bare proxies, in one run.

Everything runs on loopback, on free ports, started and stopped by this script:

- a fast fixed-reply **upstream**: nginx (``return 200`` with :data:`relay.UPSTREAM_REPLY`) when
  it is installed, else ``bench/upstream.py`` (uvicorn); ``--no-nginx`` forces the latter;
- the **load generator**: wrk when installed (a Lua script sets the request and prints the
  figures), else ``bench/loadgen.py`` (aiohttp, closed loop, in its own process);
  ``--loadgen`` picks one.

Scenarios (every one sends the same POST with a JSON body and the same headers):

``direct``         load generator -> upstream
``aiohttp-proxy``  -> ``bench/peers/aiohttp_proxy.py`` -> upstream: the ceiling of one Python hop
``stack-proxy``    -> ``bench/peers/stack_proxy.py`` -> upstream: the bus's stack (uvicorn,
                   FastAPI, one route served in front of FastAPI's middleware as the bus serves
                   its call, the bus's shared httpx client) and nothing else
``nginx-proxy``    -> nginx ``proxy_pass`` (keep-alive upstream block) -> upstream
``bus-json``       -> the bus, ``relay/record.status`` (adapter ``bench-relay``) -> upstream; the
                   whole pipeline: bearer token, rights, rate limit, validation, retry policy,
                   exchange log (``metadata``), one JSON access line per call
``bus-soap``       -> the bus, ``population/citizen.lookup`` -> NGSP mock -> population mock
                   (SOAP; ``lgsp mocks serve`` in a subprocess, faults off, no throttle)
``bus-full``       as bus-json, through ``relay-full`` whose exchange log is ``audit: full``
                   (request and reply bodies encrypted into the log)
``bus-json-2w``    as bus-json with ``LGSP_WORKERS=2``; afterwards ``lgsp audit verify`` checks
                   the chain both workers wrote
``slow``           5,000 calls fired at once through the bus to an upstream that answers after
                   1 s (``bench/upstream.py --delay 1``, service ``relay-slow``); not a cell of
                   the matrix but a burst: how many came back 200, how long the last one took,
                   the bus's peak RSS

Each bus scenario gets its own bus process (``bench/serve_bus.py``, as ``lgsp serve`` runs)
with a fresh store and exchange log in the run's temporary directory, and one consumer created
with ``lgsp consumers add`` whose rate limit is out of the way. Servers are started once and run
for the whole matrix; the cells are interleaved: for each connection count every scenario is
measured in turn (the order rotating between counts), each for ``--warmup`` seconds unmeasured
and then ``--duration`` seconds measured.

Run from the repository root (about 6 minutes with the defaults)::

    .venv/bin/python bench/run.py
    .venv/bin/python bench/run.py --duration 2 --warmup 1 --connections 1,16 --out /tmp/r.md
    .venv/bin/python bench/run.py --scenarios direct,stack-proxy,bus-json
    .venv/bin/python bench/run.py --soak 1000000       # bus-json at 16 connections, RSS growth

Options: ``--duration S`` (10) and ``--warmup S`` (2) per cell (whole seconds with wrk);
``--connections 1,16,64``; ``--scenarios a,b`` (a subset, names above); ``--loadgen wrk|python``;
``--threads N`` (wrk threads, 1: the load generator keeps to one of the 2 cores);
``--rounds N`` (measure the whole matrix N times and show, per cell, the round of median
req/s, with the errors of every round: for a noisy machine);
``--no-nginx``; ``--out FILE``; ``--keep DIR`` (run in DIR and keep its logs, stores and
configuration; a failed run keeps its temporary directory too); ``--slow-pool N`` (the slow
scenario's ``LGSP_HTTP_MAX_CONNECTIONS``, default 6,000 so that the pool is not what limits
5,000 concurrent calls; 0: the bus's default); ``--soak N`` and ``--soak-out FILE``.

The results go to the terminal and to ``--out`` (default ``bench/RESULTS.md``, with the chart
``results.png`` beside it); the ``<!-- notes -->`` section of an existing file is kept. Soak
results go to ``bench/SOAK.md`` and ``bench/soak.png``: bus-json at 16 connections in wrk runs
of up to 30 s until N calls, the bus's RSS sampled every second; the growth compares the RSS
once 10 % of the calls are done with the RSS at the end (target < 10 %).

Reading the figures. ``req/s`` is replies per second over the measured window, ``p50``/``p99``
the latency percentiles the load generator saw. ``CPU s/1k`` is the CPU time (user + system)
of the process tree under test (the upstream for ``direct``, the proxy, or the bus and its
worker processes; never the load generator or the upstream behind a proxy) per 1,000 replies:
the cost of one call independent of how the 2 cores were shared. ``upstream CPU s/1k`` is the
same for the upstream behind it (nginx, or for ``bus-soap`` the NGSP and population mocks, one
Python process), which shares the same cores: what the system under test did not spend itself.
``peak RSS`` is the largest
resident memory of that tree, sampled every 100 ms during the cell. ``errors`` counts replies
with a status of 400 or more and requests without a reply (connect, read, write, timeout);
a cell with errors is shown in red. The load generator, the upstream and the system under test
share the machine's cores, so absolute figures depend on the host: read the ratios, which
compare scenarios measured in the same run under the same conditions. The targets section
checks the issue's targets against this run; "at 16 and 64 connections" means the counts of
``--connections`` that are 16 or more.

The slow burst is fired by ``bench/loadgen.py --burst`` (aiohttp, no connection limit), first
straight at the slow upstream, then through the bus: the first figure is what the client and
the machine allow without the bus.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import httpx
from relay import UPSTREAM_REPLY  # bench/ is on sys.path: this file is run as a script
from rich.console import Console
from rich.markup import escape
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
BIN = Path(sys.executable).parent  # the virtualenv's bin/: lgsp lives beside python
RECORD_ID = "000.00.00.H00-261121-0001"
#: The NGSP consumer the mocks accept (mocks/bus.yaml's header comment).
NGSP_ENV = {"NGSP_CONSUMER_KEY": "lgsp-demo-key", "NGSP_CONSUMER_SECRET": "lgsp-demo-secret"}

MATRIX = (
    "direct",
    "aiohttp-proxy",
    "stack-proxy",
    "nginx-proxy",
    "bus-json",
    "bus-soap",
    "bus-full",
    "bus-json-2w",
)
SCENARIOS = (*MATRIX, "slow")
BUS_SCENARIOS = {
    # scenario -> (service, operation, workers)
    "bus-json": ("relay", "record.status", 1),
    "bus-soap": ("population", "citizen.lookup", 1),
    "bus-full": ("relay-full", "record.status", 1),
    "bus-json-2w": ("relay", "record.status", 2),
}
SLOW_CALLS = 5000
SLOW_DELAY = 1.0
SOAK_CONNECTIONS = 16
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MB = 1024 * 1024

console = Console(width=130)


class BenchError(Exception):
    """The benchmark cannot go on; the message says why (and shows the log that tells more)."""


# --- processes -----------------------------------------------------------------------------------


class Children:
    """Every process this run starts, each in its own process group, stopped on the way out."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, cmd: Sequence[str], log: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                list(cmd),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
                start_new_session=True,  # its own process group: workers are stopped with it
            )
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 15.0) -> int:
        """SIGTERM the child's process group, SIGKILL it after ``grace`` seconds."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        with contextlib.suppress(ProcessLookupError):  # a worker left behind by its parent
            os.killpg(proc.pid, signal.SIGKILL)
        if proc in self.procs:
            self.procs.remove(proc)
        return proc.returncode

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc, grace=5.0)


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_port_block(count: int) -> int:
    """A base port such that ``count`` consecutive ports are free (the mocks take a block)."""
    for _ in range(200):
        base = free_port()
        if base + count > 65535:
            continue
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return base
    raise BenchError(f"found no {count} consecutive free loopback ports")


def wait_ready(
    proc: subprocess.Popen[bytes], probe: Callable[[], bool], what: str, log: Path, timeout: float
) -> None:
    """Poll ``probe`` until it says yes; fail with the log's tail if the process dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with {proc.returncode}; {log}:\n{tail(log)}")
        with contextlib.suppress(httpx.HTTPError, OSError):
            if probe():
                return
        time.sleep(0.1)
    raise BenchError(f"{what} did not answer within {timeout:g} s; {log}:\n{tail(log)}")


def answers(url: str, method: str = "GET", expect: bytes | None = None) -> Callable[[], bool]:
    def probe() -> bool:
        reply = httpx.request(method, url, timeout=2.0, trust_env=False)
        return reply.status_code < 500 and (expect is None or reply.content == expect)

    return probe


# --- what the system under test uses: /proc ------------------------------------------------------


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, utime + stime in clock ticks) of a live process, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()  # the name may hold spaces and parentheses
    return int(fields[1]), int(fields[11]) + int(fields[12])


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (walks /proc for parent ids)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                children.setdefault(stat[0], []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def tree_cpu_seconds(root: int) -> float:
    ticks = 0
    for pid in process_tree(root):
        stat = _stat(pid)
        if stat is not None:
            ticks += stat[1]
    return ticks / CLK_TCK


def tree_rss_bytes(root: int) -> int:
    total = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    return total


class RssSampler:
    """Samples the RSS of a process tree every ``interval`` seconds in a thread, while open."""

    def __init__(self, root: int, interval: float = 0.1) -> None:
        self.root = root
        self.interval = interval
        self.samples: list[tuple[float, int]] = []  # (time.monotonic(), bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def peak(self) -> int:
        return max((rss for _, rss in self.samples), default=0)

    def _run(self) -> None:
        while True:
            self.samples.append((time.monotonic(), tree_rss_bytes(self.root)))
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic(), tree_rss_bytes(self.root)))


# --- load ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What a scenario's load generator sends, and the process tree that serves it."""

    name: str
    url: str
    body: bytes
    headers: dict[str, str]
    root: int  # pid whose tree is measured
    method: str = "POST"
    upstream: int | None = None  # pid of the upstream's tree behind it, measured apart
    envelope: bool = False  # the bus: the reply is an envelope whose status must be "ok"

    def check(self) -> None:
        """One call before measuring: it must succeed, or the scenario is not measured."""
        try:
            reply = httpx.request(
                self.method, self.url, content=self.body, headers=self.headers, timeout=15.0,
                trust_env=False,
            )  # fmt: skip
        except httpx.HTTPError as exc:
            raise BenchError(f"{self.name}: the check call failed: {exc!r}") from exc
        ok = reply.status_code == 200
        if ok and self.envelope:
            with contextlib.suppress(ValueError):
                ok = reply.json().get("status") == "ok"
        if not ok:
            raise BenchError(
                f"{self.name}: the check call answered {reply.status_code}: {reply.text[:600]}"
            )


@dataclass
class Stats:
    """One load generator run, as its one output line reports it."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @classmethod
    def parse(cls, output: str, errors: str = "") -> Stats:
        line = next((ln for ln in output.splitlines() if ln.startswith("BENCH ")), None)
        if line is None:
            raise BenchError(
                f"the load generator printed no BENCH line:\n{output[-1500:]}{errors[-1500:]}"
            )
        data = json.loads(line[len("BENCH ") :])
        return cls(
            requests=int(data["requests"]),
            seconds=data["duration_us"] / 1e6,
            p50_ms=data["p50_us"] / 1e3,
            p99_ms=data["p99_us"] / 1e3,
            errors={
                kind: int(data[kind])
                for kind in ("status", "connect", "read", "write", "timeout")
                if data[kind]
            },
        )


WRK_SCRIPT = """\
wrk.method = {method}
wrk.body = {body}
{headers}
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "connect": %d, '
    .. '"read": %d, "write": %d, "timeout": %d, "status": %d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.timeout, e.status))
end
"""


def lua_string(text: str) -> str:
    """``text`` as a Lua long-bracket string literal."""
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


class LoadGen:
    """wrk (a Lua script per target) or ``bench/loadgen.py``, driven the same way."""

    def __init__(self, kind: str, workdir: Path, threads: int) -> None:
        self.kind = kind
        self.workdir = workdir
        self.threads = threads

    def describe(self) -> str:
        if self.kind == "wrk":
            return f"wrk ({wrk_version()}), {self.threads} thread(s), Lua script per scenario"
        return f"bench/loadgen.py (aiohttp {pkg_version('aiohttp')}, one process)"

    def _script(self, target: Target) -> Path:
        path = self.workdir / f"wrk-{target.name}.lua"
        if not path.exists():
            headers = "\n".join(
                f"wrk.headers[ {lua_string(k)} ] = {lua_string(v)}"
                for k, v in target.headers.items()
            )
            path.write_text(
                WRK_SCRIPT.format(
                    method=lua_string(target.method),
                    body=lua_string(target.body.decode()),
                    headers=headers,
                )
            )
        return path

    def run(self, target: Target, connections: int, seconds: float) -> Stats:
        if self.kind == "wrk":
            cmd = [
                "wrk", "-t", str(min(self.threads, connections)), "-c", str(connections),
                "-d", f"{max(1, round(seconds))}s", "--timeout", "10s",
                "-s", str(self._script(target)), target.url,
            ]  # fmt: skip
        else:
            cmd = [
                sys.executable, str(BENCH / "loadgen.py"), target.url, "-c", str(connections),
                "-d", f"{seconds:g}", "--method", target.method, "--body", target.body.decode(),
                "--timeout", "10",
                *(arg for k, v in target.headers.items() for arg in ("-H", f"{k}: {v}")),
            ]  # fmt: skip
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=seconds + 60, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"the load generator did not finish: {shlex.join(cmd)}") from exc
        if done.returncode != 0:
            raise BenchError(
                f"the load generator failed ({done.returncode}): {shlex.join(cmd)}\n"
                f"{done.stdout[-1000:]}{done.stderr[-2000:]}"
            )
        return Stats.parse(done.stdout, done.stderr)


@dataclass
class Cell:
    scenario: str
    connections: int
    stats: Stats | None = None
    warmup_errors: int = 0
    cpu_per_1k: float | None = None
    upstream_cpu_per_1k: float | None = None
    peak_rss_mb: float | None = None
    failure: str | None = None
    #: With --rounds: the other rounds' errors (this cell is the round of median req/s).
    other_rounds_errors: int = 0

    @property
    def ok(self) -> bool:
        return self.stats is not None and self.stats.requests > 0

    def errors_text(self) -> str:
        if self.failure is not None:
            return f"FAILED: {self.failure}"
        assert self.stats is not None
        parts = [f"{kind} {n:,}" for kind, n in self.stats.errors.items()]
        if self.warmup_errors:
            parts.append(f"warm-up {self.warmup_errors:,}")
        if self.other_rounds_errors:
            parts.append(f"other rounds {self.other_rounds_errors:,}")
        total = self.stats.error_count + self.warmup_errors + self.other_rounds_errors
        return f"{total:,} ({', '.join(parts)})" if total else "0"

    @property
    def all_errors(self) -> int:
        if self.stats is None:
            return 0
        return self.stats.error_count + self.warmup_errors


def median_cell(rounds: list[Cell]) -> Cell:
    """The round of median req/s, carrying every other round's errors (none is hidden)."""
    good = sorted((c for c in rounds if c.ok), key=lambda c: c.stats.rps if c.stats else 0.0)
    if not good:
        return rounds[-1]
    chosen = good[(len(good) - 1) // 2]
    chosen.other_rounds_errors = sum(c.all_errors for c in rounds if c is not chosen)
    failed = [c.failure for c in rounds if c.failure is not None]
    if failed:  # a round that failed outright is an error too
        chosen.other_rounds_errors += len(failed)
    return chosen


def wait_idle(root: int, timeout: float = 5.0, step: float = 0.1) -> None:
    """Until the process tree under test uses under 5% of a core over ``step`` seconds."""
    deadline = time.monotonic() + timeout
    before = tree_cpu_seconds(root)
    while time.monotonic() < deadline:
        time.sleep(step)
        now = tree_cpu_seconds(root)
        if now - before < 0.05 * step:
            return
        before = now


def measure(
    target: Target, connections: int, duration: float, warmup: float, loadgen: LoadGen
) -> Cell:
    cell = Cell(target.name, connections)
    with RssSampler(target.root) as rss:
        if warmup > 0:
            cell.warmup_errors = loadgen.run(target, connections, warmup).error_count
            # The load generator closes its connections with calls in flight, which the
            # server finishes anyway; measured at once, the next run's connections would find
            # them still there (a bus sheds past its bulkhead) and pay for their CPU.
            wait_idle(target.root)
        cpu_before = tree_cpu_seconds(target.root)
        upstream_before = tree_cpu_seconds(target.upstream) if target.upstream else 0.0
        stats = loadgen.run(target, connections, duration)
        cpu_used = tree_cpu_seconds(target.root) - cpu_before
        upstream_used = (
            tree_cpu_seconds(target.upstream) - upstream_before if target.upstream else 0.0
        )
    cell.stats = stats
    if stats.requests:
        cell.cpu_per_1k = cpu_used / stats.requests * 1000
        if target.upstream:
            cell.upstream_cpu_per_1k = upstream_used / stats.requests * 1000
    cell.peak_rss_mb = rss.peak / MB
    return cell


# --- servers -------------------------------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any LGSP_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LGSP_")}
    env.update(extra)
    return env


def nginx_installed() -> bool:
    return shutil.which("nginx") is not None or Path("/usr/sbin/nginx").exists()


def nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def nginx_conf(workdir: Path, port: int, location: str, extra_http: str = "") -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers write to the run's temp dir
    temps = "\n".join(
        f"    {kind}_temp_path {workdir / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""\
{user}worker_processes 1;
daemon off;
pid {workdir / "nginx.pid"};
error_log {workdir / "error.log"} warn;
events {{
    worker_connections 16384;
}}
http {{
    access_log off;
{temps}
    keepalive_requests 100000000;
    keepalive_timeout 120s;
{extra_http}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
{location}
        }}
    }}
}}
"""


def start_nginx(children: Children, workdir: Path, conf: str, port: int, what: str) -> int:
    workdir.mkdir(parents=True)
    path = workdir / "nginx.conf"
    path.write_text(conf)
    log = workdir / "stdout.log"
    cmd = [nginx_binary(), "-p", str(workdir), "-c", str(path), "-e", str(workdir / "error.log")]
    proc = children.start(cmd, log)
    url = f"http://127.0.0.1:{port}/hoso/{RECORD_ID}"
    wait_ready(proc, answers(url, expect=UPSTREAM_REPLY), what, workdir / "error.log", 20)
    return proc.pid


def nginx_upstream(children: Children, run_dir: Path) -> tuple[str, int]:
    port = free_port()
    reply = UPSTREAM_REPLY.decode().replace("\\", "\\\\").replace("'", "\\'")
    location = f"            default_type application/json;\n            return 200 '{reply}';"
    conf = nginx_conf(run_dir / "nginx-upstream", port, location)
    pid = start_nginx(children, run_dir / "nginx-upstream", conf, port, "nginx (upstream)")
    return f"http://127.0.0.1:{port}", pid


def python_upstream(
    children: Children, run_dir: Path, port: int | None = None, delay: float = 0.0
) -> tuple[str, int]:
    port = port or free_port()
    name = "upstream-slow" if delay else "upstream"
    log = run_dir / f"{name}.log"
    cmd = [sys.executable, str(BENCH / "upstream.py"), "--port", str(port)]
    if delay:
        cmd += ["--delay", f"{delay:g}"]
    proc = children.start(cmd, log, clean_env())
    url = f"http://127.0.0.1:{port}"
    probe_url = f"{url}/hoso/{RECORD_ID}"
    wait_ready(proc, answers(probe_url, expect=UPSTREAM_REPLY), f"{name} (python)", log, 30)
    return url, proc.pid


def start_nginx_proxy(children: Children, run_dir: Path, upstream: str) -> tuple[str, int]:
    port = free_port()
    upstream_block = f"""\
    upstream backend {{
        server {upstream.removeprefix("http://")};
        keepalive 256;
        keepalive_requests 100000000;
    }}"""
    location = (
        "            proxy_pass http://backend;\n"
        "            proxy_http_version 1.1;\n"
        '            proxy_set_header Connection "";'
    )
    conf = nginx_conf(run_dir / "nginx-proxy", port, location, upstream_block)
    pid = start_nginx(children, run_dir / "nginx-proxy", conf, port, "nginx-proxy")
    return f"http://127.0.0.1:{port}", pid


def start_peer(children: Children, run_dir: Path, script: str, upstream: str) -> tuple[str, int]:
    port = free_port()
    name = Path(script).stem
    log = run_dir / f"{name}.log"
    cmd = [sys.executable, str(BENCH / "peers" / script), "--port", str(port)]
    proc = children.start([*cmd, "--upstream", upstream], log, clean_env())
    url = f"http://127.0.0.1:{port}"
    wait_ready(proc, answers(f"{url}/hoso/{RECORD_ID}", expect=UPSTREAM_REPLY), name, log, 30)
    return url, proc.pid


@dataclass
class Mocks:
    ngsp: str
    pid: int


def start_mocks(children: Children, run_dir: Path) -> Mocks:
    base = free_port_block(6)
    log = run_dir / "mocks.log"
    env = clean_env(LGSP_MOCK_NGSP_THROTTLE_PER_MINUTE="1000000000")  # and no LGSP_MOCK_FAULTS*
    proc = children.start([str(BIN / "lgsp"), "mocks", "serve", "--port", str(base)], log, env)
    ngsp = f"http://127.0.0.1:{base}"
    wait_ready(proc, answers(f"http://127.0.0.1:{base + 1}/soap?wsdl"), "the mocks", log, 60)
    return Mocks(ngsp, proc.pid)


def citizen_query() -> dict[str, str]:
    """A citizen the population mock knows (its default seed), as citizen.lookup's input."""
    from mocks.population.seed import build_registry

    person = next(c for c in build_registry().citizens if c.birth_date_known and c.cmnd)
    return {
        "personal_id": person.id,
        "full_name": person.name.full,
        "birth_date": person.birth_date.isoformat(),
    }


def bus_yaml(upstream: str, slow_upstream: str, ngsp: str | None) -> str:
    relay = """\
    adapter: bench-relay
    upstream:
      base_url: {base}
      credentials: {{api_key: RELAY_API_KEY}}
    timeout: 10
    retry: national
"""
    text = f"""\
version: 1
retry_policies:
  national: {{attempts: 3, initial_wait: 0.2, max_wait: 2}}
services:
  relay:
{relay.format(base=upstream)}
  relay-full:
{relay.format(base=upstream)}    audit: full

  relay-slow:
{relay.format(base=slow_upstream)}    max_in_flight: 100000
"""
    if ngsp is not None:
        text += f"""
  population:
    adapter: population
    upstream:
      base_url: {ngsp}
      credentials:
        consumer_key: NGSP_CONSUMER_KEY
        consumer_secret: NGSP_CONSUMER_SECRET
      health_path: /dancu/1.0/soap
    timeout: 10
    retry: national
    options:
      service_path: /dancu/1.0/soap
      agency_code: "000.00.00.H00"
"""
    return text


@dataclass
class Bus:
    name: str
    dir: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    url: str
    token: str

    @property
    def log(self) -> Path:
        return self.dir / "bus.log"


def start_bus(
    children: Children,
    run_dir: Path,
    name: str,
    config: Path,
    workers: int = 1,
    extra: dict[str, str] | None = None,
) -> Bus:
    """A bus (``bench/serve_bus.py``) with a fresh store in ``run_dir/name``, its consumer
    created beforehand and a token fetched."""
    workdir = run_dir / name
    workdir.mkdir()
    port = free_port()
    env = clean_env(
        LGSP_CONFIG=str(config),
        LGSP_STORE_PATH=str(workdir / "lgsp.db"),
        LGSP_PORT=str(port),
        LGSP_WORKERS=str(workers),
        RELAY_API_KEY="bench-relay-key",
        **NGSP_ENV,
        **(extra or {}),
    )
    env["LGSP_TOKEN_LIFETIME"] = str(86400)  # one token for the whole run
    add = [
        str(BIN / "lgsp"), "consumers", "add", "bench", "--name", "Bench",
        "--grant", "relay/*", "--grant", "relay-full/*", "--grant", "relay-slow/*",
        "--grant", "population/*", "--rate", "1000000", "--burst", "1000000", "--json",
    ]  # fmt: skip
    done = subprocess.run(add, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise BenchError(f"{name}: lgsp consumers add failed:\n{done.stdout}{done.stderr}")
    secret = json.loads(done.stdout)["client_secret"]
    log = workdir / "bus.log"
    proc = children.start([sys.executable, str(BENCH / "serve_bus.py")], log, env)
    url = f"http://127.0.0.1:{port}"
    wait_ready(proc, answers(f"{url}/healthz"), f"the bus ({name})", log, 60)
    reply = httpx.post(
        f"{url}/v1/token",
        data={"grant_type": "client_credentials"},
        auth=("bench", secret),
        timeout=10,
        trust_env=False,
    )
    if reply.status_code != 200:
        raise BenchError(f"{name}: POST /v1/token answered {reply.status_code}: {reply.text}")
    return Bus(name, workdir, env, proc, url, reply.json()["access_token"])


def json_headers(token: str | None = None) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {token or 'bench-not-a-token'}",
    }


# --- the run -------------------------------------------------------------------------------------


@dataclass
class Slow:
    calls: int
    ok: int
    failed: dict[str, int]
    last_ok_s: float | None
    last_s: float | None
    p50_s: float
    p99_s: float
    peak_rss_mb: float
    pool: int
    reasons: dict[str, int] = field(default_factory=dict)  # why calls failed -> how many
    direct_ok: int | None = None  # the same burst straight to the upstream, without the bus
    direct_last_s: float | None = None
    bus_view: list[tuple[str, str]] = field(default_factory=list)  # from the bus's log
    failure: str | None = None


@dataclass
class Results:
    connections: list[int]
    scenarios: list[str]
    cells: dict[tuple[str, int], Cell] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # scenario -> why it was not measured
    verify: tuple[bool, str] | None = None  # bus-json-2w: (chain verifies, what lgsp said)
    slow: Slow | None = None
    upstream: str = ""
    loadgen: str = ""
    bus_settings: str = ""
    bus_logs: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # summarize_log

    def cell(self, scenario: str, conns: int) -> Cell | None:
        cell = self.cells.get((scenario, conns))
        return cell if cell is not None and cell.ok else None

    def rps(self, scenario: str, conns: int) -> float | None:
        cell = self.cell(scenario, conns)
        return cell.stats.rps if cell is not None and cell.stats is not None else None

    def p50(self, scenario: str, conns: int) -> float | None:
        cell = self.cell(scenario, conns)
        return cell.stats.p50_ms if cell is not None and cell.stats is not None else None

    def p99(self, scenario: str, conns: int) -> float | None:
        cell = self.cell(scenario, conns)
        return cell.stats.p99_ms if cell is not None and cell.stats is not None else None

    def cpu(self, scenario: str, conns: int) -> float | None:
        """CPU seconds per 1,000 calls of the tree under test."""
        cell = self.cell(scenario, conns)
        return cell.cpu_per_1k if cell is not None else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def run_matrix(args: argparse.Namespace, run_dir: Path, children: Children) -> Results:
    scenarios = [s for s in args.scenarios if s in MATRIX]
    use_nginx = not args.no_nginx and nginx_installed()
    if not use_nginx and "nginx-proxy" in scenarios:
        scenarios.remove("nginx-proxy")
        console.print("[yellow]nginx-proxy skipped: nginx is not installed or --no-nginx[/]")
    results = Results(args.connections, scenarios)
    loadgen = LoadGen(args.loadgen, run_dir, args.threads)
    results.loadgen = loadgen.describe()

    console.print("starting the upstream...", style="dim")
    if use_nginx:
        upstream, upstream_pid = nginx_upstream(children, run_dir)
        results.upstream = f"{nginx_version()} (1 worker, return 200)"
    else:
        upstream, upstream_pid = python_upstream(children, run_dir)
        results.upstream = "bench/upstream.py (uvicorn, raw ASGI)"
    slow_port = free_port()
    slow_upstream = f"http://127.0.0.1:{slow_port}"
    mocks: Mocks | None = None
    mocks_error = "the mocks were not started"
    if "bus-soap" in scenarios:
        try:
            mocks = start_mocks(children, run_dir)
        except BenchError as exc:
            mocks_error = str(exc)
    config = run_dir / "bus.yaml"
    config.write_text(bus_yaml(upstream, slow_upstream, mocks.ngsp if mocks else None))
    path = f"/hoso/{RECORD_ID}"
    relay_body = json.dumps({"record_id": RECORD_ID}).encode()

    targets: dict[str, Target] = {}
    buses: dict[str, Bus] = {}
    for name in scenarios:
        console.print(f"starting {name}...", style="dim")
        try:
            if name == "direct":
                target = Target(name, upstream + path, relay_body, json_headers(), upstream_pid)
            elif name in ("aiohttp-proxy", "stack-proxy"):
                script = name.replace("-", "_") + ".py"
                url, pid = start_peer(children, run_dir, script, upstream)
                target = Target(
                    name, url + path, relay_body, json_headers(), pid, upstream=upstream_pid
                )
            elif name == "nginx-proxy":
                url, pid = start_nginx_proxy(children, run_dir, upstream)
                target = Target(
                    name, url + path, relay_body, json_headers(), pid, upstream=upstream_pid
                )
            else:
                if name == "bus-soap" and mocks is None:
                    raise BenchError(mocks_error)
                service, operation, workers = BUS_SCENARIOS[name]
                bus = start_bus(children, run_dir, name, config, workers)
                buses[name] = bus
                body = json.dumps(citizen_query()).encode() if name == "bus-soap" else relay_body
                url = f"{bus.url}/v1/services/{service}/{operation}"
                behind = mocks.pid if name == "bus-soap" and mocks is not None else upstream_pid
                target = Target(
                    name, url, body, json_headers(bus.token), bus.proc.pid, envelope=True,
                    upstream=behind,
                )  # fmt: skip
            target.check()
        except BenchError as exc:
            results.failures[name] = str(exc)
            console.print(f"[red]{name} not measured:[/] {escape(str(exc))}")
            continue
        targets[name] = target
    if "bus-json" in buses:
        results.bus_settings = bus_settings_text(buses["bus-json"])

    measured = [s for s in scenarios if s in targets]
    total = len(measured) * len(args.connections) * args.rounds
    done = 0
    rounds: dict[tuple[str, int], list[Cell]] = {}
    for round_no in range(args.rounds):
        for step, conns in enumerate(args.connections):
            shift = (round_no + step) % len(measured) if measured else 0
            for name in measured[shift:] + measured[:shift]:
                done += 1
                try:
                    cell = measure(targets[name], conns, args.duration, args.warmup, loadgen)
                except BenchError as exc:
                    cell = Cell(name, conns, failure=str(exc).splitlines()[0])
                    console.print(
                        f"[red]{name} at {conns} connections failed:[/] {escape(str(exc))}"
                    )
                rounds.setdefault((name, conns), []).append(cell)
                progress(done, total, cell)
    results.cells = {key: median_cell(cells) for key, cells in rounds.items()}
    for name, bus in buses.items():  # a bus that died during the run is a result too
        if bus.proc.poll() is not None:
            results.failures.setdefault(name, f"the bus exited ({bus.proc.returncode})")
            console.print(f"[red]{name}: the bus exited; {bus.log}:[/]\n{escape(tail(bus.log))}")

    # Stop every server of the matrix before the slow burst and the audit check.
    if "bus-json-2w" in buses:
        results.verify = verify_chain(children, buses["bus-json-2w"])
    for name, bus in buses.items():
        children.stop(bus.proc)
        results.bus_logs[name] = summarize_log(bus.log)
    keep = {upstream_pid}
    for proc in list(children.procs):
        if proc.pid not in keep:
            children.stop(proc)
    if "slow" in args.scenarios:
        results.slow = run_slow(args, run_dir, children, config, slow_port)
    return results


def progress(done: int, total: int, cell: Cell) -> None:
    head = f"[{done}/{total}] {cell.scenario:<13} c={cell.connections:<3}"
    if cell.stats is None:
        console.print(f"{head} [red]{escape(cell.errors_text())}[/]")
        return
    s = cell.stats
    errors = cell.errors_text()
    console.print(
        f"{head} {s.rps:9,.0f} req/s  p50 {s.p50_ms:7.2f} ms  p99 {s.p99_ms:7.2f} ms  "
        f"cpu {fmt(cell.cpu_per_1k, '.3f')} s/1k  rss {fmt(cell.peak_rss_mb, '.0f')} MB  "
        + (f"[red]errors {escape(errors)}[/]" if errors != "0" else "errors 0"),
        highlight=False,
    )


def bus_settings_text(bus: Bus) -> str:
    shown = ("LGSP_WORKERS", "LGSP_LOG_LEVEL", "LGSP_HTTP_MAX_CONNECTIONS", "LGSP_AUTH")
    values = ", ".join(f"{k}={bus.env[k]}" for k in shown if k in bus.env)
    return f"bench/serve_bus.py (as `lgsp serve`), defaults but {values}; log level info"


def verify_chain(children: Children, bus: Bus) -> tuple[bool, str]:
    """Stop the 2-worker bus (its exchange log flushed) and run ``lgsp audit verify`` on it."""
    code = children.stop(bus.proc, grace=40)
    cmd = [str(BIN / "lgsp"), "audit", "verify", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=bus.env, cwd=ROOT, check=False)
    summary = (done.stdout.strip() or done.stderr.strip())[-600:]
    with contextlib.suppress(ValueError, AttributeError):
        data = json.loads(done.stdout)
        shown = ("ok", "checked", "first_seq", "last_seq", "problem", "problems", "error")
        summary = ", ".join(
            f"{key} {data[key]}" for key in shown if key in data and data[key] not in (None, [])
        )
    if code not in (0, -signal.SIGTERM):
        summary += f" (the bus exited with {code})"
    return done.returncode == 0, summary


def fire_burst(url: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """``SLOW_CALLS`` calls at once from ``bench/loadgen.py --burst``; its BURST figures."""
    cmd = [
        sys.executable, str(BENCH / "loadgen.py"), url, "--burst", str(SLOW_CALLS),
        "--method", "POST", "--body", body.decode(), "--timeout", "60",
        *(arg for k, v in headers.items() for arg in ("-H", f"{k}: {v}")),
    ]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchError("the burst client did not finish within 240 s") from exc
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BURST ")), None)
    if line is None:
        raise BenchError(f"the burst client failed:\n{done.stdout[-1000:]}{done.stderr[-2000:]}")
    data: dict[str, Any] = json.loads(line[len("BURST ") :])
    return data


def run_slow(
    args: argparse.Namespace, run_dir: Path, children: Children, config: Path, port: int
) -> Slow:
    console.print(
        f"slow upstream: {SLOW_CALLS:,} calls at once, each answered after {SLOW_DELAY:g} s...",
        style="dim",
    )
    pool = args.slow_pool or default_pool()
    before = set(children.procs)
    try:
        upstream, _ = python_upstream(children, run_dir, port, delay=SLOW_DELAY)
        body = json.dumps({"record_id": RECORD_ID}).encode()
        # The same burst straight to the upstream: what the client and the machine allow.
        direct = fire_burst(f"{upstream}/hoso/{RECORD_ID}", body, json_headers())
        extra = {"LGSP_HTTP_MAX_CONNECTIONS": str(pool)} if args.slow_pool else {}
        bus = start_bus(children, run_dir, "bus-slow", config, extra=extra)
        url = f"{bus.url}/v1/services/relay-slow/record.status"
        target = Target("slow", url, body, json_headers(bus.token), bus.proc.pid, envelope=True)
        target.check()  # one call first, as every other scenario gets its warm-up
        with RssSampler(bus.proc.pid) as rss:
            data = fire_burst(url, body, target.headers)
        bus_view = summarize_log(bus.log)
        if bus.proc.poll() is not None:
            data["failed"]["bus exited"] = bus.proc.returncode
        return Slow(
            calls=data["calls"], ok=data["ok"], failed=data["failed"],
            last_ok_s=data["last_ok_s"], last_s=data["last_s"], p50_s=data["p50_s"],
            p99_s=data["p99_s"], peak_rss_mb=rss.peak / MB, pool=pool,
            reasons=data.get("reasons", {}), direct_ok=direct["ok"],
            direct_last_s=direct["last_s"], bus_view=bus_view,
        )  # fmt: skip
    except BenchError as exc:
        console.print(f"[red]slow scenario failed:[/] {escape(str(exc))}")
        return Slow(SLOW_CALLS, 0, {}, None, None, 0, 0, 0, pool, failure=str(exc))
    finally:
        for proc in list(children.procs):
            if proc not in before:
                children.stop(proc)


def summarize_log(log: Path) -> list[tuple[str, str]]:
    """What the bus's JSON log says: outcomes of its exchange lines, and its warnings."""
    outcomes: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    with contextlib.suppress(OSError):
        for line in log.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if not isinstance(entry, dict):
                continue
            if entry.get("event") == "exchange":
                outcomes[f"{entry.get('http_status')} {entry.get('error_code') or 'ok'}"] += 1
            elif entry.get("level") in ("warning", "error", "critical"):
                warnings[str(entry.get("event"))[:100]] += 1
    rows = [("bus log: exchanges", ", ".join(f"{k}: {n:,}" for k, n in outcomes.most_common()))]
    rows += [(f"bus log: {n:,} x warning", event) for event, n in warnings.most_common(5)]
    return rows


def default_pool() -> int:
    from bus.settings import Settings

    return Settings.model_fields["http_max_connections"].default  # type: ignore[no-any-return]


# --- the report ----------------------------------------------------------------------------------


def fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def loaded(connections: list[int]) -> list[int]:
    """The connection counts under load (16 and more; else the largest one)."""
    return [c for c in connections if c >= 16] or [max(connections)]


@dataclass
class Goal:
    """One target of the issue: what was measured, and whether it is met (None: not measured)."""

    text: str
    measured: str
    met: bool | None


#: The ratios reported: label, metric (rps, p99), numerator, denominator, format.
RATIOS = (
    ("bus-json / stack-proxy (req/s)", "rps", "bus-json", "stack-proxy", ".2f"),
    ("bus-json / aiohttp-proxy (req/s)", "rps", "bus-json", "aiohttp-proxy", ".2f"),
    ("bus-json / direct (req/s)", "rps", "bus-json", "direct", ".3f"),
    ("bus-json / nginx-proxy (req/s)", "rps", "bus-json", "nginx-proxy", ".3f"),
    ("added median latency: bus-json p50 - direct p50 (ms)", "added", "bus-json", "direct", ".2f"),
    ("bus-json p99 / stack-proxy p99", "p99", "bus-json", "stack-proxy", ".2f"),
    ("bus-json p99 / aiohttp-proxy p99", "p99", "bus-json", "aiohttp-proxy", ".2f"),
    ("bus-soap / bus-json (req/s)", "rps", "bus-soap", "bus-json", ".2f"),
    ("bus-json / bus-soap, by the bus's own CPU per call", "cpu", "bus-json", "bus-soap", ".2f"),
    ("bus-full / bus-json (req/s)", "rps", "bus-full", "bus-json", ".2f"),
    ("2 workers / 1 worker (req/s)", "rps", "bus-json-2w", "bus-json", ".2f"),
    ("stack-proxy / aiohttp-proxy (req/s)", "rps", "stack-proxy", "aiohttp-proxy", ".2f"),
)


def ratio_of(r: Results, metric: str, num: str, den: str, conns: int) -> float | None:
    """``num / den`` of a metric (rps, p99) at ``conns``; for ``added``, p50 ``num - den``."""
    if metric == "added":
        a, b = r.p50(num, conns), r.p50(den, conns)
        return a - b if a is not None and b is not None else None
    get = {"p99": r.p99, "cpu": r.cpu}.get(metric, r.rps)
    return ratio(get(num, conns), get(den, conns))


def ratio_rows(r: Results) -> list[tuple[str, list[str]]]:
    """Ratio name -> one value per connection count (ratios with no value at all left out)."""
    out = []
    for label, metric, num, den, spec in RATIOS:
        values = [ratio_of(r, metric, num, den, c) for c in r.connections]
        if any(v is not None for v in values):
            out.append((label, [fmt(v, spec) for v in values]))
    return out


def added_latency(r: Results, conns: int) -> float | None:
    return ratio_of(r, "added", "bus-json", "direct", conns)


def ratio_goal(
    r: Results, text: str, metric: str, num: str, den: str, conns: list[int], bound: float
) -> Goal:
    """``num / den`` at least ``bound`` (at most, for p99) at every count of ``conns``."""
    values = {c: ratio_of(r, metric, num, den, c) for c in conns}
    if any(v is None for v in values.values()):
        return Goal(text, "not measured", None)
    shown = ", ".join(f"{v:.2f} at {c}" for c, v in values.items())
    met = all(
        v is not None and (v <= bound if metric == "p99" else v >= bound) for v in values.values()
    )
    return Goal(text, shown, met)


#: Ratio targets: group, metric, numerator, denominator, where (connection counts), bound.
RATIO_GOALS = (
    ("throughput", "rps", "bus-json", "stack-proxy", "load", 0.8),
    ("throughput", "rps", "bus-json", "aiohttp-proxy", "load", 0.5),
    ("p99", "p99", "bus-json", "aiohttp-proxy", "every", 3.0),
    ("p99", "p99", "bus-json", "stack-proxy", "every", 3.0),
    ("variants", "rps", "bus-soap", "bus-json", "every", 0.5),
    ("variants", "rps", "bus-full", "bus-json", "every", 0.9),
    ("variants", "rps", "bus-json-2w", "bus-json", "load", 1.4),
)


def targets(r: Results) -> list[Goal]:
    where = {"load": loaded(r.connections), "every": r.connections}
    at = " and ".join(str(c) for c in where["load"]) + " connections"

    def goals(group: str) -> list[Goal]:
        out = []
        for kind, metric, num, den, conns, bound in RATIO_GOALS:
            if kind == group:
                text = (
                    f"{num} p99 ≤ {bound:g} x {den} p99"
                    if metric == "p99"
                    else f"{num} ≥ {bound:g} x {den} (req/s)"
                ) + (f" at {at}" if conns == "load" else " at every connection count")
                out.append(ratio_goal(r, text, metric, num, den, where[conns], bound))
        return out

    out = goals("throughput")
    added = added_latency(r, 1) if 1 in r.connections else None
    out.append(
        Goal(
            "added median latency of bus-json over direct ≤ 1 ms at 1 connection",
            fmt(added, ".2f", " ms"),
            None if added is None else added <= 1.0,
        )
    )
    out += goals("p99")
    slow = r.slow
    if slow is None or slow.failure is not None:
        why = "not measured" if slow is None else f"failed: {(slow.failure or '').splitlines()[0]}"
        out += [Goal(t, why, None) for t in SLOW_TARGETS]
    else:
        failed = ", ".join(f"{k} {v:,}" for k, v in slow.failed.items()) or "none failed"
        all_ok = slow.ok == slow.calls
        out += [
            Goal(SLOW_TARGETS[0], f"{slow.ok:,} of {slow.calls:,} ok; {failed}", all_ok),
            Goal(
                SLOW_TARGETS[1],
                f"last 200 at {fmt(slow.last_ok_s, '.2f', ' s')}",
                all_ok and slow.last_ok_s is not None and slow.last_ok_s <= 3.0,
            ),
            Goal(SLOW_TARGETS[2], f"{slow.peak_rss_mb:.0f} MB", slow.peak_rss_mb < 500),
        ]
    out += goals("variants")
    if r.verify is None:
        out.append(Goal("the exchange log of the 2-worker run verifies", "not measured", None))
    else:
        ok, said = r.verify
        out.append(
            Goal(
                "the exchange log of the 2-worker run verifies (lgsp audit verify)",
                ("verifies: " if ok else "DOES NOT VERIFY: ") + said[:300],
                ok,
            )
        )
    return out


SLOW_TARGETS = (
    f"slow upstream: {SLOW_CALLS:,} concurrent {SLOW_DELAY:g}-s calls all complete with 200",
    "slow upstream: the last one within 3 s",
    "slow upstream: bus peak RSS < 500 MB",
)


def verdict(met: bool | None) -> str:
    return {True: "met", False: "NOT met", None: "not measured"}[met]


TABLE_COLUMNS = (
    "scenario",
    "conns",
    "req/s",
    "p50 ms",
    "p99 ms",
    "CPU s/1k",
    "upstream CPU s/1k",
    "peak RSS MB",
    "errors",
)


def cell_row(cell: Cell | None, scenario: str, conns: int) -> list[str]:
    if cell is None or cell.stats is None:
        why = cell.errors_text() if cell is not None else "not measured"
        return [scenario, str(conns), "-", "-", "-", "-", "-", "-", why]
    s = cell.stats
    return [
        scenario, str(conns), f"{s.rps:,.0f}", f"{s.p50_ms:.2f}", f"{s.p99_ms:.2f}",
        fmt(cell.cpu_per_1k, ".3f"), fmt(cell.upstream_cpu_per_1k, ".3f"),
        fmt(cell.peak_rss_mb, ".0f"), cell.errors_text(),
    ]  # fmt: skip


def print_report(r: Results) -> None:
    table = Table(
        title="scenario x connections",
        caption=escape(f"load: {r.loadgen}; upstream: {r.upstream}"),
    )
    for col in TABLE_COLUMNS:
        table.add_column(col, justify="left" if col in ("scenario", "errors") else "right")
    for name in r.scenarios:
        for conns in r.connections:
            cell = r.cells.get((name, conns))
            bad = cell is None or cell.errors_text() != "0"
            table.add_row(*cell_row(cell, name, conns), style="red" if bad else None)
        table.add_section()
    console.print(table)
    rows = ratio_rows(r)
    if rows:
        ratios = Table(title="ratios")
        ratios.add_column("ratio")
        for conns in r.connections:
            ratios.add_column(f"{conns} conn", justify="right")
        for name, values in rows:
            ratios.add_row(name, *values)
        console.print(ratios)
    for bus, lines in r.bus_logs.items():
        for what, said in lines:
            console.print(
                f"{bus}: {what.removeprefix('bus log: ')}: {escape(said)}", highlight=False
            )
    if r.slow is not None:
        burst = Table(title="slow upstream burst")
        burst.add_column("measure")
        burst.add_column("value")
        for what, said in slow_rows(r.slow):
            burst.add_row(what, escape(said))
        console.print(burst)
    goals = Table(title="targets")
    for col in ("target", "measured", "verdict"):
        goals.add_column(col)
    for t in targets(r):
        style = {True: "green", False: "red", None: "yellow"}[t.met]
        goals.add_row(t.text, escape(t.measured), f"[{style}]{verdict(t.met)}[/]")
    console.print(goals)


def slow_rows(slow: Slow) -> list[tuple[str, str]]:
    """The slow-upstream burst as (measure, value) rows."""
    if slow.failure is not None:
        return [("result", f"FAILED: {slow.failure}")]
    failed = ", ".join(f"{k}: {v:,}" for k, v in slow.failed.items()) or "none"
    pool = f"LGSP_HTTP_MAX_CONNECTIONS={slow.pool}"
    return [
        ("calls fired at once", f"{slow.calls:,}, upstream answers after {SLOW_DELAY:g} s"),
        ("bus set-up", f"1 worker, {pool}; relay-slow: max_in_flight 100000, timeout 10 s"),
        ("completed with 200", f"{slow.ok:,}"),
        ("failed", failed),
        ("last 200 after", fmt(slow.last_ok_s, ".2f", " s")),
        ("last reply after", fmt(slow.last_s, ".2f", " s")),
        ("latency of the 200s, p50 / p99", f"{slow.p50_s:.2f} s / {slow.p99_s:.2f} s"),
        ("bus peak RSS", f"{slow.peak_rss_mb:.0f} MB"),
        (
            "same burst straight to the upstream (no bus)",
            f"{fmt(slow.direct_ok, ',')} ok, last reply after "
            f"{fmt(slow.direct_last_s, '.2f', ' s')} (the client's and the machine's floor)",
        ),
        *(("failed because", f"{n:,} x {why}") for why, n in slow.reasons.items()),
        *slow.bus_view,
    ]


def md_table(head: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    align = ["---:" if i in right else "---" for i in range(len(head))]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


NOTES = re.compile(r"<!-- notes -->.*?<!-- /notes -->", re.DOTALL)
EMPTY_NOTES = "<!-- notes -->\n(Analysis: kept by bench/run.py across runs.)\n<!-- /notes -->"


def kept_notes(path: Path) -> str:
    with contextlib.suppress(OSError):
        found = NOTES.search(path.read_text())
        if found is not None:
            return found.group(0)
    return EMPTY_NOTES


def markdown(r: Results, args: argparse.Namespace, chart: Path | None, out: Path) -> str:
    rows = [cell_row(r.cells.get((s, c)), s, c) for s in r.scenarios for c in r.connections]
    parts = [
        "# Benchmark results",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `{command()}` "
        f"({args.duration:g} s measured after a {args.warmup:g} s warm-up per cell; "
        "cells interleaved, for each connection count every scenario in turn"
        + (f"; {args.rounds} rounds, the round of median req/s shown" if args.rounds > 1 else "")
        + ").",
        "",
        "## Machine",
        "",
        *[f"- {line}" for line in machine(r.loadgen)],
        f"- upstream: {r.upstream}",
    ]
    if r.bus_settings:
        parts.append(f"- bus: {r.bus_settings}")
    parts += [
        "",
        "## Results",
        "",
        "req/s over the measured window; p50/p99 as the load generator saw them; CPU s/1k: "
        "CPU seconds (user + system) of the process tree under test per 1,000 replies; "
        "upstream CPU s/1k: the same for the upstream behind it (nginx; for bus-soap the NGSP "
        "and population mocks), on the same cores; peak RSS of the tree under test, sampled "
        "every 100 ms; errors: replies ≥ 400 and requests without a reply.",
        "",
        md_table(TABLE_COLUMNS, rows, {1, 2, 3, 4, 5, 6, 7}),
        "",
    ]
    if r.failures:
        parts += ["Not measured:", ""]
        parts += [f"- {name}: {why.splitlines()[0]}" for name, why in r.failures.items()]
        parts.append("")
    ratio_list = ratio_rows(r)
    if ratio_list:
        head = ["ratio", *[f"{c} conn" for c in r.connections]]
        parts += [
            "## Ratios",
            "",
            md_table(head, [[n, *v] for n, v in ratio_list], set(range(1, len(head)))),
            "",
        ]
    if r.bus_logs:
        log_rows = [
            [name, what.removeprefix("bus log: "), value]
            for name, rows in r.bus_logs.items()
            for what, value in rows
        ]
        parts += [
            "## What the buses logged",
            "",
            "Outcomes of the exchange lines (one per call, warm-ups and checks included) and "
            "warnings, from each bus's log:",
            "",
            md_table(["scenario", "what", "count / event"], log_rows, set()),
            "",
        ]
    if r.slow is not None:
        rows_ = [[name, value.replace("\n", " ")] for name, value in slow_rows(r.slow)]
        parts += ["## Slow upstream", "", md_table(["measure", "value"], rows_, set()), ""]
    parts += ["## Targets", ""]
    parts.append(
        md_table(
            ["target", "measured", "verdict"],
            [[t.text, t.measured, f"**{verdict(t.met)}**"] for t in targets(r)],
            set(),
        )
    )
    parts.append("")
    if chart is not None:
        rel = os.path.relpath(chart, out.parent)
        parts += [f"![throughput and p99 per scenario]({rel})", ""]
    parts += ["## Notes", "", kept_notes(out), ""]
    return "\n".join(parts)


def chart_matrix(r: Results, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s for s in r.scenarios if any(r.cell(s, c) for c in r.connections)]
    if not names:
        return None
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8.5))
    width = 0.8 / len(names)
    xs = range(len(r.connections))
    for i, name in enumerate(names):
        offsets = [x - 0.4 + width * (i + 0.5) for x in xs]
        rps = [r.rps(name, c) or 0 for c in r.connections]
        p99 = [r.p99(name, c) or 0 for c in r.connections]
        bars = top.bar(offsets, rps, width, label=name)
        top.bar_label(bars, [f"{v:,.0f}" if v else "" for v in rps], fontsize=6, rotation=90)
        bars = bottom.bar(offsets, p99, width, label=name)
        bottom.bar_label(bars, [f"{v:.1f}" if v else "" for v in p99], fontsize=6, rotation=90)
    for ax, label in ((top, "requests/s (log)"), (bottom, "p99 latency, ms (log)")):
        ax.set_yscale("log")
        low, high = ax.get_ylim()
        ax.set_ylim(low, high * 4)  # room for the value labels
        ax.set_ylabel(label)
        ax.set_xticks(list(xs), [f"{c} connection{'s' if c > 1 else ''}" for c in r.connections])
        ax.grid(axis="y", which="both", alpha=0.3)
    top.set_title("Throughput per scenario (higher is better)")
    bottom.set_title("p99 latency per scenario (lower is better)")
    handles, labels = top.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(names), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --- machine -------------------------------------------------------------------------------------


def pkg_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def nginx_version() -> str:
    if not nginx_installed():
        return "not installed"
    done = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True, check=False)
    return (done.stderr or done.stdout).strip().removeprefix("nginx version: ")


def wrk_version() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        return "not installed"
    done = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    first = (done.stdout or done.stderr).strip().splitlines()
    return first[0].split(" Copyright")[0] if first else "unknown"


def machine(loadgen: str) -> list[str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    packages = (
        "uvicorn",
        "fastapi",
        "starlette",
        "httpx",
        "httpx-aiohttp",
        "aiohttp",
        "uvloop",
        "httptools",
    )
    return [
        f"CPU: {cpu}; {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}); memory {mem}",
        f"kernel: {platform.system()} {platform.release()}; Python {platform.python_version()}",
        "packages: " + ", ".join(f"{p} {pkg_version(p)}" for p in packages),
        f"nginx: {nginx_version()}; wrk: {wrk_version()}",
        f"load generator: {loadgen}",
    ]


def command() -> str:
    exe = Path(sys.executable)
    with contextlib.suppress(ValueError):
        exe = exe.relative_to(Path.cwd())
    script = Path(sys.argv[0])
    with contextlib.suppress(ValueError):
        script = script.resolve().relative_to(Path.cwd())
    return shlex.join([str(exe), str(script), *sys.argv[1:]])


# --- soak ----------------------------------------------------------------------------------------


@dataclass
class Chunk:
    began: float  # time.monotonic()
    ended: float
    calls_before: int
    stats: Stats

    @property
    def calls_after(self) -> int:
        return self.calls_before + self.stats.requests


CHUNK_COLUMNS = ("run", "calls so far", "req/s", "p50 ms", "p99 ms", "RSS MB", "errors")


def calls_at(chunks: list[Chunk], moment: float) -> float:
    """Calls done at ``moment``, interpolated linearly within a load generator run."""
    done = 0.0
    for chunk in chunks:
        if moment < chunk.began:
            return done
        if moment <= chunk.ended:
            share = (moment - chunk.began) / (chunk.ended - chunk.began or 1.0)
            return chunk.calls_before + share * chunk.stats.requests
        done = chunk.calls_after
    return done


def run_soak(args: argparse.Namespace, run_dir: Path, children: Children) -> int:
    goal = args.soak
    use_nginx = not args.no_nginx and nginx_installed()
    loadgen = LoadGen(args.loadgen, run_dir, args.threads)
    if use_nginx:
        upstream, _ = nginx_upstream(children, run_dir)
        upstream_text = f"{nginx_version()} (1 worker, return 200)"
    else:
        upstream, _ = python_upstream(children, run_dir)
        upstream_text = "bench/upstream.py (uvicorn, raw ASGI)"
    config = run_dir / "bus.yaml"
    config.write_text(bus_yaml(upstream, f"http://127.0.0.1:{free_port()}", None))
    bus = start_bus(children, run_dir, "bus-json", config)
    body = json.dumps({"record_id": RECORD_ID}).encode()
    url = f"{bus.url}/v1/services/relay/record.status"
    target = Target("bus-json", url, body, json_headers(bus.token), bus.proc.pid, envelope=True)
    target.check()
    if args.warmup > 0:
        loadgen.run(target, SOAK_CONNECTIONS, args.warmup)
    chunks: list[Chunk] = []
    total, rate = 0, 0.0
    console.print(f"soak: bus-json at {SOAK_CONNECTIONS} connections until {goal:,} calls")
    cpu_before = tree_cpu_seconds(bus.proc.pid)
    with RssSampler(bus.proc.pid, interval=1.0) as rss:
        while total < goal:
            # a 10-s probe first, then runs of up to 30 s sized to end near the goal
            seconds = 10.0 if not rate else min(30.0, max(2.0, math.ceil((goal - total) / rate)))
            began = time.monotonic()
            stats = loadgen.run(target, SOAK_CONNECTIONS, seconds)
            chunks.append(Chunk(began, time.monotonic(), total, stats))
            total += stats.requests
            rate = stats.rps
            if bus.proc.poll() is not None:
                raise BenchError(f"the bus exited ({bus.proc.returncode}):\n{tail(bus.log)}")
            console.print(
                f"  {total:>10,} calls  {stats.rps:8,.0f} req/s  p99 {stats.p99_ms:6.2f} ms  "
                f"rss {rss.samples[-1][1] / MB:6.1f} MB  errors {stats.error_count:,}",
                highlight=False,
            )
            if stats.requests == 0:
                raise BenchError("the bus answered no call in a whole load generator run")
    cpu = tree_cpu_seconds(bus.proc.pid) - cpu_before
    points = [(calls_at(chunks, t), b / MB) for t, b in rss.samples if t <= chunks[-1].ended]
    warm_at = 0.1 * total
    warm = next((mb for calls, mb in points if calls >= warm_at), points[0][1])
    end = points[-1][1]
    growth = (end - warm) / warm * 100
    errors = sum(c.stats.error_count for c in chunks)
    seconds = sum(c.stats.seconds for c in chunks)
    summary = [
        ("calls", f"{total:,} in {len(chunks)} load generator runs, {seconds:,.0f} s"),
        ("mean throughput", f"{total / seconds:,.0f} req/s"),
        ("errors", f"{errors:,}"),
        ("CPU per 1,000 calls", f"{cpu / total * 1000:.3f} s"),
        (f"RSS after warm-up (at {warm_at:,.0f} calls)", f"{warm:.1f} MB"),
        ("RSS at the end", f"{end:.1f} MB"),
        ("peak RSS", f"{rss.peak / MB:.1f} MB"),
        ("RSS growth", f"{growth:+.1f} % (target < 10 %: {'met' if growth < 10 else 'NOT met'})"),
    ]
    table = Table(title=f"soak: bus-json, {SOAK_CONNECTIONS} connections")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in summary:
        table.add_row(name, value)
    console.print(table)
    out = Path(args.soak_out)
    chart = out.parent / "soak.png"
    chart_soak(points, chunks, chart)
    chunk_rows = [
        [str(i + 1), f"{c.calls_after:,}", f"{c.stats.rps:,.0f}", f"{c.stats.p50_ms:.2f}",
         f"{c.stats.p99_ms:.2f}", f"{rss_at(rss.samples, c.ended) / MB:.1f}",
         f"{c.stats.error_count:,}"]
        for i, c in enumerate(chunks)
    ]  # fmt: skip
    text = [
        "# Soak results",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `{command()}`: bus-json "
        f"(`relay/record.status`) at {SOAK_CONNECTIONS} connections until {goal:,} calls, "
        "the RSS of the bus's process tree (its exchange log writer included) sampled every "
        "second.",
        "",
        "## Machine",
        "",
        *[f"- {line}" for line in machine(loadgen.describe())],
        f"- upstream: {upstream_text}",
        f"- bus: {bus_settings_text(bus)}",
        "",
        "## Summary",
        "",
        md_table(["measure", "value"], [list(row) for row in summary], {1}),
        "",
        f"![RSS and throughput over calls]({os.path.relpath(chart, out.parent)})",
        "",
        "## Throughput over time",
        "",
        md_table(CHUNK_COLUMNS, chunk_rows, set(range(len(CHUNK_COLUMNS)))),
        "",
        "## Notes",
        "",
        kept_notes(out),
        "",
    ]  # fmt: skip
    out.write_text("\n".join(text))
    console.print(f"wrote {out} and {chart}")
    return 0 if errors == 0 else 1


def rss_at(samples: list[tuple[float, int]], moment: float) -> int:
    """The last RSS sample taken at or before ``moment`` (the first one if none was)."""
    return next((b for t, b in reversed(samples) if t <= moment), samples[0][1])


def chart_soak(points: list[tuple[float, float]], chunks: list[Chunk], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    top.plot([c for c, _ in points], [mb for _, mb in points])
    top.set_ylabel("bus RSS, MB")
    top.set_ylim(0, max(mb for _, mb in points) * 1.15)  # a flat line is not drawn on the frame
    top.set_title("bus-json soak: RSS over calls")
    top.grid(alpha=0.3)
    bottom.step([c.calls_after for c in chunks], [c.stats.rps for c in chunks], where="pre")
    bottom.set_ylabel("req/s per load generator run")
    bottom.set_xlabel("calls")
    bottom.set_ylim(bottom=0)
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- main ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="scenarios: " + ", ".join(SCENARIOS),
    )
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds per cell")
    parser.add_argument("--connections", default="1,16,64", help="comma-separated counts")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset")
    parser.add_argument(
        "--loadgen",
        choices=("wrk", "python"),
        default="wrk" if shutil.which("wrk") else "python",
        help="default: wrk if installed",
    )
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (at most conns)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="measure every cell N times, report the median"
    )
    parser.add_argument(
        "--no-nginx", action="store_true", help="python upstream, and no nginx-proxy scenario"
    )
    parser.add_argument("--out", default=str(BENCH / "RESULTS.md"), help="markdown results")
    parser.add_argument("--keep", metavar="DIR", help="run in DIR (new) and keep it: logs, dbs")
    parser.add_argument(
        "--slow-pool",
        type=int,
        default=SLOW_CALLS + 1000,
        help="LGSP_HTTP_MAX_CONNECTIONS of the slow scenario's bus (0: the bus's default)",
    )
    parser.add_argument("--soak", type=int, metavar="N", help="soak: bus-json until N calls")
    parser.add_argument("--soak-out", default=str(BENCH / "SOAK.md"), help="soak results")
    args = parser.parse_args(argv)
    try:
        args.connections = [int(c) for c in args.connections.split(",") if c.strip()]
    except ValueError:
        parser.error("--connections: comma-separated integers, e.g. 1,16,64")
    if not args.connections or min(args.connections) < 1:
        parser.error("--connections: at least one count, each at least 1")
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    if args.loadgen == "wrk" and shutil.which("wrk") is None:
        parser.error("--loadgen wrk: wrk is not installed")
    if args.duration <= 0 or args.warmup < 0 or args.rounds < 1 or args.threads < 1:
        parser.error("--duration must be > 0, --warmup >= 0, --rounds and --threads >= 1")
    return args


def raise_fd_limit() -> None:
    """The slow burst needs 2 descriptors per call in the bus (one in, one to the upstream):
    raise the soft limit that the children inherit, up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * SLOW_CALLS + 2000
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < wanted:
            console.print(f"[yellow]ulimit -n is {new}: the slow burst may run out of files[/]")


def interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.keep:
        run_dir = Path(args.keep).resolve()
        run_dir.mkdir(parents=True, exist_ok=False)
    else:
        run_dir = Path(tempfile.mkdtemp(prefix="lgsp-bench-"))
    children = Children()
    raise_fd_limit()
    # SIGTERM as Ctrl-C: unwind, so that the finally below stops every child.
    signal.signal(signal.SIGTERM, interrupted)
    failed = True
    try:
        console.print(f"run directory: {run_dir}", style="dim")
        if args.soak:
            code = run_soak(args, run_dir, children)
        else:
            results = run_matrix(args, run_dir, children)
            print_report(results)
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            chart = chart_matrix(results, out.parent / "results.png")
            out.write_text(markdown(results, args, chart, out))
            console.print(f"wrote {out}" + (f" and {chart}" if chart else ""))
            code = 0
        failed = False
        return code
    except BenchError as exc:
        console.print(f"[red]benchmark failed:[/] {escape(str(exc))}")
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130
    finally:
        children.stop_all()
        if args.keep or failed:
            console.print(f"run directory kept: {run_dir}", style="dim")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
