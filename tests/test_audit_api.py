"""The audit API (`/v1/audit`): auditors read the exchange log with their own keys; every read,
refused ones included, is itself recorded; bodies only to an auditor granted them."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bus import create_app
from bus.audit import Exchange, MemoryRecorder
from bus.audit.api import WITHHELD, decode_cursor, encode_cursor
from bus.audit.auditors import DISABLED, UNKNOWN, Auditors, parse_audit_key
from bus.audit.log import AuditLog
from bus.audit.store import AuditQuery
from bus.gateway import Gateway
from bus.security.consumers import Consumers
from bus.security.store import SqliteConsumerStore
from bus.settings import Settings
from tests.support import StepClock, running

pytestmark = pytest.mark.anyio

YAML = "version: 1\nservices:\n  echo: {adapter: echo}\n"
ADMIN_TOKEN = "admin-token-for-the-audit-tests-0123456789"
ENVELOPE_KEYS = {"request_id", "service", "operation", "status", "data", "error"}
CITIZEN = "001203004567"
OTHER_CITIZEN = "079188000123"
T0 = datetime(2026, 11, 21, 1, 0, tzinfo=UTC)  # 08:00 in Vietnam


@dataclass
class Bus:
    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings
    auditor_key: str  # may read metadata, not bodies
    reader_key: str  # may read bodies

    @property
    def gw(self) -> Gateway:
        gw: Gateway = self.app.state.gateway
        return gw

    @property
    def audit(self) -> AuditLog:
        assert self.gw.audit is not None
        return self.gw.audit

    @property
    def auditors(self) -> Auditors:
        return Auditors(self.audit.store)

    async def get(self, path: str, key: str | None = None, **params: Any) -> httpx.Response:
        return await self.client.get(
            f"/v1/audit{path}", params=params, headers=_bearer(key or self.auditor_key)
        )

    async def seed(self, **fields: Any) -> None:
        """Write one exchange record straight through the exchange log."""
        values: dict[str, Any] = {
            "request_id": f"seeded-{len(fields)}-{id(fields)}",
            "consumer": "one-stop",
            "service": "echo",
            "operation": "echo",
            "received_at": T0,
            "duration_ms": 10.0,
            "outcome": "ok",
            "http_status": 200,
            "error_code": None,
            "attempts": 1,
            "request_bytes": 10,
            "reply_bytes": 20,
        }
        values.update(fields)
        await self.audit.record(Exchange(**values))

    async def audit_reads(self) -> list[dict[str, Any]]:
        """The records of auditors' reads, oldest first."""
        found = await self.audit.store.query(AuditQuery(kind="audit"), limit=1000)
        return [r.parsed() for r in reversed(found)]


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def settings(settings_for: Callable[..., Settings], tmp_path: Path) -> Settings:
    return settings_for(
        YAML, auth="required", store_path=tmp_path / "store.db", admin_token=ADMIN_TOKEN
    )


@pytest.fixture
async def bus(settings: Settings, sensitive: Callable[[str], str]) -> AsyncIterator[Bus]:
    """A started gateway with its real exchange log and two auditors: `inspector` (metadata
    only) and `reader` (may read bodies)."""
    sensitive(CITIZEN)
    sensitive(OTHER_CITIZEN)
    app = create_app(settings, clock=StepClock(T0.timestamp()))
    async with running(app) as client:
        audit = app.state.gateway.audit
        assert audit is not None
        auditors = Auditors(audit.store)
        _, key = await auditors.create("inspector", "Thanh tra tỉnh")
        _, reader = await auditors.create("reader", "Thanh tra Bộ", can_read_bodies=True)
        yield Bus(app, client, settings, sensitive(key), sensitive(reader))


def _ok(reply: httpx.Response) -> Any:
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert set(body) == ENVELOPE_KEYS
    assert (body["status"], body["error"], body["service"]) == ("ok", None, None)
    assert reply.headers["cache-control"] == "no-store"
    return body["data"]


