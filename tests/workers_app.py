"""An app for tests/test_workers.py: every request is answered with the serving process's id."""

from __future__ import annotations

import os

from starlette.types import ASGIApp, Receive, Scope, Send


def create() -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[-1]  # startup or shutdown
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        body = str(os.getpid()).encode()
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def broken() -> ASGIApp:
    """A factory that fails in every worker, as a broken deployment would."""
    raise RuntimeError("this app cannot be built")
