"""Consumers' webhooks: where a consumer receives the events the bus delivers to it.

An operator registers one webhook per consumer (``lgsp consumers webhook``, or
``PUT /v1/admin/consumers/{id}/webhook``); the bus creates its signing secret and shows it once.
Events (a PayGov payment confirmation turned into ``payment.confirmed``) are queued by the
callback route and sent by the delivery worker with :func:`send_event`, with the queue's
long-horizon retries and dead-letter list. Each request is signed the Standard Webhooks way
(see :class:`schemas.event.EventEnvelope`).

A webhook answering 2xx has the event. 410 Gone means the receiver will never take it: the
delivery goes to the dead-letter list at once; so does an event for a consumer without a
webhook (register one, then ``lgsp deliveries retry``). Any other answer, or none, is retried.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from bus.errors import UpstreamRejected, UpstreamUnavailable
from bus.sqlite import SqliteFile
from bus.upstream import parse_retry_after, translate_http_error

__all__ = [
    "SECRET_PREFIX",
    "SqliteWebhookStore",
    "Webhook",
    "WebhookStore",
    "check_url",
    "new_secret",
    "post_event",
    "redacted",
    "register",
    "signature",
    "webhook_view",
]

SECRET_PREFIX = "whsec_"  # noqa: S105 - the marker of a secret, not a secret
MAX_URL = 2000


@dataclass(frozen=True, slots=True)
class Webhook:
    consumer: str
    url: str
    secret: str
    updated_at: float


class WebhookStore(Protocol):
    async def get(self, consumer: str) -> Webhook | None: ...
    async def set(self, webhook: Webhook) -> None: ...
    async def remove(self, consumer: str) -> bool: ...
    async def close(self) -> None: ...


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def check_url(url: str) -> str:
    """The URL if it can be a webhook (http or https, with a host), else ``ValueError``."""
    url = url.strip()
    parts = urlsplit(url)
    if len(url) > MAX_URL or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"a webhook is an http(s) URL with a host, at most {MAX_URL} characters")
    if parts.username or parts.password:
        raise ValueError("a webhook URL must not carry credentials; the bus signs each request")
    return url


def redacted(url: str) -> str:
    """The URL without its query string and fragment (they may carry tokens): for records."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def signature(secret: str, event_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: ``v1,`` + base64 HMAC-SHA256 of
    ``id.timestamp.body`` under the secret's key bytes."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{event_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


async def post_event(
    http: httpx.AsyncClient,
    webhook: Webhook,
    event_id: str,
    body: bytes,
    timestamp: int,
    limits: httpx.Timeout,
) -> int:
    """POST one signed event; its HTTP status when 2xx, else the catalogue error."""
    headers = {
        "Content-Type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(webhook.secret, event_id, timestamp, body),
    }
    try:
        response = await http.post(webhook.url, content=body, headers=headers, timeout=limits)
    except httpx.HTTPError as exc:
        raise translate_http_error(exc) from exc
    status = response.status_code
    if 200 <= status < 300:
        return status
    if status == 410:
        raise UpstreamRejected(
            "the consumer's webhook answered 410 Gone: it will not take this event",
            detail={"http_status": status},
        )
    raise UpstreamUnavailable(
        f"the consumer's webhook answered HTTP {status}",
        retry_after=parse_retry_after(response.headers.get("retry-after")),
        detail={"http_status": status},
    )


_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhooks (
    consumer TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID;
"""


class SqliteWebhookStore(SqliteFile):
    def __init__(self, path: Path | str) -> None:
        super().__init__(path, _SCHEMA, synchronous="FULL")

    async def get(self, consumer: str) -> Webhook | None:
        def read(db: sqlite3.Connection) -> Webhook | None:
            row = db.execute(
                "SELECT consumer, url, secret, updated_at FROM webhooks WHERE consumer = ?",
                (consumer,),
            ).fetchone()
            return None if row is None else Webhook(*row)

        return await self._run(read)

    async def set(self, webhook: Webhook) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO webhooks (consumer, url, secret, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (consumer) DO UPDATE SET url = excluded.url, "
                "secret = excluded.secret, updated_at = excluded.updated_at",
                (webhook.consumer, webhook.url, webhook.secret, webhook.updated_at),
            )

        await self._write(write)

    async def remove(self, consumer: str) -> bool:
        def delete(db: sqlite3.Connection) -> bool:
            return db.execute("DELETE FROM webhooks WHERE consumer = ?", (consumer,)).rowcount > 0

        return await self._write(delete)


async def register(
    store: WebhookStore, consumer: str, url: str, now: float, *, rotate: bool = False
) -> Webhook:
    """Set ``consumer``'s webhook to ``url`` (``ValueError`` if it cannot be one), keeping its
    signing secret unless ``rotate`` (or there was none: a new one is made)."""
    url = check_url(url)
    current = await store.get(consumer)
    secret = current.secret if current is not None and not rotate else new_secret()
    webhook = Webhook(consumer=consumer, url=url, secret=secret, updated_at=now)
    await store.set(webhook)
    return webhook


def webhook_view(webhook: Webhook, *, with_secret: bool) -> dict[str, object]:
    view: dict[str, object] = {
        "consumer_id": webhook.consumer,
        "url": webhook.url,
        "updated_at": webhook.updated_at,
    }
    if with_secret:
        view["secret"] = webhook.secret
    return view