def _error(reply: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == ENVELOPE_KEYS
    assert (body["status"], body["data"]) == ("error", None)
    assert body["error"]["code"] == code
    assert body["request_id"] == reply.headers["x-request-id"]
    error: dict[str, Any] = body["error"]
    return error


def _ids(data: dict[str, Any]) -> list[str]:
    return [item["request_id"] for item in data["items"]]


# -- reading the log ----------------------------------------------------------------------------


async def test_list_filters(bus: Bus) -> None:
    """Every filter narrows the list to the records it names; items are summaries (no body),
    newest first."""
    await bus.seed(request_id="r-ok-0001", consumer="one-stop", agency="H01", end_user="cb.1")
    await bus.seed(
        request_id="r-err-0001",
        consumer="dms",
        service="population",
        operation="citizen.lookup",
        outcome="error",
        http_status=504,
        error_code="upstream.timeout",
    )
    await bus.seed(request_id="r-dlv-0001", kind="delivery", consumer="dms")
    cases: list[tuple[dict[str, str], list[str]]] = [
        ({}, ["r-dlv-0001", "r-err-0001", "r-ok-0001"]),  # first: no read recorded yet
        ({"consumer": "dms"}, ["r-dlv-0001", "r-err-0001"]),
        ({"agency": "H01"}, ["r-ok-0001"]),
        ({"end_user": "cb.1"}, ["r-ok-0001"]),
        ({"service": "population"}, ["r-err-0001"]),
        ({"operation": "citizen.lookup"}, ["r-err-0001"]),
        ({"outcome": "error"}, ["r-err-0001"]),
        ({"error_code": "upstream.timeout"}, ["r-err-0001"]),
        ({"kind": "delivery"}, ["r-dlv-0001"]),
        ({"request_id": "r-ok-0001"}, ["r-ok-0001"]),
        ({"consumer": "dms", "kind": "call"}, ["r-err-0001"]),
        ({"consumer": "nobody"}, []),
    ]
    for params, expected in cases:
        data = _ok(await bus.get("/exchanges", **params))
        assert _ids(data) == expected, params
    item = _ok(await bus.get("/exchanges", request_id="r-err-0001"))["items"][0]
    assert "body" not in item
    assert item["has_body"] is False
    assert (item["service"], item["operation"], item["http_status"]) == (
        "population",
        "citizen.lookup",
        504,
    )
    assert isinstance(item["seq"], int)
    assert item["id"]


async def test_since_and_until(bus: Bus) -> None:
    """since <= received_at < until, in any offset (Vietnam time without one); a "+" sent
    unencoded (read as a space) is still the offset."""
    for hour in range(4):
        await bus.seed(request_id=f"at-hour-{hour}", received_at=T0 + timedelta(hours=hour))
    local = "2026-11-21T09:00:00+07:00"  # = T0 + 1h
    data = _ok(await bus.get("/exchanges", since=local, until="2026-11-21T03:00:00Z"))
    assert _ids(data) == ["at-hour-1"]
    window = {"since": local, "until": "2026-11-21T11:00:00+07:00", "kind": "call"}
    assert _ids(_ok(await bus.get("/exchanges", **window))) == ["at-hour-2", "at-hour-1"]
    just_after = "2026-11-21T01:00:00.000001+00:00"
    assert _ids(_ok(await bus.get("/exchanges", until=just_after, kind="call"))) == ["at-hour-0"]
    # Without an offset: Vietnam time; a date alone: its first moment.
    naive = {"since": "2026-11-21T09:00", "until": "2026-11-21T10:00:00", "kind": "call"}
    assert _ids(_ok(await bus.get("/exchanges", **naive))) == ["at-hour-1"]
    assert _ids(_ok(await bus.get("/exchanges", until="2026-11-21", kind="call"))) == []
    assert len(_ok(await bus.get("/exchanges", since="2026-11-21", kind="call"))["items"]) == 4
    raw = await bus.client.get(
        "/v1/audit/exchanges?since=2026-11-21T10:00:00+07:00&kind=call",
        headers=_bearer(bus.auditor_key),
    )
    assert _ids(_ok(raw)) == ["at-hour-3", "at-hour-2"]


async def test_cursor_pages_through_everything_once(bus: Bus) -> None:
    """limit and next_cursor walk the whole result, newest first, each record once; the last
    page has no cursor."""
    for i in range(7):
        await bus.seed(request_id=f"paged-{i:04d}")
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3, "kind": "call"}
        if cursor is not None:
            params["cursor"] = cursor
        data = _ok(await bus.get("/exchanges", **params))
        seen += _ids(data)
        pages += 1
        cursor = data["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [f"paged-{i:04d}" for i in reversed(range(7))]
    assert decode_cursor(encode_cursor(12345)) == 12345


async def test_lookup_by_citizen_id(bus: Bus) -> None:
    """citizen_id finds the records about that citizen through its blind index; the id is in
    no record, not in the read's own detail, and not in the log file."""
    await bus.seed(request_id="about-citizen", subjects=(CITIZEN,))
    await bus.seed(request_id="about-another", subjects=(OTHER_CITIZEN,))
    await bus.seed(request_id="about-nobody")
    data = _ok(await bus.get("/exchanges", citizen_id=CITIZEN))
    assert _ids(data) == ["about-citizen"]
    assert data["items"][0]["subjects"] == [bus.audit.keys.blind(CITIZEN)]
    assert _ids(_ok(await bus.get("/exchanges", citizen_id=f" {OTHER_CITIZEN} "))) == [
        "about-another"
    ]
    assert _ok(await bus.get("/exchanges", citizen_id="000000000000"))["items"] == []
    read = (await bus.audit_reads())[0]
    assert read["subjects"] == [bus.audit.keys.blind(CITIZEN)]
    assert read["detail"] == {}
    assert CITIZEN not in json.dumps(await bus.audit_reads())
    stored = b"".join(p.read_bytes() for p in bus.settings.audit_file().parent.glob("*audit.db*"))
    assert CITIZEN.encode() not in stored


async def test_bodies_only_to_a_granted_auditor(bus: Bus) -> None:
    """The full record carries its hash and link; the decrypted request and reply (parsed as
    JSON) go only to an auditor granted bodies; others get a withheld notice. Granting and
    revoking take effect at once."""
    await bus.seed(
        request_id="with-body-01",
        capture="full",
        request_body=json.dumps({"citizen_id": CITIZEN}).encode(),
        reply_body=b"not json at all",
        subjects=(CITIZEN,),
    )
    (summary,) = _ok(await bus.get("/exchanges", request_id="with-body-01"))["items"]
    assert summary["has_body"] is True
    assert "body" not in summary
    path = f"/exchanges/{summary['id']}"

    withheld = _ok(await bus.get(path))
    assert withheld["body"] == WITHHELD
    assert withheld["has_body"] is True
    assert len(withheld["hash"]) == len(withheld["prev_hash"]) == 64
    assert withheld["id"] == summary["id"]
    assert CITIZEN not in json.dumps(withheld)

    shown = _ok(await bus.get(path, key=bus.reader_key))
    assert shown["body"] == {"request": {"citizen_id": CITIZEN}, "reply": "not json at all"}
    assert {k: v for k, v in shown.items() if k != "body"} == {
        k: v for k, v in withheld.items() if k != "body"
    }

    await bus.auditors.set_bodies("inspector", True)
    assert _ok(await bus.get(path))["body"]["request"] == {"citizen_id": CITIZEN}
    await bus.auditors.set_bodies("inspector", False)
    assert _ok(await bus.get(path))["body"] == WITHHELD

    gets = [r for r in await bus.audit_reads() if r["operation"] == "exchanges.get"]
    assert [(r["consumer"], r["detail"]["body"]) for r in gets] == [
        ("inspector", "withheld"),
        ("reader", "shown"),
        ("inspector", "shown"),
        ("inspector", "withheld"),
    ]
    assert all(r["detail"]["id"] == summary["id"] for r in gets)


async def test_a_body_that_is_not_plain_json_is_shown_as_text(bus: Bus) -> None:
    """A raw body kept because it did not validate may be anything: too deep to parse, or
    JSON only by another parser's leniency; it is shown as text, never a failure."""
    deep = "[" * 5000 + "]" * 5000
    await bus.seed(
        request_id="deep-body-01", capture="full", request_body=deep.encode(), reply_body=b"NaN"
    )
    (summary,) = _ok(await bus.get("/exchanges", request_id="deep-body-01"))["items"]
    full = _ok(await bus.get(f"/exchanges/{summary['id']}", key=bus.reader_key))
    assert full["body"] == {"request": deep, "reply": "NaN"}


async def test_a_record_without_body_and_an_unknown_id(bus: Bus) -> None:
    await bus.seed(request_id="metadata-only")
    (summary,) = _ok(await bus.get("/exchanges", request_id="metadata-only"))["items"]
    full = _ok(await bus.get(f"/exchanges/{summary['id']}", key=bus.reader_key))
    assert (full["body"], full["has_body"]) == (None, False)
    error = _error(await bus.get("/exchanges/no-such-record"), 404, "client.not_found")
    assert "no-such-record" in error["message"]
    _error(await bus.get("/exchanges/" + "x" * 300), 404, "client.not_found")


async def test_verify_index_finds_a_removed_citizen_entry(bus: Bus) -> None:
    """POST /verify?index=true also checks the citizen index: an entry deleted from it hides
    the exchange from that citizen's search without breaking the chain."""
    await bus.seed(request_id="about-a-citizen", subjects=(CITIZEN,))
    url = "/v1/audit/verify"
    headers = _bearer(bus.auditor_key)
    assert _ok(await bus.client.post(url, params={"index": "true"}, headers=headers))["ok"]
    with sqlite3.connect(bus.settings.audit_file()) as db:
        db.execute("DELETE FROM audit_subjects")
    db.close()
    assert _ok(await bus.client.post(url, headers=headers))["ok"] is True  # the chain holds
    report = _ok(await bus.client.post(url, params={"index": "true"}, headers=headers))
    assert report["ok"] is False
    assert "citizen index" in report["problem"]["detail"]
    error = _error(
        await bus.client.post(url, params={"index": "yes"}, headers=headers),
        400,
        "client.bad_request",
    )
    assert "index" in json.dumps(error)


async def test_verify(bus: Bus) -> None:
    """POST /verify checks the whole chain against the gateway's signing key; a record
    changed in the file is found and named."""
    await bus.seed(request_id="verified-1")
    await bus.seed(request_id="verified-2")
    reply = await bus.client.post("/v1/audit/verify", headers=_bearer(bus.auditor_key))
    report = _ok(reply)
    assert report["ok"] is True
    assert report["problem"] is None
    assert report["checked"] == 2  # the two records; this read is recorded after the check
    assert report["head"]["signer"] == bus.audit.keys.public_key
    (first,) = _ok(await bus.get("/exchanges", request_id="verified-1"))["items"]
    with sqlite3.connect(bus.settings.audit_file()) as db:
        db.execute("UPDATE audit_records SET consumer = 'forged' WHERE id = ?", (first["id"],))
    db.close()
    report = _ok(await bus.client.post("/v1/audit/verify", headers=_bearer(bus.auditor_key)))
    assert report["ok"] is False
    assert report["problem"]["kind"] == "modified"
    assert report["problem"]["id"] == first["id"]
    # A record whose data is no longer a record is still listed, as unreadable.
    with sqlite3.connect(bus.settings.audit_file()) as db:
        db.execute("UPDATE audit_records SET data = 'garbage' WHERE id = ?", (first["id"],))
    db.close()
    items = _ok(await bus.get("/exchanges", kind="call"))["items"]
    assert [i.get("unreadable") is not None for i in items] == [False, True]
    unreadable = _ok(await bus.get(f"/exchanges/{first['id']}", key=bus.reader_key))
    assert "verify" in unreadable["unreadable"]


async def test_stats(bus: Bus) -> None:
    """Calls, errors, error rate and latency percentiles per service operation."""
    for i in range(1, 11):
        await bus.seed(
            request_id=f"stat-{i:04d}",
            duration_ms=float(i * 10),
            outcome="error" if i <= 2 else "ok",
            error_code="upstream.timeout" if i <= 2 else None,
        )
    await bus.seed(request_id="stat-other", service="population", operation="citizen.lookup")
    await bus.seed(request_id="stat-late", received_at=T0 + timedelta(days=1))
    data = _ok(await bus.get("/stats", until="2026-11-22T00:00:00Z", kind="call"))
    rows = {(r["service"], r["operation"]): r for r in data["items"]}
    assert rows[("echo", "echo")] == {
        "service": "echo",
        "operation": "echo",
        "calls": 10,
        "errors": 2,
        "error_rate": 0.2,
        "p50_ms": 50.0,
        "p95_ms": 100.0,
        "p99_ms": 100.0,
    }
    assert rows[("population", "citizen.lookup")]["calls"] == 1
    only = _ok(await bus.get("/stats", service="population", kind="call"))["items"]
    assert [(r["service"], r["calls"]) for r in only] == [("population", 1)]
    by_consumer = _ok(await bus.get("/stats", consumer="nobody"))
    assert by_consumer["items"] == []


# -- who may read ----------------------------------------------------------------------------

AUDIT_ROUTES = [
    ("GET", "/v1/audit/exchanges"),
    ("GET", "/v1/audit/exchanges/some-id"),
    ("POST", "/v1/audit/verify"),
    ("GET", "/v1/audit/stats"),
]


async def _consumer_credentials(bus: Bus) -> dict[str, dict[str, str]]:
    store = SqliteConsumerStore(bus.settings.store_path)
    try:
        consumers = Consumers(store)
        _, secret = await consumers.create("one-stop", "Một cửa", "H01", ["echo/*"])
        api_key, _ = await consumers.create_key("one-stop")
    finally:
        await store.close()
    token = await bus.client.post(
        "/v1/token", data={"grant_type": "client_credentials"}, auth=("one-stop", secret)
    )
    assert token.status_code == 200, token.text
    access = token.json()["access_token"]
    # The consumer's credentials work where they belong.
    call = await bus.client.post(
        "/v1/services/echo/echo", json={"message": "hi"}, headers={"X-API-Key": api_key}
    )
    assert call.status_code == 200, call.text
    return {
        "access token": _bearer(access),
        "API key as bearer": _bearer(api_key),
        "X-API-Key": {"X-API-Key": api_key},
        "ApiKey scheme": {"Authorization": f"ApiKey {api_key}"},
        "admin token": _bearer(ADMIN_TOKEN),
        "nothing": {},
        "auditor key mangled": _bearer(_mangled(bus.auditor_key)),
        "auditor key, other scheme": {"Authorization": f"Basic {bus.auditor_key}"},
        "auditor key in X-API-Key": {"X-API-Key": bus.auditor_key},
    }


def _mangled(key: str) -> str:
    """The key with its last character changed (never to itself)."""
    return key[:-1] + ("B" if key.endswith("A") else "A")


async def test_consumer_credentials_and_admin_token_do_not_open_the_audit_api(bus: Bus) -> None:
    """Consumer tokens and keys, the admin token, a wrong auditor key: 401 on every audit
    route, with a challenge; each refused read is recorded as `unknown`."""
    credentials = await _consumer_credentials(bus)
    assert (await bus.client.get("/v1/admin/consumers", headers=_bearer(ADMIN_TOKEN))).is_success
    refused = 0
    for label, headers in credentials.items():
        for method, path in AUDIT_ROUTES:
            reply = await bus.client.request(method, path, headers=headers)
            _error(reply, 401, "client.unauthenticated")
            assert reply.headers["www-authenticate"].startswith("Bearer"), label
            refused += 1
    reads = await bus.audit_reads()
    assert len(reads) == refused
    assert {(r["consumer"], r["outcome"], r["http_status"]) for r in reads} == {
        (UNKNOWN, "error", 401)
    }
    assert {r["operation"] for r in reads} == {"exchanges.list", "exchanges.get", "verify", "stats"}


async def test_the_refusal_says_why(bus: Bus) -> None:
    reply = await bus.client.get("/v1/audit/exchanges", headers=_bearer(ADMIN_TOKEN))
    assert "only auditor keys" in _error(reply, 401, "client.unauthenticated")["message"]
    reply = await bus.client.get("/v1/audit/exchanges")
    assert "Bearer <auditor key>" in _error(reply, 401, "client.unauthenticated")["message"]
    reply = await bus.client.get("/v1/audit/exchanges", headers=_bearer(_mangled(bus.auditor_key)))
    assert _error(reply, 401, "client.unauthenticated")["message"] == "the auditor key is not valid"


@pytest.mark.parametrize(
    "headers",
    [
        lambda key: {"Authorization": f"Bearer {key}"},
        lambda key: {"X-API-Key": key},
        lambda key: {"Authorization": f"ApiKey {key}"},
    ],
    ids=["bearer", "x-api-key", "apikey-scheme"],
)
async def test_an_auditor_key_does_not_call_services_nor_the_admin_api(
    bus: Bus, headers: Callable[[str], dict[str, str]]
) -> None:
    """An auditor key is not a consumer credential: a service call, the catalogue and the
    admin API refuse it."""
    for key in (bus.auditor_key, bus.reader_key):
        call = await bus.client.post(
            "/v1/services/echo/echo", json={"message": "hi"}, headers=headers(key)
        )
        assert call.status_code == 401, call.text
        assert call.json()["error"]["code"] == "client.unauthenticated"
        catalogue = await bus.client.get("/v1/services", headers=headers(key))
        assert catalogue.status_code == 401
        admin = await bus.client.get("/v1/admin/consumers", headers=headers(key))
        assert admin.status_code == 401
    assert parse_audit_key(bus.auditor_key) is not None


async def test_a_suspended_auditor_is_refused_until_activated(bus: Bus) -> None:
    await bus.auditors.set_active("inspector", False)
    reply = await bus.get("/exchanges")
    assert "suspended" in _error(reply, 401, "client.unauthenticated")["message"]
    _ok(await bus.get("/exchanges", key=bus.reader_key))  # another auditor is unaffected
    await bus.auditors.set_active("inspector", True)
    _ok(await bus.get("/exchanges"))
    reads = await bus.audit_reads()
    assert [(r["consumer"], r["http_status"]) for r in reads] == [
        ("inspector", 401),  # the key was verified: the refused read is the inspector's
        ("reader", 200),
        ("inspector", 200),
    ]


# -- every read is recorded ----------------------------------------------------------------


async def test_every_read_is_recorded(bus: Bus) -> None:
    """Each read leaves a record of kind audit, service audit, the auditor as consumer, the
    filters used in detail, the request id of the read; it is itself readable."""
    await bus.seed(request_id="seeded-read")
    (item,) = _ok(await bus.get("/exchanges", request_id="seeded-read", limit=5))["items"]
    _ok(await bus.get(f"/exchanges/{item['id']}"))
    _ok(await bus.client.post("/v1/audit/verify", headers=_bearer(bus.auditor_key)))
    stats = await bus.client.get(
        "/v1/audit/stats",
        params={"service": "echo", "since": "2026-11-21T08:00:00+07:00"},
        headers={**_bearer(bus.auditor_key), "X-Request-ID": "audit-read-0001"},
    )
    _ok(stats)
    reads = await bus.audit_reads()
    assert [(r["kind"], r["service"], r["operation"], r["consumer"]) for r in reads] == [
        ("audit", "audit", "exchanges.list", "inspector"),
        ("audit", "audit", "exchanges.get", "inspector"),
        ("audit", "audit", "verify", "inspector"),
        ("audit", "audit", "stats", "inspector"),
    ]
    assert reads[0]["detail"] == {"request_id": "seeded-read", "limit": 5}
    assert reads[1]["detail"] == {"id": item["id"], "body": "none"}
    assert reads[2]["detail"] == {}
    assert reads[3]["detail"] == {"service": "echo", "since": "2026-11-21T01:00:00+00:00"}
    assert reads[3]["request_id"] == "audit-read-0001"
    assert all((r["outcome"], r["http_status"]) == ("ok", 200) for r in reads)
    assert all(r["reply_bytes"] > 0 for r in reads)
    # The reads are in the log like any exchange: an auditor can list them.
    listed = _ok(await bus.get("/exchanges", kind="audit", consumer="inspector"))
    assert [i["operation"] for i in listed["items"]] == [
        "stats",
        "verify",
        "exchanges.get",
        "exchanges.list",
    ]
    chain = await bus.audit.store.verify(trusted=frozenset({bus.audit.keys.public_key}))
    assert chain.ok


async def test_a_read_that_cannot_be_recorded_fails_closed(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the read's record cannot be written, the auditor gets bus.internal and no data."""
    await bus.seed(request_id="must-not-leak")

    async def broken(exchange: Exchange) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(bus.audit, "record", broken)
    reply = await bus.get("/exchanges")
    error = _error(reply, 500, "bus.internal")
    assert "could not be recorded" in error["message"]
    assert "must-not-leak" not in reply.text


async def test_a_failing_log_refuses_reads_before_reading(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bus.audit, "failing", "OperationalError")
    reply = await bus.get("/exchanges")
    _error(reply, 500, "bus.internal")


async def test_without_an_exchange_log_the_api_is_disabled_and_reads_still_recorded(
    settings: Settings,
) -> None:
    """A gateway given another recorder has no exchange log to read: every audit route says
    so, and the refused read still goes to the recorder."""
    recorder = MemoryRecorder()
    app = create_app(settings, recorder=recorder)
    async with running(app) as client:
        reply = await client.get(
            "/v1/audit/exchanges", params={"citizen_id": CITIZEN, "service": "echo"}
        )
    assert _error(reply, 401, "client.unauthenticated")["message"] == DISABLED
    (read,) = recorder.exchanges
    assert (read.kind, read.service, read.operation, read.consumer) == (
        "audit",
        "audit",
        "exchanges.list",
        UNKNOWN,
    )
    assert read.subjects == (CITIZEN,)
    assert read.detail == {"service": "echo"}


# -- bad parameters ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/exchanges", {"since": "yesterday"}, "since"),
        ("/exchanges", {"since": "2025-01-02T08:00:00+25:00"}, "since"),
        ("/exchanges", {"until": "02/01/2025"}, "until"),
        ("/exchanges", {"since": "2026-11-22T00:00:00Z", "until": "2026-11-21T00:00:00Z"}, "until"),
        ("/exchanges", {"limit": "0"}, "limit"),
        ("/exchanges", {"limit": "501"}, "limit"),
        ("/exchanges", {"limit": "ten"}, "limit"),
        ("/exchanges", {"limit": "-1"}, "limit"),
        ("/exchanges", {"cursor": "!!not-a-cursor"}, "cursor"),
        ("/exchanges", {"cursor": encode_cursor(0)}, "cursor"),
        ("/exchanges", {"outcome": "maybe"}, "outcome"),
        ("/exchanges", {"kind": "everything"}, "kind"),
        ("/exchanges", {"consumer": "  "}, "consumer"),
        ("/exchanges", {"service": "s" * 201}, "service"),
        ("/exchanges", {"citizen_id": ""}, "citizen_id"),
        ("/exchanges", {"consumr": "dms"}, "consumr"),
        ("/exchanges", {"limit": ["1", "2"]}, "limit"),
        ("/stats", {"citizen_id": CITIZEN}, "citizen_id"),
        ("/stats", {"since": "2026-13-01T00:00:00Z"}, "since"),
        ("/exchanges/some-id", {"extra": "1"}, "extra"),
    ],
)
async def test_bad_parameters_are_named(
    bus: Bus, path: str, params: dict[str, Any], field: str
) -> None:
    """A refused parameter is a 400 client.bad_request naming it (never echoing its value),
    with the request id; the refused read is recorded with the fields refused."""
    reply = await bus.client.get(
        f"/v1/audit{path}",
        params=params,
        headers={**_bearer(bus.auditor_key), "X-Request-ID": "bad-params-0001"},
    )
    error = _error(reply, 400, "client.bad_request")
    assert reply.json()["request_id"] == "bad-params-0001"
    assert [f["field"] for f in error["field_errors"]] == [field]
    for value in params.values():
        if isinstance(value, str) and len(value.strip()) > 3:
            assert value not in reply.text
    (read,) = await bus.audit_reads()
    assert (read["consumer"], read["http_status"], read["error_code"]) == (
        "inspector",
        400,
        "client.bad_request",
    )
    assert read["request_id"] == "bad-params-0001"
    assert CITIZEN not in json.dumps(read)


async def test_several_bad_parameters_are_all_named(bus: Bus) -> None:
    reply = await bus.get("/exchanges", limit="0", outcome="maybe", since="x")
    error = _error(reply, 400, "client.bad_request")
    assert sorted(f["field"] for f in error["field_errors"]) == ["limit", "outcome", "since"]


async def test_parameters_are_checked_after_the_key(bus: Bus) -> None:
    """An unauthenticated caller learns nothing about the parameters: 401, not 400."""
    reply = await bus.client.get("/v1/audit/exchanges", params={"limit": "0"})
    _error(reply, 401, "client.unauthenticated")


async def test_the_routes_are_documented(bus: Bus) -> None:
    doc = (await bus.client.get("/openapi.json")).json()
    paths = doc["paths"]
    assert {"/v1/audit/exchanges", "/v1/audit/exchanges/{record_id}"} <= set(paths)
    assert {"/v1/audit/verify", "/v1/audit/stats"} <= set(paths)
    names = {p["name"] for p in paths["/v1/audit/exchanges"]["get"]["parameters"]}
    assert {"since", "until", "citizen_id", "limit", "cursor", "outcome"} <= names
