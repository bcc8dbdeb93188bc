"""The app factory: :func:`create_app` builds the FastAPI app of one gateway process.

Everything that can be wrong with the configuration is found here, before the app exists: a bad
bus.yaml, an unknown adapter, a missing credential variable, two packages offering one adapter
name. The lifespan opens the one shared HTTP client and starts the adapters. The service call
is served in front of FastAPI's own middleware and router (:class:`~bus.middleware.FrontRoutedApp`);
both it and every other route go through a request id layer with the last-resort error
envelope (:class:`~bus.middleware.RequestIdMiddleware`).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import secrets
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from adapters.base import Clock
from bus.admin import admin_router
from bus.audit import ExchangeRecorder
from bus.audit.api import audit_router
from bus.callbacks import handle_callback
from bus.config import load_config
from bus.delivery.views import view_of
from bus.delivery.worker import DeliveryWorker
from bus.errors import (
    BadRequest,
    BusError,
    MethodNotAllowed,
    NotFound,
    UnknownService,
    error_envelope,
)
from bus.gateway import Gateway, build_gateway
from bus.health import Readiness
from bus.logging import configure_logging, get_logger
from bus.metaservices import build_openapi, describe_service, list_services
from bus.middleware import FrontRoutedApp, RequestIdMiddleware, endpoint_app
from bus.oauth import token_endpoint
from bus.pipeline import field_errors_from, handle_call
from bus.registry import AdapterRegistry, discover
from bus.security import Security
from bus.security.auth import LocalRateLimiter, RightsPolicy, StoreAuthenticator
from bus.security.consumers import Consumers
from bus.security.credentials import TokenSigner
from bus.security.store import ConsumerStore, SqliteConsumerStore
from bus.settings import Settings
from schemas.envelope import Envelope

__all__ = ["app_from_env", "create_app", "gateway_of"]

DESCRIPTION = """\
One canonical JSON contract in front of the national platforms. Every reply is an envelope
`{request_id, service, operation, status, data, error}`; errors carry a stable `code`."""


def gateway_of(app: FastAPI) -> Gateway:
    gw: Gateway = app.state.gateway
    return gw


def _envelope(
    request: Request, data: Any, service: str | None = None, status: int = 200
) -> Response:
    env = Envelope(
        request_id=request.state.request_id,
        service=service,
        operation=None,
        status="ok",
        data=data,
    )
    return Response(env.model_dump_json(), status_code=status, media_type="application/json")


def _error(request: Request, exc: BusError, service: str | None = None) -> Response:
    exc.request_id = request.state.request_id
    env = error_envelope(exc.request_id, service, None, exc)
    return Response(
        env.model_dump_json(), status_code=exc.http_status, media_type="application/json"
    )


#: The service call's route.
CALL_PATH = "/v1/services/{service}/{operation}"


def create_app(
    settings: Settings | None = None,
    *,
    registry: AdapterRegistry | None = None,
    environ: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    security: Security | None = None,
    recorder: ExchangeRecorder | None = None,
    clock: Clock | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> FastAPI:
    """Build the gateway app from ``settings`` (default: ``LGSP_*`` variables).

    Collaborators can be passed in, as tests and embedding applications need: the adapter
    registry (default: installed entry points), the environment that holds credentials, the HTTP
    transport, the security stages, the exchange recorder, the clock and the sleep of retries.
    Raises :class:`bus.config.ConfigError` or :class:`bus.registry.RegistryError` when the
    configuration cannot be served.
    """
    settings = settings or Settings()
    configure_logging(settings.log_level, settings.log_format)
    loaded = load_config(settings.config)
    gw = build_gateway(settings, loaded, registry or discover(), environ=environ, clock=clock)
    gw.transport = transport
    store: ConsumerStore | None = None
    if settings.auth == "open":
        get_logger().warning(
            "LGSP_AUTH=open: every caller is anonymous with every right; never expose this bus"
        )
        gw.security = Security()
    else:
        store = SqliteConsumerStore(settings.store_path)
    if security is not None:
        gw.security = security
    signer: TokenSigner | None = None
    if recorder is not None:
        gw.recorder = recorder
    if sleep is not None:
        gw.sleep = sleep
    readiness = Readiness(gw)
    described = functools.cache(describe_service)  # schemas are fixed once the app is built

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal signer
        if store is not None:
            signer = await make_signer(settings, store)
            if security is None:
                gw.security = Security(
                    StoreAuthenticator(store, signer, gw.clock),
                    RightsPolicy(),
                    LocalRateLimiter(gw.clock),
                )
        await gw.start()
        worker: DeliveryWorker | None = None
        if settings.delivery_worker == "inprocess" and has_async_operations(gw):
            worker = DeliveryWorker(gw)
            worker.start()
        app.state.delivery_worker = worker
        await purge_expired_keys(gw)  # at start, then hourly
        housekeeping = asyncio.create_task(_housekeeping(gw), name="lgsp-housekeeping")
        tune_runtime(settings)
        try:
            yield
        finally:
            housekeeping.cancel()
            if worker is not None:
                await worker.stop()
            await gw.stop()
            if store is not None:
                await store.close()

    async def call(request: Request) -> Response:
        params = request.path_params
        return await handle_call(gw, request, params["service"], params["operation"])

    # The service call is served in front of FastAPI's own middleware and router, through its
    # own RequestIdMiddleware; every other route goes through FastAPI, whose first middleware
    # is another RequestIdMiddleware (added below). The call route does its own body handling,
    # so FastAPI's per-request dependency machinery would only add cost. It is documented per
    # operation, not as this route.
    app = FrontRoutedApp(
        CALL_PATH,
        ("POST",),
        call,
        front=RequestIdMiddleware(endpoint_app(call)),
        title="LGSP integration bus",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        redirect_slashes=False,  # a redirect would be a reply without the envelope
    )
    app.state.gateway = gw

    async def inbound(request: Request) -> Response:
        return await handle_callback(gw, request, request.path_params["service"])

    # A national platform's callback (a PayGov payment confirmation): checked by the adapter,
    # not by the bus's consumer credentials. Documented in the README per platform.
    app.router.add_route(
        "/v1/callbacks/{service}", inbound, methods=["POST"], include_in_schema=False
    )

    bad_request: dict[int | str, dict[str, Any]] = {
        400: {"model": Envelope, "description": "client.bad_request envelope"}
    }

    @app.get(
        "/v1/services",
        tags=["metaservices"],
        summary="The catalogue of services",
        response_model=Envelope,
    )
    async def services(request: Request) -> Response:
        try:
            consumer = await gw.security.authenticator.identify(request.headers)
        except BusError as exc:
            return _error(request, exc)
        return _envelope(request, list_services(gw, consumer))

    @app.get(
        "/v1/services/{service}",
        tags=["metaservices"],
        summary="One service's operations with their input and output JSON Schemas",
        response_model=Envelope,
        responses={404: {"model": Envelope, "description": "client.unknown_service envelope"}},
    )
    async def service(request: Request, service: str) -> Response:
        try:
            consumer = await gw.security.authenticator.identify(request.headers)
        except BusError as exc:
            return _error(request, exc, service)
        svc = gw.services.get(service)
        visible = svc is not None and any(consumer.may_call(service, op) for op in svc.operations)
        if svc is None or not visible:  # a service the consumer may not use is not shown
            return _error(request, UnknownService(f"no service named {service!r}"), service)
        described_ = dict(described(svc))
        described_["operations"] = [
            op for op in described_["operations"] if consumer.may_call(service, op["name"])
        ]
        return _envelope(request, described_, service)

    @app.post(
        "/v1/token",
        tags=["security"],
        summary="OAuth 2.0 client credentials: a short-lived access token (RFC 6749 §4.4)",
        openapi_extra={
            "requestBody": {
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "required": ["grant_type"],
                            "properties": {
                                "grant_type": {"const": "client_credentials"},
                                "scope": {"type": "string"},
                                "client_id": {"type": "string"},
                                "client_secret": {"type": "string"},
                            },
                        }
                    }
                }
            }
        },
    )
    async def token(request: Request) -> Response:
        if store is None or signer is None:
            return JSONResponse(
                {
                    "error": "invalid_request",
                    "error_description": "LGSP_AUTH=open issues no tokens",
                },
                status_code=400,
            )
        return await token_endpoint(request, store, signer, gw.clock)

    @app.get(
        "/v1/deliveries/{delivery_id}",
        tags=["deliveries"],
        summary="A store-and-forward delivery: its state, attempts and, once delivered, result",
        response_model=Envelope,
        responses={404: {"model": Envelope, "description": "client.not_found envelope"}},
    )
    async def delivery(request: Request, delivery_id: str) -> Response:
        try:
            consumer = await gw.security.authenticator.identify(request.headers)
        except BusError as exc:
            return _error(request, exc)
        found = await gw.delivery_store.get(delivery_id[:64])
        # Another consumer's delivery is not shown, nor is its existence confirmed.
        if found is None or (consumer.authenticated and found.consumer != consumer.id):
            return _error(request, NotFound(f"no delivery {delivery_id[:64]!r} of yours"))
        attempts = await gw.delivery_store.attempts(found.id)
        return _envelope(request, view_of(found, attempts), found.service)

    @app.get("/healthz", tags=["health"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get(
        "/readyz",
        tags=["health"],
        summary="Reachability of every upstream (cached)",
        responses=bad_request,
    )
    async def readyz(strict: bool = False) -> JSONResponse:
        states, age = await readiness.states()
        upstreams: dict[str, Any] = {}
        down = []
        for s in states:
            svc = gw.services[s.service]
            circuit = svc.breaker.snapshot() if svc.breaker is not None else None
            upstreams[s.service] = {
                **s.as_json(),
                "circuit": circuit,
                "bulkhead": svc.bulkhead.snapshot(),
            }
            if s.reachable is False or (circuit is not None and circuit["state"] == "open"):
                down.append(s.service)
        audit_failing = gw.audit.failing if gw.audit is not None else None
        status = "ready" if not down else "degraded"
        code = 503 if (strict and down) else 200
        if audit_failing is not None:  # every call is refused: not ready, whatever the mode
            status, code = "not_ready", 503
        return JSONResponse(
            {
                "status": status,
                "checked_seconds_ago": round(age, 3),
                "exchange_log": "failing" if audit_failing is not None else "ok",
                "upstreams": upstreams,
            },
            status_code=code,
        )

    if store is not None:
        consumers = Consumers(store)
        app.include_router(
            admin_router(lambda: consumers, settings.admin_token, lambda: gw.webhook_store),
            prefix="/v1/admin",
            tags=["admin"],
        )
    app.include_router(audit_router(gw), prefix="/v1/audit")

    # Load balancers probe with HEAD too.
    app.add_api_route("/healthz", healthz, methods=["HEAD"], include_in_schema=False)
    app.add_api_route("/readyz", readyz, methods=["HEAD"], include_in_schema=False)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        err: BusError
        if exc.status_code == 404:
            err = NotFound(f"no route {request.method} {request.url.path}")
        elif exc.status_code == 405:
            err = MethodNotAllowed(f"{request.url.path} does not accept {request.method}")
        else:
            err = BadRequest(str(exc.detail))
        reply = _error(request, err)
        if exc.headers:  # e.g. Allow on a 405
            reply.headers.update(exc.headers)
        return reply

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = field_errors_from(exc.errors())
        return _error(request, BadRequest("the request is malformed", field_errors=errors))

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.openapi = lambda: _cached_openapi(app, gw)  # type: ignore[method-assign]  # FastAPI's documented override
    app.add_middleware(RequestIdMiddleware)
    return app


async def purge_expired_keys(gw: Gateway) -> None:
    """Remove expired idempotency keys; a failure is logged, never raised (housekeeping)."""
    log = get_logger()
    try:
        purged = await gw.idempotency_store.purge_expired(gw.clock.now().timestamp())
    except Exception:  # housekeeping must not stop the gateway; it tries again later
        log.exception("purging expired idempotency keys failed")
        return
    if purged:
        log.info("expired idempotency keys purged", count=purged)


async def _housekeeping(gw: Gateway, every: float = 3600.0) -> None:
    while True:
        await asyncio.sleep(every)
        await purge_expired_keys(gw)


def has_async_operations(gw: Gateway) -> bool:
    """Whether anything is store-and-forward (then a worker must run): an async operation, or
    an adapter whose callbacks queue events for consumers' webhooks."""
    return any(
        svc.entry.adapter.inbound_spec is not None or svc.mode_of(op) == "async"
        for svc in gw.services.values()
        for op in svc.operations
    )


