"""The gateway's runtime: configured services bound to their adapters, and their lifecycle.

:func:`build_gateway` checks a loaded bus.yaml against the installed adapters and the environment
(unknown adapter, missing upstream, missing credential variable, bad adapter options) and reports
every problem with its line; nothing is started until the configuration is whole. The async
:meth:`Gateway.start` then opens the one shared HTTP client and starts each adapter once.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import os
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http.cookiejar import DefaultCookiePolicy

import httpx
from pydantic import ValidationError

from adapters.base import Adapter, Clock, OperationSpec, Resources, SystemClock, Upstream
from bus.audit import ExchangeRecorder
from bus.audit.log import AuditLog, open_audit
from bus.audit.writer import WriterProcess, process_writer_available
from bus.circuit import Bulkhead, CircuitBreaker
from bus.config import ConfigError, ConfigProblem, Credentials, LoadedConfig, ServiceConfig
from bus.delivery.store import DeliveryStore, SqliteDeliveryStore
from bus.idempotency import IdempotencyStore, SqliteIdempotencyStore
from bus.logging import get_logger
from bus.registry import AdapterEntry, AdapterRegistry
from bus.resilience import CallPolicy
from bus.security import Security
from bus.settings import Settings
from bus.state import SqliteStateStore, StateStore, scoped
from bus.transport import BusAiohttpTransport, BusHttpClient
from bus.webhooks import SqliteWebhookStore, WebhookStore

__all__ = ["Gateway", "ServiceRuntime", "build_gateway", "make_http_client"]


@dataclass(eq=False)  # identity: one runtime per configured service, hashable for caches
class ServiceRuntime:
    """One service of bus.yaml, bound to its adapter instance."""

    name: str
    config: ServiceConfig
    entry: AdapterEntry
    adapter: Adapter
    credentials: Credentials
    policy: CallPolicy
    bulkhead: Bulkhead
    breaker: CircuitBreaker | None = None
    resources: Resources | None = None

    def mode_of(self, operation: str) -> str:
        """``async`` (store-and-forward) or ``sync``: bus.yaml's ``mode`` wins over the adapter."""
        return self.config.mode or self.operations[operation].mode

    @property
    def description(self) -> str:
        return self.config.description or self.entry.adapter.description

    @property
    def operations(self) -> Mapping[str, OperationSpec]:
        return self.entry.adapter.operations

    @functools.cached_property
    def upstream(self) -> Upstream | None:
        """Where the adapter's calls go (from the frozen config: worked out once)."""
        up = self.config.upstream
        if up is None:
            return None
        return Upstream(
            base_url=str(up.base_url).rstrip("/"),
            timeout=min(self.config.attempt_timeout or self.config.timeout, self.config.timeout),
            connect_timeout=self.config.connect_timeout,
        )


@dataclass
class Gateway:
    """Everything the pipeline needs, built once per process."""

    settings: Settings
    services: dict[str, ServiceRuntime]
    security: Security = field(default_factory=Security)
    #: Where exchange records go: the durable exchange log (:attr:`audit`) opened by
    #: :meth:`start` on ``settings.audit_file()`` unless a recorder is given.
    recorder: ExchangeRecorder | None = None
    audit: AuditLog | None = None
    clock: Clock = field(default_factory=SystemClock)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    transport: httpx.AsyncBaseTransport | None = None
    http: httpx.AsyncClient | None = None
    #: The embedded stores, opened by :meth:`start` on ``settings.store_path`` unless given.
    idempotency: IdempotencyStore | None = None
    deliveries: DeliveryStore | None = None
    state: StateStore | None = None
    webhooks: WebhookStore | None = None
    #: Set when a message is queued, so an in-process delivery worker wakes at once.
    deliveries_waiting: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        # The exchange log's digest key replaces this one at start; with another recorder and
        # no LGSP_DIGEST_KEY, digests use a per-process key (they cannot be re-checked later).
        key = self.settings.digest_key
        self._digest_key = (
            key.get_secret_value().encode() if key is not None else secrets.token_bytes(32)
        )

    @property
    def exchange_recorder(self) -> ExchangeRecorder:
        assert self.recorder is not None, "the gateway was not started"
        return self.recorder

    def digest(self, data: bytes) -> str:
        """HMAC-SHA256 (hex) of ``data`` under the bus's digest key."""
        return hmac.new(self._digest_key, data, hashlib.sha256).hexdigest()

    @property
    def idempotency_store(self) -> IdempotencyStore:
        assert self.idempotency is not None, "the gateway was not started"
        return self.idempotency

    @property
    def delivery_store(self) -> DeliveryStore:
        assert self.deliveries is not None, "the gateway was not started"
        return self.deliveries

    @property
    def webhook_store(self) -> WebhookStore:
        assert self.webhooks is not None, "the gateway was not started"
        return self.webhooks

    async def start(self) -> None:
        """Open the stores and the shared HTTP client, and start every adapter (WSDLs are
        loaded here, once). If any of it fails, the client and the stores opened are closed
        again (the exchange log's writer process included)."""
        try:
            await self._start()
        except BaseException:
            await self._close()
            raise

    async def _start(self) -> None:
        if self.recorder is None:
            store, keys = open_audit(self.settings)
            writer = None
            if self.settings.audit_writer == "process" and process_writer_available():
                writer = WriterProcess(
                    store.path,
                    keys.signing_key,
                    self.settings.audit_checkpoint_every,
                    commit_timeout=self.settings.audit_commit_timeout,
                )
                try:
                    await writer.start()
                except BaseException:
                    await store.close()
                    raise
            self.audit = AuditLog(store, keys, batch=self.settings.audit_batch, writer=writer)
            self.recorder = self.audit
            self._digest_key = keys.digest_key
        if self.idempotency is None:
            self.idempotency = SqliteIdempotencyStore(self.settings.store_path)
        if self.deliveries is None:
            self.deliveries = SqliteDeliveryStore(self.settings.store_path)
        if self.state is None:
            self.state = SqliteStateStore(self.settings.store_path)
        if self.webhooks is None:
            self.webhooks = SqliteWebhookStore(self.settings.store_path)
        self.http = make_http_client(self.settings, self.transport)
        for svc in self.services.values():
            svc.resources = Resources(
                service=svc.name,
                http=self.http,
                upstream=svc.upstream,
                credentials=svc.credentials,
                clock=self.clock,
                log=get_logger(service=svc.name, adapter=svc.entry.name),
                digest=self.digest,
                state=scoped(self.state, svc.name, self.clock),
            )
            await svc.adapter.start(svc.resources)

    async def stop(self) -> None:
        try:
            for svc in self.services.values():
                await svc.adapter.stop()
        finally:
            await self._close()

    async def _close(self) -> None:
        try:
            if self.http is not None:
                await self.http.aclose()
                self.http = None
            for store in (self.idempotency, self.deliveries, self.state, self.webhooks):
                if store is not None:
                    await store.close()
            self.idempotency = self.deliveries = self.state = self.webhooks = None
        finally:
            if self.audit is not None:  # last, whatever failed: every exchange is recorded
                await self.audit.close()
                self.audit = self.recorder = None


