"""The admin API: operator actions on consumers over HTTP, behind one bearer token.

:func:`admin_router` returns the routes without a prefix (the app mounts them at
``/v1/admin``); they do what ``lgsp consumers`` and ``lgsp keys`` do, through the same
:class:`bus.security.consumers.Consumers`::

    GET    /consumers                     every consumer
    POST   /consumers                     create one; its client secret is in this reply only
    GET    /consumers/{id}                one consumer, its rights, limits and API keys
    POST   /consumers/{id}/suspend        calls refused until activated again
    POST   /consumers/{id}/activate
    POST   /consumers/{id}/rights         {"grant": [...], "revoke": [...]}
    PUT    /consumers/{id}/limits         the whole limits object (omitted fields: defaults)
    POST   /consumers/{id}/secret         rotate; the new secret is in this reply only
    POST   /consumers/{id}/keys           a new API key, in this reply only
    GET    /consumers/{id}/keys
    DELETE /keys/{key_id}                 revoke an API key

Every reply is the canonical envelope (``service`` and ``operation`` null). Every route needs
``Authorization: Bearer <LGSP_ADMIN_TOKEN>``, checked before the body is read; without a
configured token every route answers ``client.unauthenticated``. Secrets, keys and the admin
token are never logged. The JSON views of consumers and keys are the CLI's ``--json`` ones
(:mod:`bus.security.consumers`).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Annotated, Any

import structlog
from fastapi import APIRouter
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import AfterValidator, Field, SecretStr
from starlette.requests import Request
from starlette.responses import Response

from bus.config import dotted
from bus.errors import BadRequest, BusError, FieldError, NotFound, Unauthenticated, error_envelope
from bus.middleware import request_id_of
from bus.security.consumers import (
    CONSUMER_ID,
    Consumers,
    UnknownKey,
    check_quota_key,
    consumer_view,
    key_view,
    limits_view,
    parse_right,
)
from bus.security.store import Limits, StoreError
from bus.webhooks import WebhookStore, register, webhook_view
from schemas.base import CanonicalModel
from schemas.envelope import Envelope

__all__ = ["ConsumerCreate", "LimitsBody", "RightsChange", "admin_router"]

log = structlog.get_logger("lgsp.admin")

DISABLED = "the admin API is disabled: set LGSP_ADMIN_TOKEN to enable it"

# --- request bodies ------------------------------------------------------------------------


def _right(text: str) -> str:
    try:
        service, operation = parse_right(text)
    except StoreError as exc:
        raise ValueError(str(exc)) from exc
    return f"{service}/{operation}"


def _consumer_id(text: str) -> str:
    if not CONSUMER_ID.fullmatch(text):
        raise ValueError("2-63 characters of a-z, 0-9, '.', '_', '-', starting with a-z or 0-9")
    return text


Right = Annotated[str, AfterValidator(_right)]
QuotaKey = Annotated[str, AfterValidator(check_quota_key)]


class LimitsBody(CanonicalModel):
    """A consumer's limits; a field left out takes its default."""

    rate_per_second: float = Field(default=20.0, gt=0, le=100_000, description="Sustained rate.")
    burst: int = Field(default=40, ge=1, le=1_000_000, description="Calls allowed at once.")
    daily_quota: int | None = Field(
        default=None, ge=0, description="Calls per operation per day; null: no quota."
    )
    quotas: dict[QuotaKey, Annotated[int, Field(ge=0)]] = Field(
        default_factory=dict, description="Per-operation daily quotas, `service/operation` -> n."
    )

    def to_limits(self) -> Limits:
        return Limits(
            rate_per_second=self.rate_per_second,
            burst=self.burst,
            daily_quota=self.daily_quota,
            quotas=dict(self.quotas),
        )


class ConsumerCreate(CanonicalModel):
    """A new consumer; its client secret is generated and returned once."""

    id: Annotated[str, AfterValidator(_consumer_id)] = Field(description="The client id.")
    name: str = Field(min_length=1, max_length=200, description="Display name.")
    agency: str | None = Field(default=None, max_length=64, description="Agency code.")
    rights: list[Right] = Field(
        default_factory=list, description="`service/operation` or `service/*`."
    )
    limits: LimitsBody | None = None


class RightsChange(CanonicalModel):
    """Rights to grant and rights to revoke, applied together or not at all."""

    grant: list[Right] = Field(default_factory=list)
    revoke: list[Right] = Field(default_factory=list)


# --- the router ----------------------------------------------------------------------------


def _field_errors(errors: list[Any]) -> list[FieldError]:
    """Pydantic/FastAPI errors as field errors; the refused values are never echoed."""
    out: list[FieldError] = []
    for err in errors:
        loc = tuple(p for p in err["loc"] if p != "[key]")
        if loc[:1] == ("body",):
            loc = loc[1:]
        reason = str(err["msg"]).removeprefix("Value error, ")
        out.append(FieldError(dotted(loc) or "body", reason, str(err["type"])))
    return out


