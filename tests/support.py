"""Adapters and helpers shared by the tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
from fastapi import FastAPI
from pydantic import Field

from adapters.base import Adapter, Context, operation
from bus.errors import CATALOGUE, BusError
from schemas.base import CanonicalModel


class RaiseRequest(CanonicalModel):
    code: str = Field(description="A catalogue code to raise, or 'crash' for a RuntimeError.")
    retry_after: float | None = None


class Nothing(CanonicalModel):
    pass


ERROR_CLASSES: dict[str, type[BusError]] = {}


def _collect(cls: type[BusError]) -> None:
    ERROR_CLASSES.setdefault(cls.code, cls)
    for sub in cls.__subclasses__():
        _collect(sub)


_collect(BusError)
assert set(ERROR_CLASSES) == set(CATALOGUE)

SECRET_IN_CRASH = "db-password=hunter2-very-secret"


class FaultyAdapter(Adapter):
    """Raises whatever the caller asks for: drives every error code through the real route."""

    requires_upstream = False

    @operation("raise", input=RaiseRequest, output=Nothing)
    async def raise_(self, request: RaiseRequest, ctx: Context) -> Nothing:
        """Raise the requested error."""
        if request.code == "crash":
            raise RuntimeError(SECRET_IN_CRASH)
        raise ERROR_CLASSES[request.code](
            f"raised on request: {request.code}", retry_after=request.retry_after
        )

    @operation("wrong-output", input=Nothing, output=RaiseRequest)
    async def wrong_output(self, request: Nothing, ctx: Context) -> Any:
        """Return something that is not the declared output model."""
        return {"unexpected": True}


class SpyAdapter(Adapter):
    """Remembers the context of every call, to check what the bus hands adapters."""

    requires_upstream = False
    contexts: ClassVar[list[Context]] = []

    @operation("spy", input=Nothing, output=Nothing)
    async def spy(self, request: Nothing, ctx: Context) -> Nothing:
        """Remember the context."""
        type(self).contexts.append(ctx)
        return Nothing()


class StepClock:
    """A clock that moves only when a test sets ``t``."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)

    def monotonic(self) -> float:
        return self.t


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan started, and a client that talks to it in process."""
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://bus") as client,
    ):
        yield client
