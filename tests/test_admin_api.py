"""The admin API (`bus.admin.admin_router`): consumers, rights, limits, secrets and keys over
HTTP, behind the admin bearer token, answering with the canonical envelope."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from fastapi import FastAPI
from pydantic import SecretStr

from bus.admin import DISABLED, admin_router
from bus.middleware import RequestIdMiddleware
from bus.security.consumers import Consumers
from bus.security.credentials import verify_api_secret, verify_client_secret
from bus.security.store import SqliteConsumerStore
from bus.webhooks import SqliteWebhookStore

pytestmark = pytest.mark.anyio

TOKEN = "admin-token-for-the-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ENVELOPE_KEYS = {"request_id", "service", "operation", "status", "data", "error"}

#: Every admin route, with a body it accepts, for the checks that apply to all of them.
ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/consumers", None),
    ("POST", "/consumers", {"id": "dms", "name": "DMS"}),
    ("GET", "/consumers/one-stop", None),
    ("POST", "/consumers/one-stop/suspend", None),
    ("POST", "/consumers/one-stop/activate", None),
    ("POST", "/consumers/one-stop/rights", {"grant": ["tax/*"]}),
    ("PUT", "/consumers/one-stop/limits", {"rate_per_second": 5}),
    ("POST", "/consumers/one-stop/secret", None),
    ("POST", "/consumers/one-stop/keys", None),
    ("GET", "/consumers/one-stop/keys", None),
    ("DELETE", "/keys/000000000000", None),
    ("PUT", "/consumers/one-stop/webhook", {"url": "http://127.0.0.1:9/hook"}),
    ("GET", "/consumers/one-stop/webhook", None),
    ("DELETE", "/consumers/one-stop/webhook", None),
]


def admin_app(consumers: Consumers, token: str | None) -> FastAPI:
    """The admin router mounted the way the gateway mounts it, behind the request id."""
    app = FastAPI()
    token_value = None if token is None else SecretStr(token)
    webhooks = SqliteWebhookStore(":memory:")
    app.include_router(
        admin_router(lambda: consumers, token_value, lambda: webhooks), prefix="/v1/admin"
    )
    app.add_middleware(RequestIdMiddleware)
    return app


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "s.db"


@pytest.fixture
async def consumers(store_path: Path) -> AsyncIterator[Consumers]:
    store = SqliteConsumerStore(store_path)
    try:
        yield Consumers(store)
    finally:
        await store.close()


def _client(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://bus/v1/admin")


@pytest.fixture
async def admin(consumers: Consumers) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the admin API with the right token and one consumer, `one-stop`."""
    await consumers.create("one-stop", "Một cửa tỉnh", "H01", ["population/citizen.lookup"])
    async with _client(admin_app(consumers, TOKEN)) as client:
        client.headers.update(AUTH)
        yield client


def _stored_bytes(store_path: Path) -> bytes:
    """Every byte SQLite keeps for the store: the file and any WAL or shared-memory file."""
    return b"".join(p.read_bytes() for p in sorted(store_path.parent.glob(f"{store_path.name}*")))


def _ok(reply: httpx.Response, status: int = 200) -> Any:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == ENVELOPE_KEYS
    assert body["status"] == "ok"
    assert body["error"] is None
    assert body["service"] is None
    assert body["operation"] is None
    return body["data"]


def _error(reply: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == ENVELOPE_KEYS
    assert body["status"] == "error"
    assert body["data"] is None
    assert body["service"] is None
    assert body["error"]["code"] == code
    error: dict[str, Any] = body["error"]
    return error


def _fields(error: dict[str, Any]) -> dict[str, str]:
    return {f["field"]: f["reason"] for f in error["field_errors"]}


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_disabled_admin_api_answers_401_saying_how_to_enable_it(
    consumers: Consumers, method: str, path: str, body: dict[str, Any] | None
) -> None:
    """Without LGSP_ADMIN_TOKEN every admin route answers client.unauthenticated explaining
    that the API is disabled, even to a caller presenting a token."""
    async with _client(admin_app(consumers, None)) as client:
        reply = await client.request(method, path, json=body, headers=AUTH)
    error = _error(reply, 401, "client.unauthenticated")
    assert error["message"] == DISABLED
    assert "LGSP_ADMIN_TOKEN" in error["message"]


async def test_an_empty_admin_token_disables_the_api(consumers: Consumers) -> None:
    """An empty admin token does not let an empty bearer in: the API is disabled."""
    async with _client(admin_app(consumers, "")) as client:
        reply = await client.get("/consumers", headers={"Authorization": "Bearer "})
    assert _error(reply, 401, "client.unauthenticated")["message"] == DISABLED


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
    ],
    ids=["missing", "wrong", "other-scheme", "longer"],
)
async def test_missing_or_wrong_token_is_refused(
    consumers: Consumers,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    headers: dict[str, str],
) -> None:
    """A missing, wrong or non-bearer credential gets 401 client.unauthenticated with a
    WWW-Authenticate challenge, and changes nothing."""
    await consumers.create("one-stop", "One stop")
    async with _client(admin_app(consumers, TOKEN)) as client:
        reply = await client.request(method, path, json=body, headers=headers)
    _error(reply, 401, "client.unauthenticated")
    assert reply.headers["www-authenticate"].startswith("Bearer")
    assert [c.id for c in await consumers.list_all()] == ["one-stop"]
    assert (await consumers.get("one-stop")).active


