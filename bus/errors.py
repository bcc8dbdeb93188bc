"""The one catalogue of error codes that cross the gateway.

Every failure a caller can see is a :class:`BusError` with a stable code from :data:`CATALOGUE`.
The codes are split the way X-Road splits its faults: who has to act?

    BusError
    ├── ClientError              the caller must change its request
    │   ├── BadRequest                   client.bad_request          400
    │   ├── Unauthenticated              client.unauthenticated      401
    │   ├── Forbidden                    client.forbidden            403
    │   ├── UnknownService               client.unknown_service      404
    │   ├── UnknownOperation             client.unknown_operation    404
    │   ├── NotFound                     client.not_found            404
    │   ├── MethodNotAllowed             client.method_not_allowed   405
    │   ├── IdempotencyInProgress        client.idempotency_in_progress 409
    │   ├── PayloadTooLarge              client.payload_too_large    413
    │   ├── UnsupportedMediaType         client.unsupported_media_type 415
    │   ├── IdempotencyKeyReused         client.idempotency_key_reused 422
    │   └── RateLimited                  client.rate_limited         429
    ├── UpstreamError            the national platform failed or refused
    │   ├── UpstreamRejected             upstream.rejected           422
    │   ├── UpstreamFault                upstream.fault              502
    │   ├── UpstreamBadResponse          upstream.bad_response       502
    │   ├── UpstreamUnavailable          upstream.unavailable        503
    │   └── UpstreamTimeout              upstream.timeout            504
    └── InternalError            the bus itself failed
                                         bus.internal                500

Upstream libraries' exceptions (httpx, zeep, pydantic) are translated into these at the adapter
boundary (:func:`bus.upstream.translate_http_error`), with ``raise ... from exc``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from schemas.envelope import Envelope, ErrorBody, FieldErrorBody

__all__ = [
    "CATALOGUE",
    "BadRequest",
    "BusError",
    "ClientClosedRequest",
    "ClientError",
    "ErrorSpec",
    "FieldError",
    "Forbidden",
    "IdempotencyInProgress",
    "IdempotencyKeyReused",
    "InternalError",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "Unauthenticated",
    "UnknownOperation",
    "UnknownService",
    "UnsupportedMediaType",
    "UpstreamBadResponse",
    "UpstreamError",
    "UpstreamFault",
    "UpstreamRejected",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "error_envelope",
]


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """What a code means on the wire: its HTTP status and whether a retry may succeed."""

    code: str
    http_status: int
    retryable: bool
    summary: str


def _spec(code: str, http_status: int, retryable: bool, summary: str) -> ErrorSpec:
    return ErrorSpec(code, http_status, retryable, summary)


#: Every code the bus can answer with. Add a code here, never inline.
CATALOGUE: dict[str, ErrorSpec] = {
    s.code: s
    for s in (
        _spec("client.bad_request", 400, False, "The request does not match the operation."),
        _spec("client.unauthenticated", 401, False, "No valid credential was presented."),
        _spec("client.forbidden", 403, False, "The consumer may not call this operation."),
        _spec("client.unknown_service", 404, False, "No service of that name is configured."),
        _spec("client.unknown_operation", 404, False, "The service has no such operation."),
        _spec("client.not_found", 404, False, "No route of the bus matches this path."),
        _spec("client.method_not_allowed", 405, False, "The route exists for another method."),
        _spec(
            "client.idempotency_in_progress",
            409,
            True,
            "A call with this Idempotency-Key is still being served.",
        ),
        _spec("client.payload_too_large", 413, False, "The request body exceeds the limit."),
        _spec("client.unsupported_media_type", 415, False, "The body must be JSON."),
        _spec(
            "client.idempotency_key_reused",
            422,
            False,
            "This Idempotency-Key was used with a different request.",
        ),
        _spec("client.rate_limited", 429, True, "The consumer exceeded its rate or quota."),
        _spec(
            "client.closed_request",
            499,
            False,
            "The caller closed the connection before its request was read whole.",
        ),
        _spec("upstream.rejected", 422, False, "The national platform refused the request."),
        _spec("upstream.fault", 502, False, "The national platform answered with a fault."),
        _spec("upstream.bad_response", 502, False, "The national platform's reply is unusable."),
        _spec("upstream.unavailable", 503, True, "The national platform cannot be reached."),
        _spec("upstream.timeout", 504, True, "The national platform did not answer in time."),
        _spec("bus.internal", 500, False, "The bus failed; the request id identifies the log."),
    )
}


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field of the request, named by its dotted path."""

    field: str
    reason: str
    type: str = "invalid"


