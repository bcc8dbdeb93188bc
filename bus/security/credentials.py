"""Consumer credentials: client secrets (slow hash), API keys (shown once, hashed), and the
short-lived signed access tokens (JWT) the gateway verifies locally on every call.

- Client secrets are hashed with scrypt (stdlib ``hashlib.scrypt``, N=2^14, r=8, p=1, random
  salt) and compared in constant time.
- API keys look like ``lgsp_<key id>_<secret>``: the key id finds the record, the secret is
  256 random bits, stored as its SHA-256 (a slow hash adds nothing to a random 256-bit value),
  compared in constant time.
- Access tokens are HS256 JWTs with ``iss``, ``aud``, ``sub`` (the consumer id), ``iat``,
  ``exp``, ``jti`` and ``scope`` (space-separated ``service/operation`` rights). The signing key
  comes from ``LGSP_TOKEN_SIGNING_KEY`` or, when unset, is created once and kept in the store, so
  every gateway process of one deployment shares it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import uuid
from dataclasses import dataclass

import jwt

__all__ = [
    "TokenClaims",
    "TokenError",
    "TokenSigner",
    "hash_api_secret",
    "hash_client_secret",
    "new_api_key",
    "new_client_secret",
    "parse_api_key",
    "verify_api_secret",
    "verify_client_secret",
]

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
API_KEY_PREFIX = "lgsp"
LEEWAY = 5  # seconds of clock skew tolerated between gateway processes
#: How many verified access tokens a process remembers (see TokenSigner.verify).
VERIFIED_TOKENS = 10_000


def new_client_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_client_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, dklen=32, **_SCRYPT)
    b64 = base64.urlsafe_b64encode
    params = f"{_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}"
    return f"scrypt${params}${b64(salt).decode()}${b64(digest).decode()}"


def verify_client_secret(secret: str, stored: str | None) -> bool:
    """Constant-time check of ``secret`` against a stored scrypt hash; False on any mismatch."""
    if not stored:
        # Spend the same time as a real check, so timing does not reveal unknown consumers.
        hashlib.scrypt(secret.encode(), salt=b"0" * 16, dklen=32, **_SCRYPT)
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.urlsafe_b64decode(digest)
        actual = hashlib.scrypt(
            secret.encode(),
            salt=base64.urlsafe_b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def new_api_key() -> tuple[str, str, str]:
    """A new API key: (the full key to show once, its key id, the secret part)."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return f"{API_KEY_PREFIX}_{key_id}_{secret}", key_id, secret


def parse_api_key(key: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    prefix, _, rest = key.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != API_KEY_PREFIX or len(key_id) != 12 or len(secret) < 32:
        return None
    return key_id, secret


def hash_api_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def verify_api_secret(secret: str, stored: str) -> bool:
    return hmac.compare_digest(hash_api_secret(secret), stored)


class TokenError(Exception):
    """A presented access token is not acceptable; the message says why (never the token)."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    consumer_id: str
    scopes: frozenset[str]
    expires_at: int
    token_id: str


class TokenSigner:
    """Issues and verifies the gateway's access tokens."""

    algorithm = "HS256"

    def __init__(self, key: bytes, issuer: str, audience: str, lifetime: int) -> None:
        if len(key) < 32:
            raise ValueError("the token signing key must be at least 32 bytes")
        self._key = key
        self.issuer = issuer
        self.audience = audience
        self.lifetime = lifetime
        #: Tokens whose signature and claims were checked: token -> (claims, exp, iat). A
        #: service sends the same token on every call of its lifetime, so the HMAC and the
        #: JSON of the token are checked once; the times are checked on every call.
        self._verified: dict[str, tuple[TokenClaims, float, float]] = {}

    def issue(self, consumer_id: str, scopes: frozenset[str], now: int) -> tuple[str, int]:
        """A signed token for ``consumer_id`` and its lifetime in seconds."""
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": consumer_id,
            "iat": now,
            "nbf": now,
            "exp": now + self.lifetime,
            "jti": uuid.uuid4().hex,
            "scope": " ".join(sorted(scopes)),
        }
        return jwt.encode(claims, self._key, algorithm=self.algorithm), self.lifetime

    def verify(self, token: str, now: float) -> TokenClaims:
        """The claims of a valid token; times are checked against ``now`` (the bus's clock)."""
        known = self._verified.get(token)
        if known is None:
            known = self._decode(token)
            if len(self._verified) >= VERIFIED_TOKENS:  # bounded: forget the oldest
                del self._verified[next(iter(self._verified))]
            self._verified[token] = known
        claims, expires, issued = known
        if now >= expires + LEEWAY:
            raise TokenError("the access token has expired")
        if issued > now + LEEWAY:
            raise TokenError("the access token is not valid yet")
        return claims

    def _decode(self, token: str) -> tuple[TokenClaims, float, float]:
        """The claims of a token whose signature, algorithm, audience and issuer are right."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self.algorithm],  # never "none", never another algorithm
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require": ["iss", "aud", "sub", "exp", "iat", "jti"],
                    "verify_exp": False,  # checked below against the bus's clock
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.InvalidAudienceError as exc:
            raise TokenError("the access token is for another audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenError("the access token was issued by someone else") from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenError("the access token's signature is not valid") from exc
        except jwt.InvalidTokenError as exc:
            raise TokenError("the access token is malformed") from exc
        try:
            expires, issued = float(claims["exp"]), float(claims["iat"])
        except (TypeError, ValueError) as exc:
            raise TokenError("the access token is malformed") from exc
        if not (math.isfinite(expires) and math.isfinite(issued)):
            raise TokenError("the access token is malformed")
        scope = claims.get("scope", "")
        verified = TokenClaims(
            consumer_id=str(claims["sub"]),
            scopes=frozenset(str(scope).split()) if isinstance(scope, str) else frozenset(),
            expires_at=int(expires),
            token_id=str(claims["jti"]),
        )
        return verified, expires, issued
