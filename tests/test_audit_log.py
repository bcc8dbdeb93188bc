"""The exchange log as the gateway writes it: a record for every call (refused ones too),
durable before the reply, group commit, fail closed, the officer header, and the keys."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from adapters.base import Context
from bus import create_app
from bus.audit.chain import StoredRecord
from bus.audit.keys import AuditKeys, KeyError_
from bus.audit.log import AuditLog, open_audit
from bus.audit.store import AuditQuery
from bus.audit.writer import WriterProcess
from bus.registry import AdapterRegistry
from bus.settings import Settings
from tests.support import SpyAdapter, running

pytestmark = pytest.mark.anyio

SPY_YAML = "version: 1\nservices:\n  spy: {adapter: spy}\n  echo: {adapter: echo}\n"
PARCELS = """\
version: 1
services:
  land:
    adapter: parcels
    upstream:
      base_url: https://parcels.example.test/api
      credentials: {api_key: PARCELS_API_KEY}
    timeout: 5
    retry: none
"""
PARCEL_URL = "https://parcels.example.test/api/parcels/12-0034"


def spy_registry() -> AdapterRegistry:
    from adapters.echo import EchoAdapter

    registry = AdapterRegistry()
    registry.register("spy", SpyAdapter, "tests")
    registry.register("echo", EchoAdapter, "tests")
    SpyAdapter.contexts.clear()
    return registry


async def records_of(settings: Settings) -> list[dict[str, Any]]:
    """Every record in the log of ``settings``, oldest first (the gateway must be stopped)."""
    store, _ = open_audit(settings)
    try:
        found: list[StoredRecord] = await store.query(AuditQuery(), limit=10_000)
    finally:
        await store.close()
    return [r.parsed() for r in reversed(found)]


async def test_every_call_is_recorded_with_who_and_on_whose_behalf(
    settings_for: Callable[..., Settings],
) -> None:
    """A call's record: consumer, officer (X-User-Id, also handed to the adapter), service,
    operation, outcome, status, times, sizes and keyed digests of request and reply."""
    settings = settings_for(SPY_YAML)
    async with running(create_app(settings, registry=spy_registry())) as client:
        reply = await client.post(
            "/v1/services/echo/echo", json={"message": "xin chào"}, headers={"X-User-Id": "cb.042"}
        )
        await client.post("/v1/services/spy/spy", json={}, headers={"X-User-Id": "cb.043"})
    assert reply.status_code == 200
    assert SpyAdapter.contexts[0].end_user == "cb.043"
    first, second = await records_of(settings)
    assert first["request_id"] == reply.headers["x-request-id"]
    assert (first["service"], first["operation"], first["kind"]) == ("echo", "echo", "call")
    assert (first["consumer"], first["end_user"]) == ("anonymous", "cb.042")
    assert (first["outcome"], first["http_status"], first["error_code"]) == ("ok", 200, None)
    assert first["reply_bytes"] == len(reply.content)
    assert len(first["request_digest"]) == len(first["reply_digest"]) == 64
    assert first["received_at"] <= first["replied_at"] <= first["recorded_at"]
    assert first["capture"] == "metadata"
    assert first["body"] is None
    assert second["seq"] == first["seq"] + 1


@pytest.mark.parametrize(
    ("path", "headers", "body", "code"),
    [
        ("/v1/services/echo/echo", {"X-User-Id": "bad id with spaces"}, {}, "client.bad_request"),
        ("/v1/services/echo/echo", {}, {"unexpected": 1}, "client.bad_request"),
        ("/v1/services/nope/echo", {}, {}, "client.unknown_service"),
    ],
)
async def test_refused_calls_are_recorded(
    settings_for: Callable[..., Settings],
    path: str,
    headers: dict[str, str],
    body: dict[str, Any],
    code: str,
) -> None:
    settings = settings_for(SPY_YAML)
    async with running(create_app(settings, registry=spy_registry())) as client:
        reply = await client.post(path, json=body, headers=headers)
    assert reply.json()["error"]["code"] == code
    (recorded,) = await records_of(settings)
    assert (recorded["outcome"], recorded["error_code"]) == ("error", code)
    assert recorded["request_id"] == reply.headers["x-request-id"]


async def test_a_bad_officer_header_is_named(settings_for: Callable[..., Settings]) -> None:
    async with running(create_app(settings_for(SPY_YAML), registry=spy_registry())) as client:
        reply = await client.post("/v1/services/spy/spy", json={}, headers={"X-User-Id": "a b"})
    assert reply.status_code == 400
    assert [f["field"] for f in reply.json()["error"]["field_errors"]] == ["X-User-Id"]
    assert SpyAdapter.contexts == []


async def test_unauthenticated_calls_are_recorded(settings_for: Callable[..., Settings]) -> None:
    settings = settings_for(SPY_YAML, auth="required")
    async with running(create_app(settings, registry=spy_registry())) as client:
        reply = await client.post("/v1/services/spy/spy", json={})
    assert reply.status_code == 401
    (recorded,) = await records_of(settings)
    assert recorded["error_code"] == "client.unauthenticated"
    assert recorded["consumer"] == "anonymous"


async def test_concurrent_calls_share_commits_and_keep_one_valid_chain(
    settings_for: Callable[..., Settings],
) -> None:
    """64 calls at once: each record durable before its reply, far fewer commits than calls,
    and the chain verifies."""
    settings = settings_for(SPY_YAML)
    app = create_app(settings, registry=spy_registry())
    async with running(app) as client:
        replies = await asyncio.gather(
            *(client.post("/v1/services/echo/echo", json={"message": str(i)}) for i in range(64))
        )
        audit: AuditLog = app.state.gateway.audit
        assert audit.written == 64
        commits = audit.commits
        report = await audit.store.verify(trusted=frozenset({audit.keys.public_key}))
    assert all(r.status_code == 200 for r in replies)
    assert commits < 64
    assert report.ok
    assert report.checked == 64


@pytest.mark.parametrize("writer", ["process", "thread"])
async def test_the_call_fails_closed_when_the_log_cannot_be_written(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    capsys: pytest.CaptureFixture[str],
    writer: str,
) -> None:
    """A log that refuses inserts: the call in flight gets bus.internal and its record is
    reported in the application log; later calls are refused before reaching the upstream and
    /readyz says not ready; once the log is writable again, calls flow. With either writer."""
    router = respx.MockRouter(assert_all_called=False)
    upstream = router.get(PARCEL_URL).respond(200, json={"id": "12-0034", "area": 5, "use": "ODT"})
    settings = settings_for(PARCELS, audit_writer=writer)
    app = create_app(
        settings,
        registry=example_plugin,
        environ={"PARCELS_API_KEY": "k-123"},
        transport=httpx.MockTransport(router.async_handler),
    )
    body = {"parcel_id": "12-0034"}
    async with running(app) as client:
        audit: AuditLog = app.state.gateway.audit
        assert (audit.writer is not None) == (writer == "process")
        db = sqlite3.connect(settings.audit_file(), isolation_level=None)  # breaks the real file
        assert (await client.post("/v1/services/land/parcel.get", json=body)).status_code == 200
        db.execute(  # every writer, in any process, is refused from now on
            "CREATE TRIGGER read_only BEFORE INSERT ON audit_records "
            "BEGIN SELECT RAISE(ABORT, 'the test made the log read-only'); END"
        )
        in_flight = await client.post("/v1/services/land/parcel.get", json=body)
        assert in_flight.status_code == 500
        assert in_flight.json()["error"]["code"] == "bus.internal"
        assert upstream.call_count == 2  # it had been sent: reported, not dropped silently
        assert "exchange not recorded" in capsys.readouterr().err
        refused = await client.post("/v1/services/land/parcel.get", json=body)
        assert refused.json()["error"]["code"] == "bus.internal"
        assert upstream.call_count == 2  # refused before the upstream
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["exchange_log"] == "failing"
        db.execute("DROP TRIGGER read_only")
        db.close()
        probe = await client.post("/v1/services/land/parcel.get", json=body)
        assert probe.status_code == 500  # refused, but its record was written: the log works
        assert upstream.call_count == 2
        again = await client.post("/v1/services/land/parcel.get", json=body)
        assert again.status_code == 200
        assert upstream.call_count == 3
        assert (await client.get("/readyz")).json()["exchange_log"] == "ok"
    codes = [r["error_code"] for r in await records_of(settings)]
    assert codes == [None, "bus.internal", None]  # the two refused while failing are lost to
    # the log itself (reported in the application log), the probe and the next are kept


# -- keys -------------------------------------------------------------------------------------


def _env(keys: AuditKeys, *extra: tuple[str, bytes]) -> dict[str, str]:
    listed = [(keys.current_kid, keys.encryption[keys.current_kid]), *extra]
    return {
        "LGSP_AUDIT_KEYS": ",".join(f"{k}:{base64.b64encode(v).decode()}" for k, v in listed),
        "LGSP_AUDIT_INDEX_KEY": base64.b64encode(keys.index_key).decode(),
        "LGSP_DIGEST_KEY": base64.b64encode(keys.digest_key).decode(),
        "LGSP_AUDIT_SIGNING_KEY": base64.b64encode(keys.signing_key.private_bytes_raw()).decode(),
    }


def test_key_file_is_created_once_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "audit.keys.json"
    first = AuditKeys.load({}, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = AuditKeys.load({}, path)
    assert first.public_key == second.public_key
    assert first.blind("001090012345") == second.blind("001090012345")
    sealed = first.encrypt(b"secret body", b"record-1")
    assert second.decrypt(sealed, b"record-1") == b"secret body"


def test_rotation_keeps_old_bodies_readable_and_tampering_fails(tmp_path: Path) -> None:
    old = AuditKeys.generate()
    sealed = old.encrypt(b'{"request":"x"}', b"rec-1")
    new_key = AuditKeys.generate()
    rotated = AuditKeys.load(
        {**_env(new_key, (old.current_kid, old.encryption[old.current_kid]))},
        tmp_path / "unused.json",
    )
    assert rotated.current_kid == new_key.current_kid
    assert rotated.decrypt(sealed, b"rec-1") == b'{"request":"x"}'
    assert rotated.encrypt(b"y", b"rec-2")["kid"] == new_key.current_kid
    with pytest.raises(KeyError_, match="altered"):
        rotated.decrypt(sealed, b"rec-2")  # another record's body
    forged = {**sealed, "ct": base64.b64encode(b"\x00" * 40).decode()}
    with pytest.raises(KeyError_, match="altered"):
        rotated.decrypt(forged, b"rec-1")
    retired = AuditKeys.load(_env(new_key), tmp_path / "unused.json")
    with pytest.raises(KeyError_, match="rotated out"):
        retired.decrypt(sealed, b"rec-1")
    assert not (tmp_path / "unused.json").exists()  # every key came from the environment


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("LGSP_AUDIT_KEYS", "k1:not-base64!", "not valid base64"),
        ("LGSP_AUDIT_KEYS", "k1:" + base64.b64encode(b"short").decode(), "must be 32 bytes"),
        ("LGSP_AUDIT_KEYS", "no-colon", "key-id:base64-key"),
        ("LGSP_AUDIT_INDEX_KEY", base64.b64encode(b"x" * 8).decode(), "at least 32 bytes"),
    ],
)
def test_malformed_keys_are_refused_by_name(
    tmp_path: Path, name: str, value: str, message: str
) -> None:
    env = {**_env(AuditKeys.generate()), name: value}
    with pytest.raises(KeyError_, match=message) as raised:
        AuditKeys.load(env, tmp_path / "k.json")
    assert name in str(raised.value)


async def test_officer_reaches_the_adapter_context(settings_for: Callable[..., Settings]) -> None:
    async with running(create_app(settings_for(SPY_YAML), registry=spy_registry())) as client:
        await client.post("/v1/services/spy/spy", json={}, headers={"X-User-Id": "canbo@soTNMT"})
        await client.post("/v1/services/spy/spy", json={})
    ctx: list[Context] = SpyAdapter.contexts
    assert [c.end_user for c in ctx] == ["canbo@soTNMT", None]


def test_subjects_are_found_in_nested_models() -> None:
    from schemas.base import subjects_of
    from schemas.citizen import CitizenLookup, HouseholdQuery

    assert subjects_of(CitizenLookup(personal_id="001090012345")) == {"001090012345"}
    assert subjects_of([HouseholdQuery(personal_id="001090012345")]) == {"001090012345"}
    assert json.dumps(sorted(subjects_of({"a": CitizenLookup(old_id="012345678")}))) == (
        '["012345678"]'
    )


async def test_a_gateway_that_fails_to_start_closes_the_log_and_its_writer(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Something fails after the exchange log's writer process has started: the start fails
    with it, and the writer is not left running (a worker would otherwise wait for it at
    exit)."""
    started: list[WriterProcess] = []
    real_start = WriterProcess.start

    async def start(self: WriterProcess) -> None:
        await real_start(self)
        started.append(self)

    def broken(*args: Any, **kwargs: Any) -> httpx.AsyncClient:
        raise RuntimeError("no client today")

    monkeypatch.setattr(WriterProcess, "start", start)
    monkeypatch.setattr("bus.gateway.make_http_client", broken)
    app = create_app(
        settings_for(PARCELS, audit_writer="process"),
        registry=example_plugin,
        environ={"PARCELS_API_KEY": "k-123"},
    )
    with pytest.raises(RuntimeError, match="no client today"):
        async with running(app):
            pass
    assert len(started) == 1
    assert started[0].pid is None  # closed: no writer process left
    assert app.state.gateway.audit is None
