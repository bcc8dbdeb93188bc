"""Translation of HTTP-level upstream failures into the bus's error catalogue.

Adapters call :func:`raise_for_upstream_status` on replies they receive; the pipeline calls
:func:`translate_http_error` on any httpx error that escapes an adapter, so a transport failure
always reaches the caller as an ``upstream.*`` code, never as a stack trace.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from bus.errors import (
    BusError,
    UpstreamFault,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)

__all__ = [
    "MAX_RETRY_AFTER",
    "parse_retry_after",
    "raise_for_upstream_status",
    "translate_http_error",
]

_UNAVAILABLE = frozenset({502, 503, 504})


#: The longest Retry-After the bus will honour or pass on (one day).
MAX_RETRY_AFTER = 86_400.0


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), capped at a day;
    None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def raise_for_upstream_status(response: httpx.Response) -> None:
    """Raise the catalogue error for a non-2xx upstream reply; do nothing on success.

    429 and 502/503/504 are ``upstream.unavailable`` (retryable, with ``Retry-After`` kept);
    other 5xx are ``upstream.fault``; 4xx are ``upstream.rejected``.
    """
    status = response.status_code
    if status < 400:
        return
    where = f"{response.request.method} {response.request.url.copy_with(query=None)}"
    if status == 429 or status in _UNAVAILABLE:
        raise UpstreamUnavailable(
            f"the national platform answered {status}",
            retry_after=parse_retry_after(response.headers.get("retry-after")),
            detail={"upstream_status": status, "upstream": where},
        )
    if status >= 500:
        raise UpstreamFault(
            f"the national platform answered {status}",
            detail={"upstream_status": status, "upstream": where},
        )
    raise UpstreamRejected(
        f"the national platform refused the request with {status}",
        detail={"upstream_status": status, "upstream": where},
    )


def translate_http_error(exc: httpx.HTTPError) -> BusError:
    """Map an httpx exception onto the catalogue; the caller raises the result ``from exc``."""
    if isinstance(exc, httpx.HTTPStatusError):
        try:
            raise_for_upstream_status(exc.response)
        except BusError as err:
            return err
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout("the national platform did not answer in time")
    if isinstance(exc, httpx.TransportError):
        return UpstreamUnavailable(
            f"the national platform cannot be reached ({type(exc).__name__})"
        )
    return UpstreamFault(f"the exchange with the national platform failed ({type(exc).__name__})")