async def test_token_is_checked_before_the_body(consumers: Consumers) -> None:
    """An unauthenticated caller learns nothing about the body: a malformed one still gets
    401, not 400."""
    async with _client(admin_app(consumers, TOKEN)) as client:
        reply = await client.post(
            "/consumers", content=b"{not json", headers={"content-type": "application/json"}
        )
    _error(reply, 401, "client.unauthenticated")


async def test_replies_carry_the_request_id(admin: httpx.AsyncClient) -> None:
    """Every reply, success or error, carries the request id of the call in body and header."""
    for path in ("/consumers", "/consumers/nobody"):
        reply = await admin.get(path, headers={"X-Request-ID": "admin-call-0001"})
        assert reply.json()["request_id"] == "admin-call-0001"
        assert reply.headers["x-request-id"] == "admin-call-0001"


async def test_create_returns_the_secret_once(
    admin: httpx.AsyncClient, consumers: Consumers, store_path: Path
) -> None:
    """POST /consumers answers 201 with the consumer and a working client secret; the secret
    is in no later reply and not in the store file."""
    data = _ok(
        await admin.post(
            "/consumers",
            json={
                "id": "dms",
                "name": " Document system ",
                "agency": "H02",
                "rights": ["echo/*", "population/citizen.verify"],
                "limits": {"rate_per_second": 5, "burst": 10, "quotas": {"echo/echo": 3}},
            },
        ),
        201,
    )
    secret = data["client_secret"]
    assert data["consumer"] == {
        "id": "dms",
        "name": "Document system",
        "agency": "H02",
        "status": "active",
        "rights": ["echo/*", "population/citizen.verify"],
        "limits": {
            "rate_per_second": 5.0,
            "burst": 10,
            "daily_quota": None,
            "quotas": {"echo/echo": 3},
        },
        "created_at": data["consumer"]["created_at"],
        "keys": [],
    }
    assert verify_client_secret(secret, await consumers.store.secret_hash("dms"))
    assert secret.encode() not in _stored_bytes(store_path)
    for path in ("/consumers", "/consumers/dms", "/consumers/dms/keys"):
        reply = await admin.get(path)
        assert secret not in reply.text
        assert "scrypt" not in reply.text


async def test_list_and_show(admin: httpx.AsyncClient) -> None:
    """GET /consumers lists every consumer; GET /consumers/{id} gives one with its keys."""
    listed = _ok(await admin.get("/consumers"))
    assert [c["id"] for c in listed] == ["one-stop"]
    assert "keys" not in listed[0]
    shown = _ok(await admin.get("/consumers/one-stop"))
    assert shown["name"] == "Một cửa tỉnh"
    assert shown["agency"] == "H01"
    assert shown["rights"] == ["population/citizen.lookup"]
    assert shown["keys"] == []


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"id": "dms", "name": "DMS", "rights": ["echo/*", "tax"]}, "rights[1]", "not a right"),
        ({"id": "Bad Id", "name": "DMS"}, "id", "a-z"),
        ({"id": "dms", "name": "  "}, "name", "at least 1 character"),
        ({"id": "dms"}, "name", "Field required"),
        ({"id": "dms", "name": "DMS", "secret": "mine"}, "secret", "Extra inputs"),
        (
            {"id": "dms", "name": "DMS", "limits": {"rate_per_second": 0}},
            "limits.rate_per_second",
            "greater than 0",
        ),
        (
            {"id": "dms", "name": "DMS", "limits": {"quotas": {"echo/*": 5}}},
            "limits.quotas.echo/*",
            "a quota is per operation",
        ),
    ],
)
async def test_create_refuses_bad_input_naming_the_field(
    admin: httpx.AsyncClient, body: dict[str, Any], field: str, reason: str
) -> None:
    """A bad body is 400 client.bad_request with a field error naming the field and why;
    nothing is created."""
    error = _error(await admin.post("/consumers", json=body), 400, "client.bad_request")
    assert reason in _fields(error)[field]
    assert [c["id"] for c in _ok(await admin.get("/consumers"))] == ["one-stop"]