class BusError(Exception):
    """A failure with a stable code, safe to show to the caller.

    ``message`` is written for the caller and must not carry personal data or secrets.
    ``request_id`` is filled in by the pipeline when the error crosses it.
    """

    code: ClassVar[str] = "bus.internal"

    def __init__(
        self,
        message: str | None = None,
        *,
        field_errors: list[FieldError] | None = None,
        retry_after: float | None = None,
        detail: dict[str, Any] | None = None,
        request_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.spec.summary
        self.field_errors = list(field_errors or [])
        # A Retry-After that is not a finite number of seconds is dropped; a day is the most.
        self.retry_after: float | None = None
        if retry_after is not None and math.isfinite(retry_after):
            self.retry_after = min(max(retry_after, 0.0), 86_400.0)
        self.detail = dict(detail or {})
        self.request_id = request_id
        #: Extra reply headers (e.g. RateLimit-*, WWW-Authenticate); never secrets.
        self.headers = dict(headers or {})
        #: True when this failure repeats one another call already met (e.g. a token refresh
        #: shared by concurrent calls): a circuit breaker counts the original only.
        self.echo = False
        super().__init__(self.message)

    @property
    def spec(self) -> ErrorSpec:
        return CATALOGUE[self.code]

    @property
    def http_status(self) -> int:
        return self.spec.http_status

    @property
    def retryable(self) -> bool:
        return self.spec.retryable

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class ClientError(BusError):
    """The caller's request cannot be served as sent."""

    code = "client.bad_request"


class BadRequest(ClientError):
    code = "client.bad_request"


class Unauthenticated(ClientError):
    code = "client.unauthenticated"


class Forbidden(ClientError):
    code = "client.forbidden"


class UnknownService(ClientError):
    code = "client.unknown_service"


class UnknownOperation(ClientError):
    code = "client.unknown_operation"


class NotFound(ClientError):
    code = "client.not_found"


class MethodNotAllowed(ClientError):
    code = "client.method_not_allowed"


class IdempotencyInProgress(ClientError):
    code = "client.idempotency_in_progress"


class IdempotencyKeyReused(ClientError):
    code = "client.idempotency_key_reused"


class PayloadTooLarge(ClientError):
    code = "client.payload_too_large"


class UnsupportedMediaType(ClientError):
    code = "client.unsupported_media_type"


class RateLimited(ClientError):
    code = "client.rate_limited"


class ClientClosedRequest(ClientError):
    """The caller went away mid-request (nginx logs the same as 499): recorded as such, not as
    a bad request; the reply reaches no one."""

    code = "client.closed_request"


class UpstreamError(BusError):
    """The national platform failed, refused, or could not be reached."""

    code = "upstream.unavailable"


class UpstreamRejected(UpstreamError):
    code = "upstream.rejected"


class UpstreamFault(UpstreamError):
    code = "upstream.fault"


class UpstreamBadResponse(UpstreamError):
    code = "upstream.bad_response"


class UpstreamUnavailable(UpstreamError):
    code = "upstream.unavailable"


class UpstreamTimeout(UpstreamError):
    code = "upstream.timeout"


class InternalError(BusError):
    code = "bus.internal"


def error_envelope(
    request_id: str, service: str | None, operation: str | None, exc: BusError
) -> Envelope:
    """The canonical error reply for ``exc``."""
    return Envelope(
        request_id=request_id,
        service=service,
        operation=operation,
        status="error",
        data=None,
        error=ErrorBody(
            code=exc.code,
            message=exc.message,
            field_errors=[
                FieldErrorBody(field=f.field, reason=f.reason, type=f.type)
                for f in exc.field_errors
            ],
            retryable=exc.retryable,
            upstream_code=_upstream_code(exc),
        ),
    )


def _upstream_code(exc: BusError) -> str | None:
    """The platform's error code an adapter put in ``detail["error_code"]``, if any."""
    code = exc.detail.get("error_code") if isinstance(exc.detail, dict) else None
    return code[:50] if isinstance(code, str) and code else None


def _check_catalogue() -> None:
    """Every class's code must be in the catalogue; a typo fails at import, not in production."""
    pending: list[type[BusError]] = [BusError]
    while pending:
        cls = pending.pop()
        if cls.code not in CATALOGUE:  # pragma: no cover - guards edits to this file
            raise RuntimeError(f"{cls.__name__}.code {cls.code!r} is not in the catalogue")
        pending.extend(cls.__subclasses__())


_check_catalogue()
