"""Several gateway worker processes on one address, each listening on a socket of its own.

uvicorn's own supervisor binds one socket and shares it between its workers. Whichever worker
wakes first accepts every connection waiting (asyncio accepts up to the whole backlog at once),
so a client that opens its keep-alive connections together often lands all of them on one
worker, which does all the work while the other idles: 32 connections opened together went
32/0 in two tries of five, and ``bench/run.py``'s two workers served 0.96-1.46x one worker's
calls from run to run.

Here each worker binds its own socket to the address with ``SO_REUSEPORT``, and the kernel
spreads new connections over the sockets by a hash of each connection's addresses (nginx's
``reuseport``). Only Linux balances such sockets; ``lgsp serve`` keeps uvicorn's supervisor
elsewhere (:func:`balanced`).

The parent starts the workers and keeps them running. A worker that dies is started again,
with a growing delay if it keeps dying soon after starting; one that failed while starting, or
kept dying so, stops everything with exit code 3 (the same failure would repeat), as uvicorn
does for the former. SIGINT or SIGTERM to the parent is passed on once to each worker, which
stops accepting, finishes its calls in flight within ``LGSP_GRACE_SECONDS`` and exits. The
workers are in a process group of their own, so a Ctrl-C at the terminal reaches them only
through the parent, as one signal: uvicorn takes a second signal as "stop now". A worker whose
parent dies (even by SIGKILL) gets SIGTERM from the kernel and stops.

When one worker stops alone (it died and is being replaced), the connections waiting in its
socket's queue, not yet accepted, are reset: the kernel does not move them to the other sockets.
Their callers see a reset connection, as when a server restarts; calls already accepted finish.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

import uvicorn

from bus.logging import get_logger

__all__ = ["STARTUP_FAILURE", "balanced", "claim_port", "listening_socket", "serve_workers"]

#: A worker's exit code when it could not start serving (uvicorn's own).
STARTUP_FAILURE = 3
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

log = get_logger()


def balanced() -> bool:
    """Whether this platform spreads connections over ``SO_REUSEPORT`` sockets (Linux)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _family(host: str) -> socket.AddressFamily:
    """IPv6 for an address with a colon, else IPv4 (a name binds its IPv4 address), as uvicorn
    chooses for its own socket."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def claim_port(host: str, port: int) -> int:
    """The port the workers will share, checked free: bound once without ``SO_REUSEPORT``, so
    that a port another program (or another gateway, whose sockets would admit ours into their
    group) listens on is refused with ``OSError``, and port 0 becomes one chosen port."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        chosen: int = probe.getsockname()[1]
        return chosen


def listening_socket(host: str, port: int, backlog: int) -> socket.socket:
    """A TCP socket listening on ``host:port`` with ``SO_REUSEPORT``, one per worker."""
    # IPPROTO_TCP: asyncio sets TCP_NODELAY only on accepted sockets of that protocol.
    sock = socket.socket(_family(host), socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def _follow_parent(parent: int) -> None:
    """SIGTERM this process when its parent dies, however it dies: a worker must not go on
    serving the port with no one to stop it (Linux's ``PR_SET_PDEATHSIG``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


def _worker(options: dict[str, Any], parent: int) -> None:
    """One worker process: its own socket, then uvicorn serving the app ``options`` name."""
    os.setpgrp()  # signals come from the parent only (see the module docstring)
    _follow_parent(parent)
    config = uvicorn.Config(**options)
    try:
        sock = listening_socket(config.host, config.port, config.backlog)
    except OSError as exc:
        log.error("worker cannot listen", host=config.host, port=config.port, error=str(exc))
        sys.exit(STARTUP_FAILURE)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(STARTUP_FAILURE)


@dataclass
class _Slot:
    """One worker's place: its current process, and how it has been dying."""

    process: BaseProcess
    started: float
    quick_deaths: int = 0  # in a row, each within ``quick_seconds`` of its start
    restart_at: float | None = None  # dead, to be started again then


def serve_workers(
    count: int,
    options: dict[str, Any],
    grace: float,
    *,
    quick_seconds: float = 10.0,
    give_up_after: int = 5,
) -> int:
    """Run ``count`` workers until SIGINT or SIGTERM; the exit code for ``lgsp serve``.

    ``options`` are ``uvicorn.Config``'s, with ``host``, ``port`` and ``backlog``, and ``app``
    an import string of an app factory that each worker calls (``factory=True``). A worker that
    dies is started again at once; one that dies again within ``quick_seconds`` of its start
    waits 1, 2, 4... s first, and after ``give_up_after`` such deaths in a row everything stops
    with exit code 3, as when a worker fails while starting: a crash loop is reported, not kept
    up."""
    spawn = multiprocessing.get_context("spawn")
    stop = threading.Event()

    def start() -> BaseProcess:
        process = spawn.Process(target=_worker, args=(options, os.getpid()), name="lgsp-worker")
        process.start()
        return process

    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    host = options["host"]
    try:
        port = claim_port(host, options["port"])
    except OSError as exc:
        log.error("cannot listen", host=host, port=options["port"], error=str(exc))
        return STARTUP_FAILURE
    options = {**options, "port": port}
    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    exit_code = 0
    slots: list[_Slot] = []
    try:
        slots.extend(_Slot(start(), time.monotonic()) for _ in range(count))
        log.info("workers started", workers=[s.process.pid for s in slots], host=host, port=port)
        while not stop.wait(0.5):
            now = time.monotonic()
            for slot in slots:
                if slot.restart_at is not None:
                    if now >= slot.restart_at:
                        slot.process, slot.started, slot.restart_at = start(), now, None
                    continue
                code, pid = slot.process.exitcode, slot.process.pid
                if code is None:
                    continue
                quick = now - slot.started < quick_seconds
                slot.quick_deaths = slot.quick_deaths + 1 if quick else 1
                if code == STARTUP_FAILURE or slot.quick_deaths >= give_up_after:
                    log.error("a worker cannot start; stopping", pid=pid, code=code)
                    exit_code = STARTUP_FAILURE
                    stop.set()
                    break
                delay = 0.0 if slot.quick_deaths == 1 else float(2 ** (slot.quick_deaths - 2))
                log.warning("a worker died; starting another", pid=pid, code=code, after=delay)
                slot.restart_at = now + delay
    finally:
        for slot in slots:
            if slot.process.exitcode is None and slot.process.pid is not None:
                os.kill(slot.process.pid, signal.SIGTERM)
        # a worker's calls get ``grace``, then its delivery worker as long again to finish
        deadline = time.monotonic() + 2 * grace + 15
        for slot in slots:
            slot.process.join(max(0.0, deadline - time.monotonic()))
            if slot.process.exitcode is None:
                log.warning("a worker did not stop in time; killing it", pid=slot.process.pid)
                slot.process.kill()
                slot.process.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return exit_code