async def test_create_refuses_a_duplicate_id(admin: httpx.AsyncClient) -> None:
    """Creating an existing id is 400 with a field error on `id`."""
    reply = await admin.post("/consumers", json={"id": "one-stop", "name": "Again"})
    error = _error(reply, 400, "client.bad_request")
    assert "already exists" in _fields(error)["id"]


async def test_malformed_json_is_a_bad_request(admin: httpx.AsyncClient) -> None:
    """A body that is not JSON is 400 client.bad_request."""
    reply = await admin.post(
        "/consumers", content=b"{not json", headers={"content-type": "application/json"}
    )
    _error(reply, 400, "client.bad_request")


@pytest.mark.parametrize(("method", "path", "body"), ROUTES[2:10])
async def test_unknown_consumer_is_404(
    admin: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    """Every route naming an unknown consumer answers 404 client.not_found saying so."""
    reply = await admin.request(method, path.replace("one-stop", "nobody"), json=body)
    error = _error(reply, 404, "client.not_found")
    assert error["message"] == "no consumer with id 'nobody'"


async def test_suspend_and_activate(admin: httpx.AsyncClient, consumers: Consumers) -> None:
    """POST suspend and activate switch the consumer's status and return it."""
    assert _ok(await admin.post("/consumers/one-stop/suspend"))["status"] == "suspended"
    assert not (await consumers.get("one-stop")).active
    assert _ok(await admin.post("/consumers/one-stop/activate"))["status"] == "active"
    assert (await consumers.get("one-stop")).active


async def test_grant_and_revoke_rights(admin: httpx.AsyncClient) -> None:
    """POST rights grants and revokes, together or separately, and returns the rights held."""
    data = _ok(await admin.post("/consumers/one-stop/rights", json={"grant": ["echo/*", "tax/a"]}))
    assert data["rights"] == ["echo/*", "population/citizen.lookup", "tax/a"]
    body = {"grant": ["tax/b"], "revoke": ["tax/a", "population/citizen.lookup"]}
    data = _ok(await admin.post("/consumers/one-stop/rights", json=body))
    assert data["rights"] == ["echo/*", "tax/b"]


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"grant": ["echo/*", "echo"]}, "grant[1]", "'echo' is not a right"),
        ({"revoke": ["tax/a"]}, "revoke[0]", "does not hold the right 'tax/a'"),
        (
            {"grant": ["population/citizen.lookup"], "revoke": ["population/citizen.lookup"]},
            "revoke[0]",
            "granted and revoked at once",
        ),
        ({"give": ["echo/*"]}, "give", "Extra inputs"),
    ],
)
async def test_rights_refused_with_the_reason(
    admin: httpx.AsyncClient, body: dict[str, Any], field: str, reason: str
) -> None:
    """A malformed right, or revoking one not held, is 400 naming the right; nothing changes."""
    reply = await admin.post("/consumers/one-stop/rights", json={"grant": ["tax/x"], **body})
    error = _error(reply, 400, "client.bad_request")
    assert reason in _fields(error)[field]
    assert _ok(await admin.get("/consumers/one-stop"))["rights"] == ["population/citizen.lookup"]


async def test_rights_change_must_name_a_right(admin: httpx.AsyncClient) -> None:
    """An empty rights change is 400."""
    reply = await admin.post("/consumers/one-stop/rights", json={})
    assert "grant or to revoke" in _error(reply, 400, "client.bad_request")["message"]


