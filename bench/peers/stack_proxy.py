"""The benchmark's ``stack-proxy`` peer: the bus's own stack with nothing of the bus in the path.

A FastAPI app whose one route is served as the bus serves its call route: by a
``bus.middleware.FrontRoutedApp``, in front of FastAPI's own middleware and router. It
forwards every request (method, path and query, body, end-to-end headers) to one upstream
through ONE shared ``httpx.AsyncClient`` built by
``bus.gateway.make_http_client`` (the bus's client and transport, with default settings), and
served by ``bus.cli.run_gateway``: uvicorn with the very options ``lgsp serve`` uses (uvloop
and httptools, no access log). The difference between this proxy and the bus's JSON scenario is
what the bus's pipeline costs (authentication, access check, rate limit, validation, the
adapter, retry policy, exchange log, access line); ``bench/run.py`` reports it as a ratio.

Run from the repository root (``bench/run.py`` does it on a free port)::

    .venv/bin/python bench/peers/stack_proxy.py --port 8083 --upstream http://127.0.0.1:8081
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from hop_by_hop import HOP_BY_HOP
from starlette.requests import Request
from starlette.responses import Response

from bus.app import tune_runtime
from bus.cli import run_gateway
from bus.gateway import make_http_client
from bus.middleware import FrontRoutedApp
from bus.settings import Settings

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def create(upstream: str, settings: Settings) -> FastAPI:
    upstream = upstream.rstrip("/")
    client: httpx.AsyncClient | None = None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal client
        client = make_http_client(settings)
        tune_runtime(settings)  # as the bus does: the comparison is of the work per call
        try:
            yield
        finally:
            await client.aclose()

    async def forward(request: Request) -> Response:
        assert client is not None, "the app was not started"
        headers = {k: v for k, v in request.headers.items() if k not in HOP_BY_HOP}
        url = upstream + request.url.path
        if request.url.query:
            url += "?" + request.url.query
        reply = await client.request(
            request.method, url, content=await request.body(), headers=headers
        )
        return Response(
            reply.content,
            status_code=reply.status_code,
            media_type=reply.headers.get("content-type", "application/json"),
        )

    return FrontRoutedApp(
        "/{path:path}", METHODS, forward, lifespan=lifespan, redirect_slashes=False
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:8081")
    args = parser.parse_args()
    settings = Settings(host=args.host, port=args.port, workers=1)
    run_gateway(settings, create(args.upstream, settings), "stack_proxy:create")


if __name__ == "__main__":
    main()
