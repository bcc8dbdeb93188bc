"""Run the benchmark's gateway exactly as ``lgsp serve`` does, with ``bench-relay`` installed.

Configured by the ``LGSP_*`` environment like ``lgsp serve`` (``LGSP_CONFIG``, ``LGSP_PORT``,
``LGSP_WORKERS``...). Run from the repository root: ``.venv/bin/python bench/serve_bus.py``.
"""

from __future__ import annotations

from busapp import create

from bus.cli import run_gateway
from bus.settings import Settings

if __name__ == "__main__":
    run_gateway(Settings(), create(), "busapp:create")