def _reply(request: Request, data: Any, status: int = 200) -> Response:
    env = Envelope(
        request_id=request_id_of(request.scope),
        service=None,
        operation=None,
        status="ok",
        data=data,
    )
    return Response(env.model_dump_json(), status_code=status, media_type="application/json")


def _error(request: Request, exc: BusError) -> Response:
    exc.request_id = request_id_of(request.scope)
    env = error_envelope(exc.request_id, None, None, exc)
    headers = {"WWW-Authenticate": 'Bearer realm="lgsp-admin"'} if exc.http_status == 401 else {}
    return Response(
        env.model_dump_json(),
        status_code=exc.http_status,
        media_type="application/json",
        headers=headers,
    )


class _AdminToken:
    """Checks ``Authorization: Bearer <token>`` in constant time; None or empty: disabled."""

    def __init__(self, token: SecretStr | None) -> None:
        value = token.get_secret_value().strip() if token is not None else ""
        self._expected = value.encode() if value else None

    def check(self, headers: Mapping[str, str]) -> None:
        if self._expected is None:
            raise Unauthenticated(DISABLED)
        scheme, _, presented = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise Unauthenticated("the admin API needs Authorization: Bearer <admin token>")
        if not hmac.compare_digest(presented.strip().encode(), self._expected):
            raise Unauthenticated("the admin token is not valid")


def _route_class(token: _AdminToken) -> type[APIRoute]:
    class AdminRoute(APIRoute):
        """Checks the admin token before the body is read; answers every failure with the
        envelope, whatever exception handlers the app has."""

        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def guarded(request: Request) -> Response:
                try:
                    token.check(request.headers)
                except Unauthenticated as exc:
                    log.warning("admin request refused", path=request.url.path, reason=exc.message)
                    return _error(request, exc)
                try:
                    return await handler(request)
                except RequestValidationError as exc:
                    errors = _field_errors(list(exc.errors()))
                    return _error(
                        request, BadRequest("the request is malformed", field_errors=errors)
                    )
                except BusError as exc:
                    return _error(request, exc)
                except StoreError as exc:
                    return _error(request, BadRequest(str(exc)))

            return guarded

    return AdminRoute


class WebhookBody(CanonicalModel):
    url: str = Field(description="Where the consumer's events are POSTed (http or https).")
    rotate_secret: bool = Field(
        default=False, description="Make a new signing secret (the old one stops at once)."
    )