def _cached_openapi(app: FastAPI, gw: Gateway) -> dict[str, Any]:
    if app.openapi_schema is None:
        app.openapi_schema = build_openapi(app, gw)
    return app.openapi_schema


async def make_signer(settings: Settings, store: ConsumerStore) -> TokenSigner:
    """The access-token signer: LGSP_TOKEN_SIGNING_KEY, or a key created once in the store."""
    if settings.token_signing_key is not None:
        key = settings.token_signing_key.get_secret_value()
    else:
        key = await store.bus_secret("token_signing_key", lambda: secrets.token_urlsafe(48))
    return TokenSigner(
        key.encode(), settings.token_issuer, settings.token_audience, settings.token_lifetime
    )


#: gc.set_threshold once started: the youngest generation is collected every 10,000 container
#: allocations instead of 700 (each call allocates a few thousand, nearly all freed by reference
#: counting); the older ones as often as by default, relative to it.
GC_THRESHOLD = (10_000, 20, 20)


def tune_runtime(settings: Settings) -> None:
    """Set up the interpreter for serving, once started (each measured in bench/run.py
    against the default in interleaved runs; see the README):

    - ``gc_freeze``: what start-up built (modules, the app, the adapters' WSDLs) lives as long
      as the process, so it is moved out of the collector's scans (after a full collection, so
      nothing unreachable is kept) and the youngest generation is collected less often: some
      10% less CPU per call.
    - ``switch_interval_ms``: the exchange log's writer thread, back from a commit, waits that
      long at most for the busy event loop to hand over the GIL, and every call waits on that
      commit: at 0.2 ms instead of 5, more calls per second at 1 and 16 connections.
    """
    if settings.gc_freeze:
        freeze_heap()
    sys.setswitchinterval(settings.switch_interval_ms / 1000)


def freeze_heap() -> None:
    """Once a server process has built what it keeps for its lifetime: a full collection (so
    nothing unreachable is kept), then every object left is moved out of the collector's scans
    (``gc.freeze``) and the youngest generation is collected every ``GC_THRESHOLD[0]``
    container allocations. Without it, each full collection walks that whole heap while every
    call in flight waits: for ``lgsp mocks serve``, whose seeded registries are some 60,000
    objects, NGSP's p99 at 16 connections was 76-87 ms without it and 23 ms with it."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory bus.app:app_from_env`` (used by ``lgsp serve --workers``)."""
    return create_app(Settings())
