"""The signed headers of the national document exchange axis: pure functions, no I/O.

Every call carries the axis headers (``systemid``, ``timestamp``, ``servicetype``,
``messagetype``, ``from``, ``to``, ``docId``, and on ``sendEdoc`` ``hash-file``); each header
``X`` is sent again as ``XroadVnpt-X``, and then::

    XroadVnpt-sign-header-key   the signed names joined by ";"          systemid;timestamp;...
    XroadVnpt-sign-header       a JSON object of those headers           {"systemid": "...", ...}
    XroadVnpt-hash-header       hex HMAC-SHA256(secret, that exact JSON)
    XroadVnpt-version           the protocol version (not signed)

The verifier computes the HMAC over the JSON text exactly as received, so the JSON's spacing
does not matter; it must be an object of strings whose names are exactly the signed names, and
each value must equal both the plain header and its ``XroadVnpt-`` copy. Header names are
compared without regard to case (HTTP's rule). The JSON is written ASCII-only, so every header
value stays a valid HTTP header value.

The adapter signs with these functions; the document axis mock imports them to verify (mocks may
use adapters' pure helpers; adapters never import mocks).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Literal

__all__ = [
    "DEFAULT_VERSION",
    "HASH_HEADER",
    "PREFIX",
    "SIGN_HEADER",
    "SIGN_KEY_HEADER",
    "VERSION_HEADER",
    "VIETNAM",
    "TimestampFormat",
    "file_hash",
    "format_timestamp",
    "header_hmac",
    "parse_timestamp",
    "signed_headers",
    "verify_signed_headers",
]

PREFIX = "XroadVnpt-"
SIGN_KEY_HEADER = "XroadVnpt-sign-header-key"
SIGN_HEADER = "XroadVnpt-sign-header"
HASH_HEADER = "XroadVnpt-hash-header"
VERSION_HEADER = "XroadVnpt-version"
DEFAULT_VERSION = "1.0"
#: Vietnam's time zone (UTC+7, no daylight saving): the reading of a timestamp without offset.
VIETNAM = timezone(timedelta(hours=7), "ICT")

#: How the ``timestamp`` header is written: milliseconds or seconds since the epoch, or ISO 8601
#: with its offset (guess: public clients disagree; the mock reads all three).
TimestampFormat = Literal["epoch_ms", "epoch_s", "iso8601"]


def header_hmac(secret: str, signed_json: str) -> str:
    """Hex HMAC-SHA256 of the signed-header JSON under the system's secret."""
    return hmac.new(secret.encode(), signed_json.encode(), hashlib.sha256).hexdigest()


def file_hash(data: bytes) -> str:
    """The ``hash-file`` header of a ``sendEdoc`` body: SHA-256, hex."""
    return hashlib.sha256(data).hexdigest()


def signed_headers(
    headers: Mapping[str, str], secret: str, *, version: str = DEFAULT_VERSION
) -> dict[str, str]:
    """``headers`` plus their ``XroadVnpt-`` copies, the signature headers and the version."""
    if not headers:
        raise ValueError("at least one header must be signed")
    for name in headers:
        if ";" in name or not name.strip():
            raise ValueError(f"header name {name!r} cannot be signed")
    signed_json = json.dumps(dict(headers), ensure_ascii=True, separators=(",", ":"))
    out = dict(headers)
    out.update({PREFIX + name: value for name, value in headers.items()})
    out[SIGN_KEY_HEADER] = ";".join(headers)
    out[SIGN_HEADER] = signed_json
    out[HASH_HEADER] = header_hmac(secret, signed_json)
    out[VERSION_HEADER] = version
    return out


def verify_signed_headers(headers: Mapping[str, str], secret: str) -> str | None:
    """Why the signature of ``headers`` does not hold under ``secret``; None when it holds."""
    received = {name.lower(): value for name, value in headers.items()}
    for required in (SIGN_KEY_HEADER, SIGN_HEADER, HASH_HEADER):
        if not received.get(required.lower()):
            return f"{required} is missing"
    signed_json = received[SIGN_HEADER.lower()]
    expected = header_hmac(secret, signed_json)
    if not hmac.compare_digest(expected, received[HASH_HEADER.lower()].strip().lower()):
        return f"{HASH_HEADER} does not match the signed headers"
    try:
        values = json.loads(signed_json)
    except ValueError:
        return f"{SIGN_HEADER} is not JSON"
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        return f"{SIGN_HEADER} is not a JSON object of strings"
    names = [n.strip() for n in received[SIGN_KEY_HEADER.lower()].split(";") if n.strip()]
    if sorted(n.lower() for n in names) != sorted(str(k).lower() for k in values):
        return f"{SIGN_KEY_HEADER} does not name the headers of {SIGN_HEADER}"
    for name, value in values.items():
        key = str(name).lower()
        if received.get(key) != value or received.get((PREFIX + key).lower()) != value:
            return f"header {name} differs from its signed value"
    return None


def format_timestamp(when: datetime, fmt: TimestampFormat) -> str:
    """The ``timestamp`` header for the instant ``when`` (timezone-aware)."""
    if fmt == "epoch_ms":
        return str(int(when.timestamp() * 1000))
    if fmt == "epoch_s":
        return str(int(when.timestamp()))
    return when.isoformat(timespec="seconds")


def parse_timestamp(value: str) -> datetime | None:
    """The instant of a ``timestamp`` header in any :data:`TimestampFormat` (13 digits:
    milliseconds, 10 digits: seconds); ISO 8601 without an offset is Vietnam time. None when
    unreadable."""
    text = value.strip()
    try:
        if text.isascii() and text.isdigit() and len(text) in (10, 13):
            number = int(text)
            return datetime.fromtimestamp(number / 1000 if len(text) == 13 else number, UTC)
        parsed = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=VIETNAM)
