"""The exchange log's keys: body encryption (AES-256-GCM, rotatable), the citizen blind index
and message digests (HMAC-SHA256), and the Ed25519 key that signs the chain head.

Keys come from the environment (``LGSP_AUDIT_KEYS``, ``LGSP_AUDIT_INDEX_KEY``,
``LGSP_AUDIT_SIGNING_KEY``, ``LGSP_DIGEST_KEY``; every value base64). A key that is not set is
created once and kept in the key file (``LGSP_AUDIT_KEY_FILE``, mode 0600) next to the log, with
a warning: that is for a demo or a laptop; a deployment sets them from its secret store, where a
person who can change the log file cannot also read the signing key.

``LGSP_AUDIT_KEYS`` is a comma-separated list of ``key-id:base64-key``; the first key encrypts
new bodies and every listed key decrypts. Rotating is putting a new key first and keeping the old
ones for as long as records encrypted with them are kept.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic_core
import structlog
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bus.audit.record import canonical

__all__ = ["AuditKeys", "KeyError_", "key_fingerprint", "verify_signature"]

log = structlog.get_logger("lgsp.audit.keys")


class KeyError_(Exception):  # noqa: N801 - the builtin KeyError means something else
    """A key is malformed, missing, or does not open what it should."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, name: str, length: int | None = None) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyError_(f"{name} is not valid base64") from exc
    if length is not None and len(raw) != length:
        raise KeyError_(f"{name} must be {length} bytes, base64-encoded (it is {len(raw)})")
    if length is None and len(raw) < 32:
        raise KeyError_(f"{name} must be at least 32 bytes, base64-encoded")
    return raw


