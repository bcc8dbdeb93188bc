"""The gateway app the benchmark runs: the installed adapters plus ``bench-relay``.

``uvicorn --factory --app-dir bench busapp:create`` builds it in each worker process from the
``LGSP_*`` environment, exactly as ``lgsp serve`` does with ``bus.app:app_from_env``.
"""

from __future__ import annotations

from fastapi import FastAPI
from relay import RelayAdapter

from bus.app import create_app
from bus.registry import discover
from bus.settings import Settings


def create() -> FastAPI:
    registry = discover()
    registry.register("bench-relay", RelayAdapter, package="lgsp-bench")
    return create_app(Settings(), registry=registry)
