"""``POST /v1/token``: OAuth 2.0 client credentials (RFC 6749 §4.4) for provincial systems.

The request is form-encoded with ``grant_type=client_credentials`` and the client authenticates
with HTTP Basic (§2.3.1) or with ``client_id`` / ``client_secret`` in the body (not both).
``scope`` (optional) lists ``service/operation`` or ``service/*`` rights, each of which the
consumer must hold; without it the token carries all of the consumer's rights. Success is §5.1
(``access_token``, ``token_type``, ``expires_in``, ``scope``, ``Cache-Control: no-store``);
errors are §5.2 (``invalid_request``, ``invalid_client``, ``unauthorized_client``,
``unsupported_grant_type``, ``invalid_scope``), in the RFC's format rather than the envelope,
so that standard OAuth client libraries understand them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from urllib.parse import parse_qs, unquote_plus

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from bus.clock import Clock
from bus.security.credentials import TokenSigner, verify_client_secret
from bus.security.store import ConsumerStore, Rights, covers

__all__ = ["MAX_TOKEN_REQUEST_BYTES", "token_endpoint"]

MAX_TOKEN_REQUEST_BYTES = 4096
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _error(code: str, description: str, status: int = 400, basic: bool = False) -> JSONResponse:
    headers = dict(_NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="lgsp"' if basic else 'Bearer realm="lgsp"'
    return JSONResponse(
        {"error": code, "error_description": description}, status_code=status, headers=headers
    )


async def _form(request: Request) -> dict[str, str] | JSONResponse:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        return _error("invalid_request", "the body must be application/x-www-form-urlencoded")
    body = b""
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_TOKEN_REQUEST_BYTES:
                return _error("invalid_request", "the request body is too large")
    except ClientDisconnect:
        return _error("invalid_request", "the request body was not complete")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        return _error("invalid_request", "the body is not UTF-8")
    repeated = sorted(k for k, v in fields.items() if len(v) > 1)
    if repeated:
        return _error("invalid_request", f"parameters sent more than once: {', '.join(repeated)}")
    return {k: v[0] for k, v in fields.items()}


def _basic(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ("", "")
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return ("", "")
    return unquote_plus(client_id), unquote_plus(secret)


async def token_endpoint(
    request: Request, store: ConsumerStore, signer: TokenSigner, clock: Clock
) -> JSONResponse:
    form = await _form(request)
    if isinstance(form, JSONResponse):
        return form
    basic = _basic(request.headers.get("authorization", ""))
    in_body = "client_id" in form or "client_secret" in form
    if basic is not None and in_body:
        return _error("invalid_request", "authenticate with HTTP Basic or the body, not both")
    client_id, secret = (
        basic
        if basic is not None
        else (
            form.get("client_id", ""),
            form.get("client_secret", ""),
        )
    )
    grant = form.get("grant_type")
    if not grant:
        return _error("invalid_request", "grant_type is required")
    if grant != "client_credentials":
        return _error("unsupported_grant_type", "only client_credentials is supported")
    if not client_id or not secret:
        return _error("invalid_client", "client authentication is required", 401, basic is not None)
    record = await store.get(client_id)
    stored = await store.secret_hash(client_id) if record is not None else None
    # scrypt is slow on purpose: off the event loop, and run even for unknown ids (timing).
    if not await asyncio.to_thread(verify_client_secret, secret, stored) or record is None:
        return _error("invalid_client", "client authentication failed", 401, basic is not None)
    if not record.active:
        return _error("unauthorized_client", f"consumer {record.id!r} is suspended")
    held = {f"{service}/{operation}" for service, operation in record.rights}
    wanted = set(form.get("scope", "").split()) or held
    missing = sorted(w for w in wanted if not _within(w, record.rights))
    if missing:
        return _error("invalid_scope", f"not granted to this consumer: {' '.join(missing)}")
    now = int(clock.now().timestamp())
    token, lifetime = signer.issue(record.id, frozenset(wanted), now)
    return JSONResponse(
        {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": " ".join(sorted(wanted)),
        },
        headers=_NO_STORE,
    )


def _within(scope: str, rights: Rights) -> bool:
    service, _, operation = scope.partition("/")
    return bool(operation) and covers(rights, service, operation)