def key_fingerprint(public_key: bytes) -> str:
    """A short, stable name of an Ed25519 public key: SHA-256 of its raw bytes, 16 hex."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def verify_signature(public_key_b64: str, message: bytes, signature_b64: str) -> bool:
    """Whether ``signature_b64`` is the Ed25519 signature of ``message`` by that public key."""
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64, validate=True))
        key.verify(base64.b64decode(signature_b64, validate=True), message)
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


def _parse_encryption_keys(text: str) -> tuple[str, dict[str, bytes]]:
    keys: dict[str, bytes] = {}
    current = ""
    for item in text.split(","):
        kid, sep, value = item.strip().partition(":")
        if not sep or not kid:
            raise KeyError_("LGSP_AUDIT_KEYS: write each key as key-id:base64-key")
        if kid in keys:
            raise KeyError_(f"LGSP_AUDIT_KEYS: key id {kid!r} is listed twice")
        keys[kid] = _unb64(value, f"LGSP_AUDIT_KEYS key {kid!r}", 32)
        current = current or kid
    return current, keys


class KeySigner:
    """Signs with one Ed25519 key: chain heads, checkpoints and anchors (a
    :class:`~bus.audit.store.Signer`). :class:`AuditKeys` signs through one; the exchange log's
    writer process (:mod:`bus.audit.writer`) builds its own from the same key."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        #: The public key (base64 of its raw bytes), made once: every head signed names it.
        self.public_key = _b64(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    def sign(self, message: bytes) -> str:
        return _b64(self._key.sign(message))


@dataclass(frozen=True, slots=True)
class AuditKeys:
    """Every key the exchange log uses; see the module's documentation."""

    current_kid: str
    encryption: dict[str, bytes]
    index_key: bytes
    digest_key: bytes
    signing_key: Ed25519PrivateKey
    #: One cipher per encryption key, made once (not per record).
    _ciphers: dict[str, AESGCM] = field(init=False, repr=False, compare=False)
    _signer: KeySigner = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ciphers = {kid: AESGCM(key) for kid, key in self.encryption.items()}
        object.__setattr__(self, "_ciphers", ciphers)  # frozen: set once, here
        object.__setattr__(self, "_signer", KeySigner(self.signing_key))

    # -- loading ----------------------------------------------------------------------------

    @classmethod
    def generate(cls) -> AuditKeys:
        kid = "k" + secrets.token_hex(4)
        return cls(
            current_kid=kid,
            encryption={kid: AESGCM.generate_key(bit_length=256)},
            index_key=secrets.token_bytes(32),
            digest_key=secrets.token_bytes(32),
            signing_key=Ed25519PrivateKey.generate(),
        )

    @classmethod
    def load(cls, environ: dict[str, str] | os._Environ[str], key_file: Path) -> AuditKeys:
        """The keys set in ``environ``; those not set come from ``key_file``, created once."""
        wanted = {
            "keys": environ.get("LGSP_AUDIT_KEYS"),
            "index": environ.get("LGSP_AUDIT_INDEX_KEY"),
            "digest": environ.get("LGSP_DIGEST_KEY"),
            "signing": environ.get("LGSP_AUDIT_SIGNING_KEY"),
        }
        missing = sorted(name for name, value in wanted.items() if not value)
        if missing:
            stored = _read_or_create_key_file(key_file)
            log.warning(
                "audit keys not set in the environment are kept in the key file; set "
                "LGSP_AUDIT_KEYS, LGSP_AUDIT_INDEX_KEY, LGSP_AUDIT_SIGNING_KEY and "
                "LGSP_DIGEST_KEY from a secret store in production",
                key_file=str(key_file),
                from_file=missing,
            )
            for name in missing:
                wanted[name] = stored[name]
        keys_text = wanted["keys"]
        index_text = wanted["index"]
        digest_text = wanted["digest"]
        signing_text = wanted["signing"]
        assert keys_text
        assert index_text
        assert digest_text
        assert signing_text
        current, encryption = _parse_encryption_keys(keys_text)
        seed = _unb64(signing_text, "LGSP_AUDIT_SIGNING_KEY", 32)
        return cls(
            current_kid=current,
            encryption=encryption,
            index_key=_unb64(index_text, "LGSP_AUDIT_INDEX_KEY"),
            digest_key=_digest_key(digest_text),
            signing_key=Ed25519PrivateKey.from_private_bytes(seed),
        )

    # -- use ----------------------------------------------------------------------------------

    def encrypt(self, plaintext: bytes, aad: bytes) -> dict[str, str]:
        """AES-256-GCM under the current key; ``aad`` (the record id) binds it to its record."""
        nonce = secrets.token_bytes(12)
        sealed = self._ciphers[self.current_kid].encrypt(nonce, plaintext, aad)
        return {"kid": self.current_kid, "nonce": _b64(nonce), "ct": _b64(sealed)}

    def decrypt(self, body: dict[str, str], aad: bytes) -> bytes:
        cipher = self._ciphers.get(body.get("kid", ""))
        if cipher is None:
            raise KeyError_(f"no key {body.get('kid')!r} to decrypt this body (rotated out?)")
        try:
            return cipher.decrypt(
                base64.b64decode(body["nonce"]), base64.b64decode(body["ct"]), aad
            )
        except (InvalidTag, KeyError, ValueError, binascii.Error) as exc:
            raise KeyError_("the body does not decrypt: altered, or another record's") from exc

    def seal_bodies(
        self, request: bytes | None, reply: bytes | None, record_id: str
    ) -> dict[str, str]:
        """A record's request and reply, encrypted together and bound to the record."""
        plaintext = canonical({"request": _text(request), "reply": _text(reply)})
        return self.encrypt(plaintext, record_id.encode())

    def open_bodies(self, body: Any, record_id: str) -> tuple[str | None, str | None]:
        """The request and reply :meth:`seal_bodies` sealed; KeyError_ saying why not."""
        if not isinstance(body, dict):
            raise KeyError_("the stored body is not an encrypted body")
        try:
            opened: Any = pydantic_core.from_json(self.decrypt(body, record_id.encode()))
        except ValueError:
            raise KeyError_("the decrypted body is malformed") from None
        if not isinstance(opened, dict):
            raise KeyError_("the decrypted body is not a request and reply")
        request, reply = opened.get("request"), opened.get("reply")
        if not all(part is None or isinstance(part, str) for part in (request, reply)):
            raise KeyError_("the decrypted body is malformed")
        return request, reply

    def blind(self, value: str) -> str:
        """The keyed blind index of a citizen id: finds its records without storing it."""
        return hmac.new(self.index_key, value.strip().encode(), hashlib.sha256).hexdigest()

    def digest(self, data: bytes) -> str:
        """HMAC-SHA256 (hex) of a message: re-checkable by key holders, not brute-forceable
        from a short message (a request naming a 12-digit id) by anyone else."""
        return hmac.new(self.digest_key, data, hashlib.sha256).hexdigest()

    @property
    def public_key(self) -> str:
        return self._signer.public_key

    @property
    def signer_id(self) -> str:
        return key_fingerprint(base64.b64decode(self.public_key))

    def sign(self, message: bytes) -> str:
        return self._signer.sign(message)


def _text(body: bytes | None) -> str | None:
    return None if body is None else body.decode("utf-8", "replace")


def _digest_key(text: str) -> bytes:
    """LGSP_DIGEST_KEY predates the audit keys and was taken as text; base64 is preferred."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    return raw if len(raw) >= 32 else text.encode()


def _read_or_create_key_file(path: Path) -> dict[str, str]:
    if path.exists():
        try:
            stored: Any = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise KeyError_(f"the audit key file {path} cannot be read: {exc}") from exc
        if not isinstance(stored, dict) or not all(
            isinstance(stored.get(k), str) for k in ("keys", "index", "digest", "signing")
        ):
            raise KeyError_(f"the audit key file {path} is not one this bus wrote")
        return {k: str(stored[k]) for k in ("keys", "index", "digest", "signing")}
    keys = AuditKeys.generate()
    seed = keys.signing_key.private_bytes_raw()
    created: dict[str, str] = {
        "keys": f"{keys.current_kid}:{_b64(keys.encryption[keys.current_kid])}",
        "index": _b64(keys.index_key),
        "digest": _b64(keys.digest_key),
        "signing": _b64(seed),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(created, out)
        out.flush()
        os.fsync(out.fileno())
    try:  # another process of the deployment may have created it first: its keys win
        os.link(partial, path)
    except FileExistsError:
        return _read_or_create_key_file(path)
    finally:
        partial.unlink()
    return created