async def test_put_limits_replaces_them(admin: httpx.AsyncClient, consumers: Consumers) -> None:
    """PUT limits replaces the limits; fields left out take their defaults."""
    body = {"rate_per_second": 2.5, "daily_quota": 100, "quotas": {"echo/echo": 0}}
    data = _ok(await admin.put("/consumers/one-stop/limits", json=body))
    assert data["limits"] == {**body, "burst": 40}
    limits = (await consumers.get("one-stop")).limits
    assert limits.quota_for("echo", "echo") == 0
    assert limits.quota_for("population", "citizen.lookup") == 100
    data = _ok(await admin.put("/consumers/one-stop/limits", json={"burst": 3}))
    assert data["limits"] == {
        "rate_per_second": 20.0,
        "burst": 3,
        "daily_quota": None,
        "quotas": {},
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rate_per_second": -1}, "rate_per_second"),
        ({"burst": 0}, "burst"),
        ({"daily_quota": -5}, "daily_quota"),
        ({"quotas": {"echo/echo": -1}}, "quotas.echo/echo"),
        ({"quotas": {"echo": 1}}, "quotas.echo"),
        ({"rate": 5}, "rate"),
    ],
)
async def test_put_limits_refuses_bad_values(
    admin: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    """Bad limits are 400 with a field error on the field at fault; nothing changes."""
    reply = await admin.put("/consumers/one-stop/limits", json=body)
    assert field in _fields(_error(reply, 400, "client.bad_request"))
    limits = _ok(await admin.get("/consumers/one-stop"))["limits"]
    assert limits == {"rate_per_second": 20.0, "burst": 40, "daily_quota": None, "quotas": {}}


async def test_rotate_secret_returns_the_new_secret_once(
    admin: httpx.AsyncClient, consumers: Consumers, store_path: Path
) -> None:
    """POST secret returns a new working secret once; the previous one stops working."""
    first = _ok(await admin.post("/consumers/one-stop/secret"))["client_secret"]
    data = _ok(await admin.post("/consumers/one-stop/secret"))
    assert data["consumer_id"] == "one-stop"
    stored = await consumers.store.secret_hash("one-stop")
    assert verify_client_secret(data["client_secret"], stored)
    assert not verify_client_secret(first, stored)
    assert data["client_secret"].encode() not in _stored_bytes(store_path)
    assert data["client_secret"] not in (await admin.get("/consumers/one-stop")).text


async def test_api_keys_created_listed_and_revoked(
    admin: httpx.AsyncClient, consumers: Consumers, store_path: Path
) -> None:
    """POST keys returns the full key once (201); GET keys lists it without the key; DELETE
    revokes it and it is then shown as revoked."""
    data = _ok(await admin.post("/consumers/one-stop/keys"), 201)
    full, key_id = data["api_key"], data["key"]["key_id"]
    secret = full.split("_", 2)[2]
    assert full.startswith(f"lgsp_{key_id}_")
    assert data["key"]["status"] == "active"
    record = await consumers.store.get_key(key_id)
    assert record is not None
    assert verify_api_secret(secret, record.key_hash)
    assert secret.encode() not in _stored_bytes(store_path)

    listed = _ok(await admin.get("/consumers/one-stop/keys"))
    assert [k["key_id"] for k in listed] == [key_id]
    assert secret not in json.dumps(listed)
    assert record.key_hash not in json.dumps(listed)

    revoked = _ok(await admin.delete(f"/keys/{key_id}"))
    assert revoked["status"] == "revoked"
    assert revoked["revoked_at"]
    (shown,) = _ok(await admin.get("/consumers/one-stop"))["keys"]
    assert shown == revoked
    again = _error(await admin.delete(f"/keys/{key_id}"), 400, "client.bad_request")
    assert "already revoked" in again["message"]


async def test_revoking_an_unknown_key_is_404(admin: httpx.AsyncClient) -> None:
    """DELETE of a key id that does not exist answers 404 client.not_found."""
    error = _error(await admin.delete("/keys/000000000000"), 404, "client.not_found")
    assert "000000000000" in error["message"]


async def test_secrets_and_the_admin_token_are_never_logged(
    admin: httpx.AsyncClient, consumers: Consumers
) -> None:
    """Admin actions are logged without the secrets and keys they return or the admin token."""
    with structlog.testing.capture_logs() as logs:
        created = _ok(await admin.post("/consumers", json={"id": "dms", "name": "DMS"}), 201)
        rotated = _ok(await admin.post("/consumers/dms/secret"))
        key = _ok(await admin.post("/consumers/dms/keys"), 201)
        await admin.get("/consumers", headers={"Authorization": "Bearer a-wrong-guess"})
    logged = repr(logs)
    assert "admin: consumer created" in logged
    assert "admin request refused" in logged
    for secret in (
        created["client_secret"],
        rotated["client_secret"],
        key["api_key"],
        key["api_key"].split("_", 2)[2],
        TOKEN,
        "a-wrong-guess",
    ):
        assert secret not in logged
