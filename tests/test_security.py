"""Consumer security end to end: tokens, API keys, rights, limits — and refusals never reach
the upstream."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import respx
from fastapi import FastAPI

from bus import create_app
from bus.audit import MemoryRecorder
from bus.registry import AdapterRegistry
from bus.security.consumers import Consumers
from bus.security.credentials import TokenSigner
from bus.security.store import Limits, SqliteConsumerStore
from bus.settings import Settings
from tests.support import StepClock, running
from tests.test_plugin_entry_point import ENV, PARCELS_YAML

pytestmark = pytest.mark.anyio

YAML = PARCELS_YAML + "  echo:\n    adapter: echo\n"
PARCEL_URL = "https://parcels.example.test/api/parcels/12-0034"
SCOPE = frozenset({"land/*"})


class SensitiveConsumers(Consumers):
    """Consumers whose every secret and key is registered as never to be logged."""

    def __init__(self, store: SqliteConsumerStore, sensitive: Callable[[str], str]) -> None:
        super().__init__(store)
        self.sensitive = sensitive

    async def create(self, *args: Any, **kwargs: Any) -> Any:
        record, secret = await super().create(*args, **kwargs)
        return record, self.sensitive(secret)

    async def create_key(self, consumer_id: str) -> Any:
        key, record = await super().create_key(consumer_id)
        return self.sensitive(key), record


class Bus:
    """A bus with required auth, its consumer store, and a respx upstream."""

    def __init__(self, app: FastAPI, consumers: Consumers, upstream: respx.Route) -> None:
        self.app = app
        self.consumers = consumers
        self.upstream = upstream
        self.recorder: MemoryRecorder = app.state.gateway.recorder
        self.clock: StepClock = app.state.gateway.clock


@pytest.fixture
async def bus(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    tmp_path: Path,
    sensitive: Callable[[str], str],
) -> AsyncIterator[Bus]:
    router = respx.MockRouter(assert_all_called=False)
    upstream = router.get(PARCEL_URL).respond(200, json={"id": "12-0034", "area": 5, "use": "ODT"})
    settings = settings_for(YAML, auth="required", store_path=tmp_path / "store.db")
    store = SqliteConsumerStore(settings.store_path)
    app = create_app(
        settings,
        registry=example_plugin,
        environ=ENV,
        transport=httpx.MockTransport(router.async_handler),
        recorder=MemoryRecorder(),
        clock=StepClock(2_000_000_000),
    )
    yield Bus(app, SensitiveConsumers(store, sensitive), upstream)
    await store.close()


async def get_token(
    client: httpx.AsyncClient, cid: str, secret: str, **form: str
) -> httpx.Response:
    return await client.post(
        "/v1/token", data={"grant_type": "client_credentials", **form}, auth=(cid, secret)
    )


async def lookup(client: httpx.AsyncClient, **headers: str) -> httpx.Response:
    return await client.post(
        "/v1/services/land/parcel.get", json={"parcel_id": "12-0034"}, headers=headers
    )


async def test_token_then_call(bus: Bus, sensitive: Callable[[str], str]) -> None:
    """A consumer gets a token with HTTP Basic and calls an operation it holds."""
    _, secret = await bus.consumers.create("mot-cua", "Một cửa", "H01", ["land/parcel.get"])
    async with running(bus.app) as client:
        reply = await get_token(client, "mot-cua", secret)
        body = reply.json()
        sensitive(body["access_token"])
        assert reply.status_code == 200
        assert reply.headers["cache-control"] == "no-store"
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 300
        assert body["scope"] == "land/parcel.get"
        claims = jwt.decode(body["access_token"], options={"verify_signature": False})
        assert claims["sub"] == "mot-cua"
        assert claims["aud"] == "lgsp-bus"
        assert claims["iss"] == "lgsp-bus"
        assert claims["exp"] - claims["iat"] == 300
        call = await lookup(client, authorization=f"Bearer {body['access_token']}")
    assert call.status_code == 200
    assert call.json()["data"]["parcel_id"] == "12-0034"
    assert bus.recorder.exchanges[-1].consumer == "mot-cua"
    assert bus.upstream.call_count == 1


async def test_client_credentials_in_the_body(bus: Bus) -> None:
    """client_id/client_secret in the form work too; both methods at once are refused."""
    _, secret = await bus.consumers.create("cong", "Cổng", rights=["land/*"])
    async with running(bus.app) as client:
        body = await client.post(
            "/v1/token",
            data={"grant_type": "client_credentials", "client_id": "cong", "client_secret": secret},
        )
        both = await client.post(
            "/v1/token",
            data={"grant_type": "client_credentials", "client_id": "cong", "client_secret": secret},
            auth=("cong", secret),
        )
    assert body.status_code == 200
    assert both.status_code == 400
    assert both.json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    ("form", "auth", "status", "error"),
    [
        ({"grant_type": "client_credentials"}, ("ghost", "x" * 20), 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, ("app", "wrong-secret"), 401, "invalid_client"),
        ({"grant_type": "password"}, ("app", None), 400, "unsupported_grant_type"),
        ({}, ("app", None), 400, "invalid_request"),
        (
            {"grant_type": "client_credentials", "scope": "tax/*"},
            ("app", None),
            400,
            "invalid_scope",
        ),
    ],
)
async def test_token_errors_follow_rfc_6749(
    bus: Bus, form: dict[str, str], auth: tuple[str, str | None], status: int, error: str
) -> None:
    """Each failure answers its RFC 6749 §5.2 error code; invalid_client challenges Basic."""
    _, secret = await bus.consumers.create("app", "App", rights=["land/parcel.get"])
    cid, given = auth
    async with running(bus.app) as client:
        reply = await client.post("/v1/token", data=form, auth=(cid, given or secret))
    assert reply.status_code == status
    assert reply.json()["error"] == error
    if status == 401:
        assert reply.headers["www-authenticate"].startswith("Basic")
    assert secret not in reply.text


async def test_token_needs_a_form_body(bus: Bus) -> None:
    """JSON to the token endpoint is invalid_request, not a 500."""
    async with running(bus.app) as client:
        reply = await client.post("/v1/token", json={"grant_type": "client_credentials"})
    assert reply.status_code == 400
    assert reply.json()["error"] == "invalid_request"


async def test_scoped_token_narrows_rights(bus: Bus) -> None:
    """A token asked for one scope cannot call another operation the consumer holds."""
    _, secret = await bus.consumers.create("app", "App", rights=["land/*", "echo/echo"])
    async with running(bus.app) as client:
        token = (await get_token(client, "app", secret, scope="echo/echo")).json()["access_token"]
        echo = await client.post(
            "/v1/services/echo/echo",
            json={"message": "hi"},
            headers={"authorization": f"Bearer {token}"},
        )
        land = await lookup(client, authorization=f"Bearer {token}")
    assert echo.status_code == 200
    assert land.status_code == 403
    assert bus.upstream.call_count == 0


def forge(token: str, **changes: Any) -> str:
    claims = jwt.decode(token, options={"verify_signature": False})
    claims.update(changes)
    return jwt.encode(claims, "another-key-that-is-long-enough-32b", algorithm="HS256")


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda t: t[:-4] + ("AAAA" if not t.endswith("AAAA") else "BBBB"), "signature"),
        (lambda t: forge(t), "signature"),
        (lambda t: forge(t, sub="admin"), "signature"),
        (
            lambda t: ".".join(
                [
                    base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').decode().rstrip("="),
                    t.split(".")[1],
                    "",
                ]
            ),
            "malformed",
        ),
        (lambda t: "not-a-jwt", "malformed"),
    ],
)
async def test_tampered_tokens_are_refused(bus: Bus, mangle: Any, reason: str) -> None:
    """A changed signature, a token signed with another key (even claiming another consumer),
    alg=none, or garbage: 401 client.unauthenticated, and the upstream is never called."""
    _, secret = await bus.consumers.create("app", "App", rights=["land/*"])
    async with running(bus.app) as client:
        token = (await get_token(client, "app", secret)).json()["access_token"]
        reply = await lookup(client, authorization=f"Bearer {mangle(token)}")
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "client.unauthenticated"
    assert reason in reply.json()["error"]["message"]
    assert reply.headers["www-authenticate"].startswith("Bearer")
    assert bus.upstream.call_count == 0


async def test_expired_and_wrong_audience_tokens(bus: Bus) -> None:
    """A token past its expiry, or minted for another audience with the bus's own key, is
    refused with the reason."""
    _, secret = await bus.consumers.create("app", "App", rights=["land/*"])
    async with running(bus.app) as client:
        await get_token(client, "app", secret)  # the bus creates its signing key on start
        key = (await bus.consumers.store.bus_secret("token_signing_key", str)).encode()
        now = int(bus.clock.t)
        old, _ = TokenSigner(key, "lgsp-bus", "lgsp-bus", 60).issue("app", SCOPE, now - 120)
        foreign, _ = TokenSigner(key, "lgsp-bus", "tax-link", 60).issue("app", SCOPE, now)
        expired = await lookup(client, authorization=f"Bearer {old}")
        audience = await lookup(client, authorization=f"Bearer {foreign}")
    assert "expired" in expired.json()["error"]["message"]
    assert "audience" in audience.json()["error"]["message"]
    assert bus.upstream.call_count == 0


async def test_a_token_accepted_once_is_still_refused_once_expired(bus: Bus) -> None:
    """A verified token is remembered, but its times are checked on every call: the same
    token that was accepted is refused once it has expired."""
    _, secret = await bus.consumers.create("app", "App", rights=["land/*"])
    async with running(bus.app) as client:
        token = (await get_token(client, "app", secret)).json()["access_token"]
        first = await lookup(client, authorization=f"Bearer {token}")
        bus.clock.t += 300 + 6  # the token's lifetime and the tolerated skew
        later = await lookup(client, authorization=f"Bearer {token}")
    assert first.status_code == 200, first.text
    assert later.status_code == 401
    assert "expired" in later.json()["error"]["message"]


def test_verified_tokens_are_remembered_within_a_bound() -> None:
    """The memory of verified tokens is bounded; a forgotten token is simply checked again."""
    from bus.security import credentials

    signer = TokenSigner(b"k" * 32, "lgsp-bus", "lgsp-bus", 300)
    tokens = [signer.issue(f"c{i}", SCOPE, 1000)[0] for i in range(credentials.VERIFIED_TOKENS + 5)]
    for token in tokens:
        signer.verify(token, 1001)
    assert len(signer._verified) == credentials.VERIFIED_TOKENS
    assert signer.verify(tokens[0], 1001).consumer_id == "c0"  # forgotten, checked again
    head, claims, signature = tokens[1].split(".")
    forged = ".".join((head, claims, ("B" if signature[0] == "A" else "A") + signature[1:]))
    with pytest.raises(credentials.TokenError, match="signature"):
        signer.verify(forged, 1001)


async def test_suspended_consumer_is_refused_within_the_cache_time(bus: Bus) -> None:
    """Suspending a consumer stops its valid token (after the few-second consumer cache) and
    its token requests at once."""
    _, secret = await bus.consumers.create("app", "App", rights=["land/*"])
    async with running(bus.app) as client:
        token = (await get_token(client, "app", secret)).json()["access_token"]
        assert (await lookup(client, authorization=f"Bearer {token}")).status_code == 200
        await bus.consumers.set_status("app", active=False)
        bus.clock.t += 6
        reply = await lookup(client, authorization=f"Bearer {token}")
        again = await get_token(client, "app", secret)
    assert reply.status_code == 401
    assert "suspended" in reply.json()["error"]["message"]
    assert again.json()["error"] == "unauthorized_client"
    assert bus.upstream.call_count == 1


async def test_api_key_and_revocation(bus: Bus) -> None:
    """An API key works in X-API-Key and as Authorization: ApiKey; once revoked it is refused."""
    await bus.consumers.create("app", "App", rights=["land/*"])
    key, record = await bus.consumers.create_key("app")
    async with running(bus.app) as client:
        first = await lookup(client, **{"x-api-key": key})
        second = await lookup(client, authorization=f"ApiKey {key}")
        await bus.consumers.revoke_key(record.key_id)
        bus.clock.t += 6
        revoked = await lookup(client, **{"x-api-key": key})
        wrong = await lookup(client, **{"x-api-key": key[:-3] + "abc"})
    assert first.status_code == 200
    assert second.status_code == 200
    assert revoked.status_code == 401
    assert "revoked" in revoked.json()["error"]["message"]
    assert wrong.status_code == 401
    assert bus.upstream.call_count == 2


async def test_no_credential_and_unknown_scheme(bus: Bus) -> None:
    """No credential, or an unknown scheme, is 401 with a message saying what to send."""
    async with running(bus.app) as client:
        none = await lookup(client)
        basic = await lookup(client, authorization="Basic YWJjOmRlZg==")
    assert none.status_code == 401
    assert "POST /v1/token" in none.json()["error"]["message"]
    assert basic.status_code == 401
    assert bus.upstream.call_count == 0


async def test_call_outside_rights_is_forbidden_and_recorded(bus: Bus) -> None:
    """A consumer without the right gets client.forbidden; the refusal is recorded."""
    _, secret = await bus.consumers.create("portal", "Cổng", rights=["echo/echo"])
    async with running(bus.app) as client:
        token = (await get_token(client, "portal", secret)).json()["access_token"]
        reply = await lookup(client, authorization=f"Bearer {token}")
    assert reply.status_code == 403
    assert reply.json()["error"]["code"] == "client.forbidden"
    assert bus.recorder.exchanges[-1].error_code == "client.forbidden"
    assert bus.recorder.exchanges[-1].consumer == "portal"
    assert bus.upstream.call_count == 0


async def test_catalogue_shows_only_what_the_consumer_may_call(bus: Bus) -> None:
    """GET /v1/services lists only permitted services and operations; others look absent."""
    _, secret = await bus.consumers.create("portal", "Cổng", rights=["land/parcel.get"])
    async with running(bus.app) as client:
        token = (await get_token(client, "portal", secret)).json()["access_token"]
        auth = {"authorization": f"Bearer {token}"}
        catalogue = (await client.get("/v1/services", headers=auth)).json()["data"]
        land = (await client.get("/v1/services/land", headers=auth)).json()["data"]
        echo = await client.get("/v1/services/echo", headers=auth)
        anonymous = await client.get("/v1/services")
    assert [s["name"] for s in catalogue] == ["land"]
    assert [o["name"] for o in catalogue[0]["operations"]] == ["parcel.get"]
    assert [o["name"] for o in land["operations"]] == ["parcel.get"]
    assert echo.status_code == 404
    assert anonymous.status_code == 401


async def test_rate_limit_with_headers(bus: Bus) -> None:
    """Burst 2 at 1 request/s: the third call at once is 429 with Retry-After and RateLimit-*;
    a second later calls pass again."""
    await bus.consumers.create(
        "app", "App", rights=["land/*"], limits=Limits(rate_per_second=1, burst=2)
    )
    key, _ = await bus.consumers.create_key("app")
    async with running(bus.app) as client:
        replies = [await lookup(client, **{"x-api-key": key}) for _ in range(3)]
        bus.clock.t += 1.1
        later = await lookup(client, **{"x-api-key": key})
    ok, ok2, limited = replies
    assert ok.headers["ratelimit-limit"] == "2"
    assert ok.headers["ratelimit-remaining"] == "1"
    assert ok2.headers["ratelimit-remaining"] == "0"
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "client.rate_limited"
    assert limited.headers["retry-after"] == "1"
    assert limited.headers["ratelimit-remaining"] == "0"
    assert later.status_code == 200
    assert bus.upstream.call_count == 3


async def test_daily_quota_per_operation(bus: Bus) -> None:
    """A daily quota of 2 lookups: the third is 429 until midnight in Vietnam, and another
    operation is not counted against it."""
    await bus.consumers.create(
        "app",
        "App",
        rights=["land/*", "echo/echo"],
        limits=Limits(rate_per_second=100, burst=100, quotas={"land/parcel.get": 2}),
    )
    key, _ = await bus.consumers.create_key("app")
    async with running(bus.app) as client:
        replies = [await lookup(client, **{"x-api-key": key}) for _ in range(3)]
        echo = await client.post(
            "/v1/services/echo/echo", json={"message": "x"}, headers={"x-api-key": key}
        )
    assert [r.status_code for r in replies] == [200, 200, 429]
    assert replies[1].headers["ratelimit-limit"] == "2"
    assert replies[1].headers["ratelimit-remaining"] == "0"
    assert "daily quota" in replies[2].json()["error"]["message"]
    assert 1 <= int(replies[2].headers["retry-after"]) <= 86_400
    assert echo.status_code == 200
    assert bus.upstream.call_count == 2


async def test_secrets_are_not_stored_in_clear(bus: Bus, tmp_path: Path) -> None:
    """Neither the client secret nor the API key appears in the SQLite files."""
    _, secret = await bus.consumers.create("app", "App", rights=["land/*"])
    key, _ = await bus.consumers.create_key("app")
    raw = await asyncio.to_thread(
        lambda: b"".join(p.read_bytes() for p in tmp_path.glob("store.db*"))
    )
    assert secret.encode() not in raw
    assert key.split("_", 2)[2].encode() not in raw
