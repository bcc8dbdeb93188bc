"""The benchmark's ``aiohttp-proxy`` peer: the practical ceiling of one Python HTTP hop.

A minimal aiohttp web server (on uvloop, like the bus's uvicorn) that forwards every request,
whatever its method and path, to one upstream through a single shared ``aiohttp.ClientSession``
and returns the upstream's reply: method, path and query, body and the end-to-end headers go
up; status, body and content type come back. No parsing, no validation, no logging: whatever a
gateway does on top of this costs throughput, so ``bench/run.py`` reports the bus's figures as
ratios to this one. Its client pool has the bus's default size (``Settings.http_max_connections``).

Run from the repository root (``bench/run.py`` does it on a free port)::

    .venv/bin/python bench/peers/aiohttp_proxy.py --port 8082 --upstream http://127.0.0.1:8081
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from hop_by_hop import HOP_BY_HOP

POOL_SIZE = 200  # the bus's default Settings.http_max_connections
SESSION = web.AppKey("session", aiohttp.ClientSession)


def make_app(upstream: str) -> web.Application:
    upstream = upstream.rstrip("/")

    async def session_context(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=POOL_SIZE, keepalive_timeout=30)
        async with aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar()
        ) as session:
            app[SESSION] = session
            yield

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with request.app[SESSION].request(
            request.method, upstream + request.path_qs, data=body or None, headers=headers
        ) as reply:
            content = await reply.read()
            return web.Response(
                body=content,
                status=reply.status,
                headers={"Content-Type": reply.headers.get("Content-Type", "application/json")},
            )

    app = web.Application()
    app.cleanup_ctx.append(session_context)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:8081")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency of the bus on Linux
        loop = asyncio.new_event_loop()
    else:
        loop = uvloop.new_event_loop()
    web.run_app(
        make_app(args.upstream),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        backlog=2048,  # uvicorn's default, as the bus and the stack proxy get
        loop=loop,
    )


if __name__ == "__main__":
    main()
