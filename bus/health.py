"""``/healthz`` (the process answers) and ``/readyz`` (can each upstream be reached?).

Readiness probes every upstream's ``health_path`` concurrently through the shared client, and
keeps the result for ``LGSP_READY_CACHE_SECONDS``: however often a load balancer asks, a
national platform sees at most one probe per interval. Concurrent askers share one probe.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

from bus.gateway import Gateway, ServiceRuntime

__all__ = ["Readiness", "UpstreamState"]

log = structlog.get_logger("lgsp.health")


@dataclass(frozen=True, slots=True)
class UpstreamState:
    service: str
    url: str | None
    reachable: bool | None
    detail: str
    latency_ms: float | None

    def as_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "reachable": self.reachable,
            "detail": self.detail,
            "latency_ms": self.latency_ms,
        }


class Readiness:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self._lock = asyncio.Lock()
        self._checked_at: float | None = None
        self._states: list[UpstreamState] = []

    async def states(self) -> tuple[list[UpstreamState], float]:
        """The upstream states and their age in seconds, probing again only when stale."""
        async with self._lock:
            now = self.gw.clock.monotonic()
            ttl = self.gw.settings.ready_cache_seconds
            if self._checked_at is None or now - self._checked_at >= ttl:
                self._states = list(
                    await asyncio.gather(*(self._probe(s) for s in self.gw.services.values()))
                )
                self._checked_at = self.gw.clock.monotonic()
            return self._states, self.gw.clock.monotonic() - self._checked_at

    async def _probe(self, svc: ServiceRuntime) -> UpstreamState:
        up = svc.config.upstream
        if up is None or up.health_path is None:
            return UpstreamState(svc.name, None, None, "no upstream probe configured", None)
        url = str(up.base_url).rstrip("/") + "/" + up.health_path.lstrip("/")
        assert self.gw.http is not None, "the gateway was not started"
        limit = self.gw.settings.ready_probe_timeout
        started = self.gw.clock.monotonic()
        try:
            # One deadline for the whole probe; the status line is enough, the body is not read.
            async with (
                asyncio.timeout(limit),
                self.gw.http.stream("GET", url, timeout=limit) as reply,
            ):
                status = reply.status_code
        except TimeoutError:
            return UpstreamState(svc.name, url, False, f"no answer within {limit:g} s", None)
        except httpx.HTTPError as exc:
            return UpstreamState(svc.name, url, False, type(exc).__name__, None)
        except Exception as exc:  # a probe must never take /readyz down with it
            log.warning("readiness probe failed", service=svc.name, exc_info=True)
            return UpstreamState(svc.name, url, False, type(exc).__name__, None)
        elapsed = round((self.gw.clock.monotonic() - started) * 1000, 1)
        # Any HTTP answer, even 401 or 404, shows the platform is up and reachable.
        return UpstreamState(svc.name, url, True, f"HTTP {status}", elapsed)