def admin_router(
    consumers: Callable[[], Consumers],
    admin_token: SecretStr | None,
    webhooks: Callable[[], WebhookStore],
) -> APIRouter:
    """The admin routes, prefix-free; ``consumers`` and ``webhooks`` are called on each
    request (the stores may only exist once the app has started)."""
    router = APIRouter(route_class=_route_class(_AdminToken(admin_token)), tags=["admin"])
    documented: dict[int | str, dict[str, Any]] = {
        code: {"model": Envelope, "description": description}
        for code, description in (
            (400, "client.bad_request envelope"),
            (401, "client.unauthenticated envelope"),
            (404, "client.not_found envelope: no such consumer or key"),
        )
    }
    unnamed: dict[int | str, dict[str, Any]] = {c: documented[c] for c in (400, 401)}

    async def existing(consumer_id: str) -> Consumers:
        c = consumers()
        if await c.store.get(consumer_id) is None:
            raise NotFound(f"no consumer with id {consumer_id!r}")
        return c

    @router.get("/consumers", summary="Every consumer", responses=unnamed)
    async def list_consumers(request: Request) -> Response:
        return _reply(request, [consumer_view(c) for c in await consumers().list_all()])

    @router.post("/consumers", status_code=201, summary="Create a consumer", responses=unnamed)
    async def create_consumer(request: Request, body: ConsumerCreate) -> Response:
        c = consumers()
        if await c.store.get(body.id) is not None:
            reason = f"a consumer with id {body.id!r} already exists"
            raise BadRequest(reason, field_errors=[FieldError("id", reason, "duplicate")])
        limits = body.limits.to_limits() if body.limits is not None else None
        record, secret = await c.create(body.id, body.name, body.agency, body.rights, limits)
        log.info("admin: consumer created", consumer=record.id, rights=len(record.rights))
        data = {"consumer": consumer_view(record, []), "client_secret": secret}
        return _reply(request, data, status=201)

    @router.get("/consumers/{consumer_id}", summary="One consumer", responses=documented)
    async def show_consumer(request: Request, consumer_id: str) -> Response:
        c = await existing(consumer_id)
        record = await c.get(consumer_id)
        return _reply(request, consumer_view(record, await c.keys(consumer_id)))

    async def set_status(request: Request, consumer_id: str, active: bool) -> Response:
        c = await existing(consumer_id)
        record = await c.set_status(consumer_id, active)
        log.info("admin: consumer status set", consumer=consumer_id, status=record.status)
        return _reply(request, consumer_view(record))

    @router.post(
        "/consumers/{consumer_id}/suspend", summary="Suspend a consumer", responses=documented
    )
    async def suspend(request: Request, consumer_id: str) -> Response:
        return await set_status(request, consumer_id, active=False)

    @router.post(
        "/consumers/{consumer_id}/activate", summary="Activate a consumer", responses=documented
    )
    async def activate(request: Request, consumer_id: str) -> Response:
        return await set_status(request, consumer_id, active=True)

    @router.post(
        "/consumers/{consumer_id}/rights", summary="Grant and revoke rights", responses=documented
    )
    async def rights(request: Request, consumer_id: str, body: RightsChange) -> Response:
        c = await existing(consumer_id)
        record = await c.change_rights(consumer_id, body.grant, body.revoke)
        log.info(
            "admin: rights changed",
            consumer=consumer_id,
            granted=body.grant,
            revoked=body.revoke,
        )
        return _reply(request, consumer_view(record))

    @router.put(
        "/consumers/{consumer_id}/limits", summary="Replace the limits", responses=documented
    )
    async def limits(request: Request, consumer_id: str, body: LimitsBody) -> Response:
        c = await existing(consumer_id)
        record = await c.set_limits(consumer_id, body.to_limits())
        log.info("admin: limits set", consumer=consumer_id, limits=limits_view(record.limits))
        return _reply(request, consumer_view(record))

    @router.post(
        "/consumers/{consumer_id}/secret",
        summary="Rotate the client secret (the old one stops working at once)",
        responses=documented,
    )
    async def rotate_secret(request: Request, consumer_id: str) -> Response:
        c = await existing(consumer_id)
        secret = await c.rotate_secret(consumer_id)
        log.info("admin: client secret rotated", consumer=consumer_id)
        return _reply(request, {"consumer_id": consumer_id, "client_secret": secret})

    @router.post(
        "/consumers/{consumer_id}/keys",
        status_code=201,
        summary="Create an API key",
        responses=documented,
    )
    async def create_key(request: Request, consumer_id: str) -> Response:
        c = await existing(consumer_id)
        full, record = await c.create_key(consumer_id)
        log.info("admin: API key created", consumer=consumer_id, key_id=record.key_id)
        return _reply(request, {"key": key_view(record), "api_key": full}, status=201)

    @router.get(
        "/consumers/{consumer_id}/keys", summary="A consumer's API keys", responses=documented
    )
    async def list_keys(request: Request, consumer_id: str) -> Response:
        c = await existing(consumer_id)
        return _reply(request, [key_view(k) for k in await c.keys(consumer_id)])

    @router.put(
        "/consumers/{consumer_id}/webhook",
        summary="Set where the consumer receives its events; the reply shows the signing secret",
        responses=documented,
    )
    async def set_webhook(request: Request, consumer_id: str, body: WebhookBody) -> Response:
        await existing(consumer_id)
        try:
            hook = await register(
                webhooks(), consumer_id, body.url, time.time(), rotate=body.rotate_secret
            )
        except ValueError as exc:
            raise BadRequest(str(exc), field_errors=[FieldError("url", str(exc))]) from None
        log.info("admin: webhook set", consumer=consumer_id, rotated=body.rotate_secret)
        return _reply(request, webhook_view(hook, with_secret=True))

    @router.get(
        "/consumers/{consumer_id}/webhook", summary="The consumer's webhook", responses=documented
    )
    async def show_webhook(request: Request, consumer_id: str) -> Response:
        await existing(consumer_id)
        hook = await webhooks().get(consumer_id)
        if hook is None:
            raise NotFound(f"consumer {consumer_id!r} has no webhook")
        return _reply(request, webhook_view(hook, with_secret=False))

    @router.delete(
        "/consumers/{consumer_id}/webhook",
        summary="Remove the consumer's webhook (its events wait in the dead-letter list)",
        responses=documented,
    )
    async def remove_webhook(request: Request, consumer_id: str) -> Response:
        await existing(consumer_id)
        if not await webhooks().remove(consumer_id):
            raise NotFound(f"consumer {consumer_id!r} has no webhook")
        log.info("admin: webhook removed", consumer=consumer_id)
        return _reply(request, {"consumer_id": consumer_id, "removed": True})

    @router.delete("/keys/{key_id}", summary="Revoke an API key", responses=documented)
    async def revoke_key(request: Request, key_id: str) -> Response:
        try:
            revoked = await consumers().revoke_key(key_id)
        except UnknownKey as exc:
            raise NotFound(str(exc)) from None
        except StoreError as exc:
            raise BadRequest(str(exc)) from None
        log.info("admin: API key revoked", consumer=revoked.consumer_id, key_id=key_id)
        return _reply(request, key_view(revoked))

    return router
