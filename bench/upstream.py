"""The benchmark's Python upstream: the same fixed JSON reply to every request, optionally late.

``bench/run.py`` uses nginx as the fixed-reply upstream when it is installed (or ``--no-nginx``
is not given) and this server otherwise; it always uses this one, with ``--delay 1``, for the
slow-upstream scenario. Every method and path gets ``200`` with
:data:`relay.UPSTREAM_REPLY`, the reply the ``bench-relay`` adapter reads; the request body, if
any, is read and dropped. With ``--delay S`` each reply is sent ``S`` seconds after the request
arrived (a sleep, so thousands of requests wait at once).

It is a raw ASGI app served by uvicorn (uvloop and httptools), without access log, with a large
accept backlog so that a burst of thousands of connections is not refused::

    .venv/bin/python bench/upstream.py --port 8081 [--delay 1]
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from relay import UPSTREAM_REPLY  # bench/ is on sys.path: this file is run as a script

HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(UPSTREAM_REPLY)).encode()),
]


def make_app(delay: float) -> Any:
    """The ASGI app: drain the request, wait ``delay`` seconds if any, send the fixed reply."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":  # lifespan is off; nothing else is expected
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        if delay > 0:
            await asyncio.sleep(delay)
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": UPSTREAM_REPLY})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each reply")
    args = parser.parse_args()
    import uvicorn

    uvicorn.run(
        make_app(args.delay),
        host=args.host,
        port=args.port,
        access_log=False,
        log_level="warning",
        lifespan="off",
        backlog=16384,
        timeout_keep_alive=60,
    )


if __name__ == "__main__":
    main()
