"""Run the national platform mocks together, each on its own loopback port.

NGSP listens on the base port and forwards ``/dancu/1.0/...`` to the population database mock
on the next port, over real HTTP, as the real NGSP fronts the national services. Sockets are
bound before the apps are built, so every port (0 = any free one) is known in advance, and the
servers run in a background thread with their own event loop: ``lgsp mocks serve`` and the
end-to-end tests use the same :class:`MockStack`.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI

from mocks.ngsp import NgspSettings
from mocks.ngsp import create_app as create_ngsp
from mocks.population import PopulationSettings
from mocks.population import create_app as create_population

__all__ = ["DEMO_CONSUMER_KEY", "DEMO_CONSUMER_SECRET", "MockStack"]

#: The NGSP consumer the mocks accept by default (the province's credentials in the demo).
DEMO_CONSUMER_KEY = "lgsp-demo-key"
DEMO_CONSUMER_SECRET = "lgsp-demo-secret"  # noqa: S105 - a mock's published demo credential


@dataclass
class MockStack:
    host: str = "127.0.0.1"
    base_port: int = 0
    ngsp: NgspSettings | None = None
    population: PopulationSettings | None = None
    urls: dict[str, str] = field(default_factory=dict)
    apps: dict[str, FastAPI] = field(default_factory=dict)
    _servers: list[uvicorn.Server] = field(default_factory=list)
    _thread: threading.Thread | None = None

    def _bind(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, port))
        sock.listen(2048)
        sock.set_inheritable(True)
        return sock

    def start(self, timeout: float = 15.0) -> MockStack:
        """Bind, build and start every mock; return once all of them accept connections."""
        ngsp_sock = self._bind(self.base_port)
        pop_port = self.base_port + 1 if self.base_port else 0
        pop_sock = self._bind(pop_port)
        ports = {"ngsp": ngsp_sock.getsockname()[1], "population": pop_sock.getsockname()[1]}
        self.urls = {name: f"http://{self.host}:{port}" for name, port in ports.items()}
        ngsp_settings = (self.ngsp or NgspSettings()).model_copy(
            update={"backends": {"dancu": self.urls["population"]}}
        )
        self.apps = {
            "ngsp": create_ngsp(ngsp_settings),
            "population": create_population(self.population or PopulationSettings()),
        }
        sockets = {"ngsp": ngsp_sock, "population": pop_sock}
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

    def __enter__(self) -> MockStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait(self) -> None:
        """Block until the servers stop (Ctrl-C in the CLI)."""
        if self._thread is not None:
            self._thread.join()
