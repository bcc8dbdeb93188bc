"""Run the national platform mocks together, each on its own loopback port.

NGSP listens on the base port and forwards ``/dancu/1.0/...`` to the population database mock
on the next port, over real HTTP, as the real NGSP fronts the national services. Sockets are
bound before the apps are built, so every port (0 = any free one) is known in advance, and the
servers run in a background thread with their own event loop: ``lgsp mocks serve`` and the
end-to-end tests use the same :class:`MockStack`.

Start-up settings come from ``MockStack(ngsp=..., population=...)``; for a mock whose settings
are ``None`` these environment variables are read instead (unset or empty: the default), so a
stack started by ``lgsp mocks serve`` or inside a bus process can be tuned without code:

=====================================  =================================================
``LGSP_MOCK_NGSP_EXPIRES_IN``          NGSP token lifetime in seconds (default 3600)
``LGSP_MOCK_NGSP_THROTTLE_PER_MINUTE`` NGSP requests per consumer per minute (default 600)
``LGSP_MOCK_SEED``                     the population mock's seed (default 2026)
``LGSP_MOCK_FAULTS_NGSP``              NGSP's start-up fault rules (JSON, see ``mocks.faults``)
``LGSP_MOCK_FAULTS_POPULATION``        the population mock's start-up fault rules
``LGSP_MOCK_FAULTS``                   rules for every mock, after its own
=====================================  =================================================

A value that is not valid stops :meth:`MockStack.start` with a ``ValueError`` naming the
variable. The fault variables are read by each mock's ``create_app``, the others here.

The mocks write no access log: uvicorn's ``access_log=False`` is not enough in a process whose
logging the bus configured, because ``bus.logging`` hands ``uvicorn.access`` to the root
handler (``propagate = True``) and uvicorn decides to log per connection from
``hasHandlers()``, so every mock request would be logged as the bus's own traffic. ``start``
therefore disables the ``uvicorn.access`` logger (process-wide: a bus served by uvicorn in the
same process loses its access lines too) and ``stop`` gives it back as it was.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, ValidationError

from mocks.dvcqg import DvcqgSettings
from mocks.dvcqg import create_app as create_dvcqg
from mocks.edoc import EdocSettings
from mocks.edoc import create_app as create_edoc
from mocks.ngsp import NgspSettings
from mocks.ngsp import create_app as create_ngsp
from mocks.paygov import PaygovSettings
from mocks.paygov import create_app as create_paygov
from mocks.population import PopulationSettings
from mocks.population import create_app as create_population
from mocks.tax import TaxSettings
from mocks.tax import create_app as create_tax

__all__ = ["DEMO_CONSUMER_KEY", "DEMO_CONSUMER_SECRET", "ENV_SETTINGS", "MockStack"]

#: The NGSP consumer the mocks accept by default (the province's credentials in the demo).
DEMO_CONSUMER_KEY = "lgsp-demo-key"
DEMO_CONSUMER_SECRET = "lgsp-demo-secret"  # noqa: S105 - a mock's published demo credential

_S = TypeVar("_S", bound=BaseModel)

#: Environment variables read for a mock whose settings are not given: mock -> {variable: field}.
ENV_SETTINGS: dict[str, dict[str, str]] = {
    "ngsp": {
        "LGSP_MOCK_NGSP_EXPIRES_IN": "expires_in",
        "LGSP_MOCK_NGSP_THROTTLE_PER_MINUTE": "throttle_per_minute",
    },
    "population": {"LGSP_MOCK_SEED": "seed"},
    "paygov": {"LGSP_MOCK_PAYGOV_CHECKSUM": "checksum"},
    "dvcqg": {},
    "edoc": {},
    "tax": {},
}

#: The mocks in port order: NGSP on the base port, then one port each.
ORDER = ("ngsp", "population", "paygov", "dvcqg", "edoc", "tax")


def _from_env(model: type[_S], mock: str, environ: Mapping[str, str]) -> _S:
    """``model``'s defaults, but for the fields that ``ENV_SETTINGS[mock]`` variables set."""
    variables = ENV_SETTINGS[mock]
    values: dict[str, Any] = {
        name: environ[variable].strip()
        for variable, name in variables.items()
        if environ.get(variable, "").strip()
    }
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        named = {name: variable for variable, name in variables.items()}
        problems = []
        for error in exc.errors(include_url=False):
            name = str(error["loc"][0]) if error["loc"] else ""
            problems.append(f"{named.get(name, name)}: {error['msg']}")
        raise ValueError(
            "invalid mock settings in the environment: " + "; ".join(problems)
        ) from exc