def make_http_client(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The one long-lived client of the process. The transport is chosen by measurement:
    ``bench/http_transports.py`` (results in README) found httpx-aiohttp several times faster
    than httpx's own pool on this class of machine, so it is the default."""
    limits = httpx.Limits(
        max_connections=settings.http_max_connections,
        max_keepalive_connections=settings.http_max_connections,
        keepalive_expiry=settings.http_keepalive_seconds,
    )
    if transport is None:
        if settings.http_transport == "aiohttp":
            transport = BusAiohttpTransport(limits=limits)
        else:
            transport = httpx.AsyncHTTPTransport(limits=limits)
    client = BusHttpClient(transport=transport, follow_redirects=False, trust_env=False)
    # One client serves every consumer: an upstream's cookies must never ride along on the
    # next consumer's call. (The aiohttp transport keeps no cookies either: DummyCookieJar.)
    client.cookies.jar.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    return client


def build_gateway(
    settings: Settings,
    loaded: LoadedConfig,
    registry: AdapterRegistry,
    *,
    environ: Mapping[str, str] | None = None,
    clock: Clock | None = None,
) -> Gateway:
    """Bind every service of ``loaded`` to its adapter, or raise :class:`ConfigError`."""
    env = os.environ if environ is None else environ
    clock = clock or SystemClock()
    problems: list[ConfigProblem] = []
    services: dict[str, ServiceRuntime] = {}
    for name, svc in loaded.config.services.items():
        base: tuple[str, ...] = ("services", name)
        credentials, missing = loaded.credentials_for(name, env)
        problems += missing
        entry = registry.get(svc.adapter)
        if entry is None:
            known = ", ".join(registry.names()) or "none installed"
            problems.append(
                loaded.problem(
                    (*base, "adapter"), f"unknown adapter {svc.adapter!r} (known: {known})"
                )
            )
            continue
        if entry.adapter.requires_upstream and svc.upstream is None:
            problems.append(
                loaded.problem(base, f"adapter {svc.adapter!r} needs an upstream: with a base_url")
            )
        try:
            options = entry.adapter.Options.model_validate(svc.options)
        except ValidationError as exc:
            problems += [
                loaded.problem((*base, "options", *map(str, err["loc"])), str(err["msg"]))
                for err in exc.errors()
            ]
            continue
        if svc.mode == "async":
            unsafe = [
                op
                for op, spec in entry.adapter.operations.items()
                if not (spec.idempotent or spec.honours_idempotency_key)
            ]
            if unsafe:
                problems.append(
                    loaded.problem(
                        (*base, "mode"),
                        f"async delivery may send a message twice; {', '.join(unsafe)} of "
                        f"adapter {svc.adapter!r} cannot pass a de-duplication key upstream",
                    )
                )
        retry = loaded.config.retry_policy(svc.retry)
        assert retry is not None  # parse_config refused unknown policy names
        services[name] = ServiceRuntime(
            name=name,
            config=svc,
            entry=entry,
            adapter=entry.adapter(options),
            credentials=credentials,
            policy=CallPolicy(deadline=svc.timeout, retry=retry),
            bulkhead=Bulkhead(name, svc.max_in_flight),
            breaker=(
                CircuitBreaker(name, svc.circuit_breaker, clock)
                if svc.circuit_breaker is not None
                else None
            ),
        )
    if problems:
        raise ConfigError(problems)
    return Gateway(settings=settings, services=services, clock=clock)
