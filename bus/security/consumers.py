"""Operator actions on consumers, shared by the CLI (``lgsp consumers``, ``lgsp keys``) and the
admin API: create, list, show, suspend, activate, grant and revoke rights, set limits, rotate
the secret, create and revoke API keys, and their JSON views. Secrets and keys are returned
once, here, and never stored in clear.

Rights are written ``service/operation`` (``population/citizen.lookup``) or ``service/*`` for
every operation of a service.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from bus.errors import BadRequest, FieldError
from bus.security.credentials import (
    hash_api_secret,
    hash_client_secret,
    new_api_key,
    new_client_secret,
)
from bus.security.store import ApiKeyRecord, ConsumerRecord, ConsumerStore, Limits, StoreError

__all__ = [
    "CONSUMER_ID",
    "Consumers",
    "UnknownKey",
    "check_quota_key",
    "consumer_view",
    "key_view",
    "limits_view",
    "parse_right",
]

CONSUMER_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")
_RIGHT = re.compile(r"^([a-z][a-z0-9_-]{0,62})/([A-Za-z0-9._-]{1,100}|\*)$")


class UnknownKey(StoreError):
    """The named API key does not exist."""


def parse_right(text: str) -> tuple[str, str]:
    """``"population/citizen.lookup"`` -> ``("population", "citizen.lookup")``."""
    match = _RIGHT.fullmatch(text.strip())
    if match is None:
        raise StoreError(f"{text!r} is not a right: write service/operation or service/*")
    return match.group(1), match.group(2)


def check_quota_key(text: str) -> str:
    """A per-operation quota is keyed ``service/operation``; a wildcard names no operation."""
    try:
        service, operation = parse_right(text)
    except StoreError as exc:
        raise ValueError(str(exc)) from exc
    right = f"{service}/{operation}"
    if right.endswith("/*"):
        raise ValueError(f"{text!r}: a quota is per operation, write service/operation")
    return right


# --- JSON views (the CLI's --json output and the admin API; never a hash or a secret) ---


def limits_view(limits: Limits) -> dict[str, Any]:
    return {
        "rate_per_second": limits.rate_per_second,
        "burst": limits.burst,
        "daily_quota": limits.daily_quota,
        "quotas": dict(sorted(limits.quotas.items())),
    }


def key_view(key: ApiKeyRecord) -> dict[str, Any]:
    """An API key without its hash: id, owner, when created and when (if) revoked."""
    return {
        "key_id": key.key_id,
        "consumer_id": key.consumer_id,
        "status": "active" if key.revoked_at is None else "revoked",
        "created_at": key.created_at,
        "revoked_at": key.revoked_at,
    }


def consumer_view(record: ConsumerRecord, keys: list[ApiKeyRecord] | None = None) -> dict[str, Any]:
    """A consumer as JSON; with ``keys``, its API keys too."""
    view: dict[str, Any] = {
        "id": record.id,
        "name": record.name,
        "agency": record.agency,
        "status": record.status,
        "rights": sorted(f"{service}/{operation}" for service, operation in record.rights),
        "limits": limits_view(record.limits),
        "created_at": record.created_at,
    }
    if keys is not None:
        view["keys"] = [key_view(k) for k in keys]
    return view


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Consumers:
    def __init__(self, store: ConsumerStore) -> None:
        self.store = store

    async def create(
        self,
        consumer_id: str,
        name: str,
        agency: str | None = None,
        rights: list[str] | None = None,
        limits: Limits | None = None,
    ) -> tuple[ConsumerRecord, str]:
        """A new active consumer and its client secret (shown once)."""
        if not CONSUMER_ID.fullmatch(consumer_id):
            raise StoreError(
                f"{consumer_id!r} is not a valid consumer id: 2-63 of a-z, 0-9, '.', '_', '-'"
            )
        if not name.strip():
            raise StoreError("a consumer needs a display name")
        record = ConsumerRecord(
            id=consumer_id,
            name=name.strip(),
            agency=agency,
            rights=frozenset(parse_right(r) for r in rights or []),
            limits=limits or Limits(),
        )
        secret = new_client_secret()
        await self.store.add(record, hash_client_secret(secret))
        return await self.get(consumer_id), secret

    async def get(self, consumer_id: str) -> ConsumerRecord:
        record = await self.store.get(consumer_id)
        if record is None:
            raise StoreError(f"no consumer with id {consumer_id!r}")
        return record

    async def list_all(self) -> list[ConsumerRecord]:
        return await self.store.list_all()

    async def set_status(self, consumer_id: str, active: bool) -> ConsumerRecord:
        record = replace(await self.get(consumer_id), status="active" if active else "suspended")
        await self.store.update(record)
        return record

    async def change_rights(
        self, consumer_id: str, grant: list[str], revoke: list[str]
    ) -> ConsumerRecord:
        """Grant and revoke rights; every right is checked before any is changed.

        Raises :class:`BadRequest` naming each refused right (``grant[1]``, ``revoke[0]``), or
        :class:`StoreError` when the consumer does not exist.
        """
        record = await self.get(consumer_id)
        problems: list[FieldError] = []
        granted: set[tuple[str, str]] = set()
        for i, text in enumerate(grant):
            try:
                granted.add(parse_right(text))
            except StoreError as exc:
                problems.append(FieldError(f"grant[{i}]", str(exc), "value_error"))
        revoked: set[tuple[str, str]] = set()
        for i, text in enumerate(revoke):
            try:
                right = parse_right(text)
            except StoreError as exc:
                problems.append(FieldError(f"revoke[{i}]", str(exc), "value_error"))
                continue
            if right not in record.rights:
                reason = f"consumer {consumer_id!r} does not hold the right {'/'.join(right)!r}"
                problems.append(FieldError(f"revoke[{i}]", reason, "not_held"))
            elif right in granted:
                problems.append(
                    FieldError(f"revoke[{i}]", "granted and revoked at once", "conflict")
                )
            revoked.add(right)
        if problems:
            raise BadRequest("rights refused; nothing was changed", field_errors=problems)
        if not granted and not revoked:
            raise BadRequest("name rights to grant or to revoke")
        rights = (record.rights | granted) - revoked
        if rights != record.rights:
            record = replace(record, rights=frozenset(rights))
            await self.store.update(record)
        return record

    async def set_limits(self, consumer_id: str, limits: Limits) -> ConsumerRecord:
        record = replace(await self.get(consumer_id), limits=limits)
        await self.store.update(record)
        return record

    async def rotate_secret(self, consumer_id: str) -> str:
        """A new client secret (shown once); the old one stops working at once."""
        await self.get(consumer_id)
        secret = new_client_secret()
        await self.store.set_secret_hash(consumer_id, hash_client_secret(secret))
        return secret

    async def create_key(self, consumer_id: str) -> tuple[str, ApiKeyRecord]:
        """A new API key (the full key is shown once) and its record."""
        await self.get(consumer_id)
        full, key_id, secret = new_api_key()
        record = ApiKeyRecord(key_id, consumer_id, hash_api_secret(secret), _now())
        await self.store.add_key(record)
        return full, record

    async def revoke_key(self, key_id: str) -> ApiKeyRecord:
        """Revoke an API key; the revoked record. Unknown or already revoked keys are errors."""
        key = await self.store.get_key(key_id)
        if key is None:
            raise UnknownKey(f"no API key with id {key_id!r}")
        if key.revoked_at is not None:
            raise StoreError(f"API key {key_id!r} was already revoked at {key.revoked_at}")
        await self.store.revoke_key(key_id, _now())
        return await self.store.get_key(key_id) or key

    async def keys(self, consumer_id: str) -> list[ApiKeyRecord]:
        await self.get(consumer_id)
        return await self.store.keys_of(consumer_id)
