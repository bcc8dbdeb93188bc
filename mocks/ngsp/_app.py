"""The NGSP mock app: token endpoint, authenticated and throttled proxy, admin helpers."""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, quote

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from httpx_aiohttp import AiohttpTransport
from pydantic import BaseModel, ConfigDict, Field

from mocks.faults import install_faults
from mocks.ngsp._state import Clock, FixedWindowThrottle, Stats, TokenStore

__all__ = ["FAULTS_ENV_VAR", "NgspSettings", "create_app"]

_log = logging.getLogger("mocks.ngsp")

SCOPE = "am_application_scope default"
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# Not passed to the backend: NGSP's own credential, the caller's host, and what the client
# computes itself or is hop-by-hop (RFC 9110 §7.6.1).
NOT_FORWARDED = frozenset(
    {
        "authorization",
        "host",
        "content-length",
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
PASSED_BACK = ("content-type", "retry-after")
# Set by the gateway from the request it received, whatever the caller sent under these names,
# so that a backend can name its public URL (the population mock's WSDL soap:address).
FORWARDED = ("x-forwarded-host", "x-forwarded-proto", "x-forwarded-prefix")
#: Start-up fault rules for this mock alone, tried before the shared ``LGSP_MOCK_FAULTS``.
FAULTS_ENV_VAR = "LGSP_MOCK_FAULTS_NGSP"
_DROPPED = NOT_FORWARDED | frozenset(FORWARDED)


class NgspSettings(BaseModel):
    """Consumers, token lifetime, throttling tier and the national services behind the gateway."""

    model_config = ConfigDict(extra="forbid")

    consumers: dict[str, str] = {"lgsp-demo-key": "lgsp-demo-secret"}  # consumer key -> secret
    expires_in: int = Field(default=3600, ge=1)  # seconds, token lifetime
    throttle_per_minute: int = Field(default=600, ge=1)  # per consumer, across proxied APIs
    backends: dict[str, str] = {}  # api name -> base URL, e.g. {"dancu": "http://127.0.0.1:9101"}
    backend_timeout: float = Field(default=30.0, gt=0)  # seconds, then 504


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    """An RFC 6749 §5.2 error reply."""
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="ngsp"'
    body = {"error": error, "error_description": description}
    return JSONResponse(body, status_code=status, headers=headers)


def _fault(
    status: int, code: int, message: str, description: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """A WSO2 API Manager gateway fault."""
    body = {"fault": {"code": code, "message": message, "description": description}}
    return JSONResponse(body, status_code=status, headers=headers)


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    """``(key, secret)`` from ``Authorization: Basic ...``; ``None`` if absent or unreadable."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    key, colon, secret = decoded.partition(":")
    return (key, secret) if colon else None


def _bearer_token(header: str | None) -> str | None:
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def _forwarded_headers(request: Request, api: str, version: str) -> list[tuple[bytes, bytes]]:
    """``X-Forwarded-Host``, ``-Proto`` and ``-Prefix`` (``/{api}/{version}``) for the backend:
    the gateway's own address as the caller used it."""
    host = request.headers.get("host") or request.url.netloc
    prefix = f"/{quote(api, safe='')}/{quote(version, safe='')}"
    values = (host, request.url.scheme, prefix)
    return [
        (n.encode("latin-1"), v.encode("latin-1")) for n, v in zip(FORWARDED, values, strict=True)
    ]


def create_app(
    settings: NgspSettings | None = None,
    *,
    clock: Clock = time.monotonic,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """The NGSP mock. ``clock`` drives token expiry and throttle windows; ``transport`` (tests)
    replaces the network: the one backend transport the lifespan opens and every proxied call
    is sent through. By default it is aiohttp's (httpx-aiohttp): httpx's own pool made the
    mock, not the bus, the bound of bench/run.py's SOAP scenario."""
    settings = settings or NgspSettings()
    tokens = TokenStore(settings.expires_in, clock)
    throttle = FixedWindowThrottle(settings.throttle_per_minute, clock)
    stats = Stats()
    backend: list[httpx.AsyncBaseTransport] = []  # the shared transport while the lifespan runs
    timeouts = httpx.Timeout(settings.backend_timeout).as_dict()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Straight to the transport, without an httpx client around it: a gateway forwards
        # what it received and keeps nothing (no cookies, no redirects, no default headers),
        # and the client's per-call work was a third of the forwarding's CPU.
        async with transport or AiohttpTransport() as shared:
            backend.append(shared)
            try:
                yield
            finally:
                backend.clear()

    app = FastAPI(title="NGSP mock", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.post("/token")
    async def token(request: Request) -> Response:
        """OAuth2 client-credentials grant, client authenticated with HTTP Basic."""
        credentials = _basic_credentials(request.headers.get("authorization"))
        known = settings.consumers.get(credentials[0]) if credentials else None
        if (
            credentials is None
            or known is None
            or not secrets.compare_digest(known.encode(), credentials[1].encode())
        ):
            return _oauth_error(401, "invalid_client", "Client authentication failed.")
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        grant_type = form.get("grant_type", [""])[0]
        if not grant_type:
            return _oauth_error(400, "invalid_request", "Missing parameter: grant_type.")
        if grant_type != "client_credentials":
            return _oauth_error(
                400, "unsupported_grant_type", f"Grant type {grant_type!r} is not supported."
            )
        body = {
            "access_token": tokens.issue(credentials[0]),
            "scope": SCOPE,
            "token_type": "Bearer",
            "expires_in": settings.expires_in,
        }
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    @app.post("/__admin/tokens/expire")
    async def expire_tokens() -> dict[str, int]:
        """Expire every token now: the next call with any of them gets 401."""
        return {"expired": tokens.expire_all()}

    @app.get("/__admin/stats")
    async def get_stats() -> dict[str, Any]:
        return {
            "tokens_issued": tokens.issued,
            "requests": dict(stats.requests),
            "throttled": stats.throttled,
        }

    async def proxy(request: Request) -> Response:
        """A published national API: resource match, token, throttle, then the backend."""
        api, version, rest = (request.path_params[k] for k in ("api", "version", "rest"))
        base_url = settings.backends.get(api)
        if base_url is None:
            return _fault(
                404,
                404,
                "No matching resource found for given API Request",
                f"No API is published under /{api}/{version}.",
            )
        consumer = tokens.owner(_bearer_token(request.headers.get("authorization")) or "")
        if consumer is None:
            return _fault(
                401,
                900901,
                "Invalid Credentials",
                "Missing, unknown or expired access token. Get a new one from /token.",
                {"WWW-Authenticate": 'Bearer realm="ngsp", error="invalid_token"'},
            )
        stats.requests[consumer] += 1
        retry_after = throttle.admit(consumer)
        if retry_after is not None:
            stats.throttled += 1
            return _fault(
                429,
                900802,
                "Message throttled out",
                "You have exceeded your quota for this minute.",
                {"Retry-After": str(retry_after)},
            )
        if not backend:
            raise RuntimeError("the NGSP mock's lifespan is not running: no backend client")
        url = f"{base_url.rstrip('/')}/{rest}"
        query = request.scope["query_string"].decode("latin-1")
        headers = [
            (name, value)
            for name, value in request.headers.raw
            if name.decode("latin-1").lower() not in _DROPPED
        ]
        headers += _forwarded_headers(request, api, version)
        forwarded = httpx.Request(
            request.method,
            f"{url}?{query}" if query else url,
            content=await request.body(),
            headers=headers,
            extensions={"timeout": timeouts},
        )
        try:
            reply = await backend[0].handle_async_request(forwarded)
            try:
                content = await reply.aread()
            finally:
                await reply.aclose()
        except httpx.TimeoutException as exc:
            _log.warning("ngsp backend timeout: api=%s error=%s", api, type(exc).__name__)
            return _fault(504, 101504, "Connection timed out", f"The {api} back end timed out.")
        except httpx.RequestError as exc:
            _log.warning("ngsp backend unreachable: api=%s error=%s", api, type(exc).__name__)
            return _fault(
                503,
                101503,
                "Error connecting to the back end",
                f"The {api} back end could not be reached.",
            )
        passed = {name: reply.headers[name] for name in PASSED_BACK if name in reply.headers}
        return Response(content, status_code=reply.status_code, headers=passed)

    # A plain Starlette route: the proxy reads its request itself, so FastAPI's per-route
    # machinery (dependencies, parameter validation) would only add CPU to every proxied call,
    # in the process that shares bench/run.py's cores with the bus it measures.
    app.add_route("/{api}/{version}/{rest:path}", proxy, methods=METHODS, include_in_schema=False)
    # Last, so the fault middleware is the outermost one.
    install_faults(app, env_var=FAULTS_ENV_VAR)
    return app