@dataclass
class MockStack:
    """NGSP and the population mock on loopback; ``urls`` and ``apps`` once started."""

    host: str = "127.0.0.1"
    base_port: int = 0
    ngsp: NgspSettings | None = None
    population: PopulationSettings | None = None
    paygov: PaygovSettings | None = None
    dvcqg: DvcqgSettings | None = None
    edoc: EdocSettings | None = None
    tax: TaxSettings | None = None
    urls: dict[str, str] = field(default_factory=dict)
    apps: dict[str, FastAPI] = field(default_factory=dict)
    _servers: list[uvicorn.Server] = field(default_factory=list)
    _thread: threading.Thread | None = None
    _access_log_was_disabled: bool | None = field(default=None, init=False, repr=False)

    def _bind(self, port: int) -> socket.socket:
        # IPPROTO_TCP: asyncio sets TCP_NODELAY only on accepted sockets of that protocol;
        # with 0 every reply waited ~40 ms for a delayed ACK (found by bench/run.py).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, port))
        sock.listen(2048)
        sock.set_inheritable(True)
        return sock

    def start(self, timeout: float = 15.0) -> MockStack:
        """Bind, build and start every mock; return once all of them accept connections."""
        ngsp = self.ngsp or _from_env(NgspSettings, "ngsp", os.environ)
        population = self.population or _from_env(PopulationSettings, "population", os.environ)
        paygov = self.paygov or _from_env(PaygovSettings, "paygov", os.environ)
        dvcqg = self.dvcqg or _from_env(DvcqgSettings, "dvcqg", os.environ)
        edoc = self.edoc or _from_env(EdocSettings, "edoc", os.environ)
        tax = self.tax or _from_env(TaxSettings, "tax", os.environ)
        sockets: dict[str, socket.socket] = {}
        try:
            for i, name in enumerate(ORDER):
                sockets[name] = self._bind(self.base_port + i if self.base_port else 0)
            self.urls = {
                name: f"http://{self.host}:{sock.getsockname()[1]}"
                for name, sock in sockets.items()
            }
            # create_app reads the fault rules in the environment, and may refuse them
            self.apps = {
                "ngsp": create_ngsp(
                    ngsp.model_copy(update={"backends": {"dancu": self.urls["population"]}})
                ),
                "population": create_population(population),
                "paygov": create_paygov(paygov),
                "dvcqg": create_dvcqg(dvcqg),
                "edoc": create_edoc(edoc),
                "tax": create_tax(tax),
            }
        except BaseException:
            for sock in sockets.values():
                sock.close()
            raise
        # See the module docstring: the bus's logging would otherwise log every mock request.
        access = logging.getLogger("uvicorn.access")
        if self._access_log_was_disabled is None:
            self._access_log_was_disabled = access.disabled
        access.disabled = True
        self._servers = [
            uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on"))
            for app in self.apps.values()
        ]
        ready = threading.Event()

        async def run() -> None:
            tasks = [
                asyncio.create_task(server.serve(sockets=[sockets[name]]))
                for name, server in zip(self.apps, self._servers, strict=True)
            ]
            while not all(server.started for server in self._servers):
                if any(task.done() for task in tasks):
                    break
                await asyncio.sleep(0.02)
            ready.set()
            await asyncio.gather(*tasks)

        self._thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or not all(s.started for s in self._servers):
            self.stop()
            raise RuntimeError("the mocks did not start")
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._access_log_was_disabled is not None:
            logging.getLogger("uvicorn.access").disabled = self._access_log_was_disabled
            self._access_log_was_disabled = None

    def __enter__(self) -> MockStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait(self) -> None:
        """Block until the servers stop (Ctrl-C in the CLI)."""
        if self._thread is not None:
            self._thread.join()
