"""The auditor role: people or systems allowed to read the exchange log, and nothing else.

Auditors are kept in the exchange log's own store (:meth:`bus.audit.store.AuditStore.add_auditor`),
apart from consumers and from the admin token:

- a consumer credential (access token, API key) or the admin token does not open the audit API
  (``/v1/audit``), and an auditor key does not call a service: the consumer authenticator
  (:mod:`bus.security.auth`) reads only ``lgsp_`` API keys and its own signed tokens, and an
  auditor key is neither;
- an auditor key looks like ``lgspaudit_<key id: 12 hex>_<secret>``; it is shown once, when the
  auditor is created. The store keeps ``<key id>:<SHA-256 of the secret>`` in
  :attr:`Auditor.key_hash` (the key id finds the auditor, the secret is 256 random bits, so a
  fast hash suffices; the comparison is constant-time);
- reading the encrypted request and reply bodies is a right of its own (``can_read_bodies``),
  granted and revoked apart; a suspended auditor is refused.

The audit API presents the key as ``Authorization: Bearer <auditor key>``
(:meth:`Auditors.authenticate`).
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from bus.audit.store import Auditor, AuditStore, AuditStoreError
from bus.errors import Unauthenticated
from bus.security.credentials import hash_api_secret

__all__ = [
    "AUDITOR_ID",
    "AUDIT_KEY_PREFIX",
    "DISABLED",
    "UNKNOWN",
    "Auditors",
    "auditor_view",
    "key_id_of",
    "new_audit_key",
    "parse_audit_key",
    "refused_auditor",
]

AUDIT_KEY_PREFIX = "lgspaudit"
#: What an auditor id may look like (as a consumer id): 2-63 of a-z, 0-9, '.', '_', '-'.
AUDITOR_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")
#: Who a refused read of the log is recorded as, when no auditor key was verified.
UNKNOWN = "unknown"
_RESERVED = frozenset({UNKNOWN, "anonymous"})
DISABLED = "the audit API is disabled: this gateway process keeps no exchange log"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="lgsp-audit"'}
_HOW = "the audit API needs Authorization: Bearer <auditor key> (lgsp auditors add)"


def new_audit_key() -> tuple[str, str, str]:
    """A new auditor key: (the full key to show once, its key id, the secret part)."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return f"{AUDIT_KEY_PREFIX}_{key_id}_{secret}", key_id, secret


def parse_audit_key(key: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed auditor key, else None."""
    prefix, _, rest = key.partition("_")
    key_id, _, secret = rest.partition("_")
    if (
        prefix != AUDIT_KEY_PREFIX
        or len(key_id) != 12
        or any(c not in "0123456789abcdef" for c in key_id)
        or len(secret) < 32
    ):
        return None
    return key_id, secret


def _key_hash(key_id: str, secret: str) -> str:
    return f"{key_id}:{hash_api_secret(secret)}"


def key_id_of(auditor: Auditor) -> str:
    """The (public) key id of an auditor's key."""
    return auditor.key_hash.partition(":")[0]


def auditor_view(auditor: Auditor) -> dict[str, Any]:
    """An auditor as the CLI's ``--json`` shows it: never the key nor its hash."""
    return {
        "id": auditor.id,
        "name": auditor.name,
        "status": "active" if auditor.active else "suspended",
        "can_read_bodies": auditor.can_read_bodies,
        "key_id": key_id_of(auditor),
        "created_at": auditor.created_at,
    }


def _refused(message: str, auditor_id: str | None = None) -> Unauthenticated:
    # The detail is not sent to the caller: it names who to record the refused read as.
    detail = {"auditor": auditor_id} if auditor_id is not None else None
    return Unauthenticated(message, headers=_CHALLENGE, detail=detail)


def refused_auditor(exc: Unauthenticated) -> str:
    """Who a read refused with ``exc`` is recorded as: the auditor whose key was verified
    (a suspended one), else :data:`UNKNOWN`."""
    who = exc.detail.get("auditor")
    return who if isinstance(who, str) else UNKNOWN


class Auditors:
    """Create, authenticate and change auditors kept in an exchange log store."""

    def __init__(
        self, store: AuditStore, now: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.store = store
        self._now = now

    async def create(
        self, auditor_id: str, name: str, *, can_read_bodies: bool = False
    ) -> tuple[Auditor, str]:
        """A new active auditor and its key (shown once: the store keeps only its hash)."""
        if not AUDITOR_ID.fullmatch(auditor_id):
            raise AuditStoreError(
                f"{auditor_id!r} is not a valid auditor id: 2-63 of a-z, 0-9, '.', '_', '-', "
                "starting with a-z or 0-9"
            )
        if auditor_id in _RESERVED:
            raise AuditStoreError(f"{auditor_id!r} is reserved: choose another auditor id")
        name = name.strip()
        if not name or len(name) > 200:
            raise AuditStoreError("an auditor needs a display name of 1 to 200 characters")
        if await self.store.get_auditor(auditor_id) is not None:
            raise AuditStoreError(f"an auditor with id {auditor_id!r} already exists")
        full, key_id, secret = new_audit_key()
        auditor = Auditor(
            id=auditor_id,
            name=name,
            key_hash=_key_hash(key_id, secret),
            can_read_bodies=can_read_bodies,
            active=True,
            created_at=self._now().astimezone(UTC).isoformat(timespec="seconds"),
        )
        await self.store.add_auditor(auditor)
        return auditor, full

    async def get(self, auditor_id: str) -> Auditor:
        auditor = await self.store.get_auditor(auditor_id)
        if auditor is None:
            raise AuditStoreError(f"no auditor with id {auditor_id!r}")
        return auditor

    async def list_all(self) -> list[Auditor]:
        return await self.store.list_auditors()

    async def set_bodies(self, auditor_id: str, allowed: bool) -> Auditor:
        """Grant (``allowed``) or revoke the right to read decrypted bodies."""
        await self.get(auditor_id)
        return await self.store.update_auditor(auditor_id, can_read_bodies=allowed)

    async def set_active(self, auditor_id: str, active: bool) -> Auditor:
        """Activate, or suspend: a suspended auditor's key is refused until activated."""
        await self.get(auditor_id)
        return await self.store.update_auditor(auditor_id, active=active)

    async def authenticate(self, headers: Mapping[str, str]) -> Auditor:
        """The auditor presenting ``Authorization: Bearer <auditor key>``; raises
        :class:`bus.errors.Unauthenticated` saying why not (never echoing the credential)."""
        scheme, _, presented = headers.get("authorization", "").partition(" ")
        presented = presented.strip()
        if scheme.lower() != "bearer" or not presented:
            raise _refused(_HOW)
        parsed = parse_audit_key(presented)
        if parsed is None:
            raise _refused(
                "not an auditor key: the audit API accepts only auditor keys (lgspaudit_...); "
                "consumer credentials and the admin token do not open it"
            )
        key_id, secret = parsed
        expected = _key_hash(key_id, secret)
        found = None
        for auditor in await self.store.list_auditors():  # a handful: no index needed
            if key_id_of(auditor) == key_id:
                found = auditor
                break
        if found is None or not hmac.compare_digest(found.key_hash, expected):
            raise _refused("the auditor key is not valid")
        if not found.active:
            raise _refused(f"auditor {found.id!r} is suspended", found.id)
        return found
