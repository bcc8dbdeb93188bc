"""The DVCQG adapter against the portal mock, in process: create-or-update, the shared session
and its renewal, date conversion both ways, the portal's refusals as catalogue errors, and the
operations through the bus (an impossible transition refused before it is queued)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from adapters.base import Context, Resources, Upstream
from adapters.dvcqg import DvcqgAdapter, DvcqgOptions
from adapters.dvcqg import _error as portal_error
from adapters.dvcqg.mapping import time_from_wire, time_to_wire
from bus import create_app
from bus.audit import MemoryRecorder
from bus.config import Credentials
from bus.errors import UpstreamBadResponse, UpstreamFault, UpstreamRejected, UpstreamUnavailable
from bus.logging import get_logger
from bus.registry import AdapterRegistry
from bus.security import Consumer
from bus.settings import Settings
from mocks.dvcqg import DvcqgSettings
from mocks.dvcqg import create_app as create_portal
from schemas.dossier import (
    DossierProgress,
    DossierQuery,
    DossierStatus,
    DossierSync,
    ProcedureQuery,
)
from tests.support import StepClock, running
from tests.test_delivery import until

pytestmark = pytest.mark.anyio

USER, PASSWORD = "lgsp-demo", "dvcqg-demo-password"
BASE = "http://dvcqg.test"
CODE = "G12.34-250101-0001"
OWNER_ID = "001099012345"
OWNER = "Nguyễn Văn An"
KEY = b"digest-key"
OPTIONS = DvcqgOptions(agency_code="H12.01", dstcode="DVCQG")


class PortalClock:
    """The mock's clock (monotonic seconds), stepped with the adapter's StepClock."""

    def __init__(self, clock: StepClock) -> None:
        self.clock = clock

    def __call__(self) -> float:
        return self.clock.t


@dataclass
class Setup:
    adapter: DvcqgAdapter
    resources: Resources
    portal: FastAPI
    admin: httpx.AsyncClient
    clock: StepClock

    def ctx(self, operation: str = "dossier.sync") -> Context:
        return Context(
            request_id="req-1",
            service="dvcqg",
            operation=operation,
            consumer=Consumer(id="mot-cua", name="One-stop-shop"),
            resources=self.resources,
        )

    async def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = (await self.admin.get("/__admin/stats")).json()
        return stats

    async def stored(self, code: str = CODE) -> dict[str, Any]:
        reply = await self.admin.get(f"/__admin/dossiers/{code}")
        assert reply.status_code == 200
        body: dict[str, Any] = reply.json()
        return body


class MemoryState:
    """The adapter's durable key-value store, in memory (this adapter keeps nothing in it)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    async def get(self, key: str) -> str | None:
        return self.values.get(key)

    async def put(self, key: str, value: str) -> None:
        self.values[key] = value


def digest(data: bytes) -> str:
    return hmac.new(KEY, data, hashlib.sha256).hexdigest()


@pytest.fixture
async def setup(sensitive: Callable[[str], str]) -> AsyncIterator[Setup]:
    for value in (OWNER_ID, OWNER, PASSWORD):
        sensitive(value)
    clock = StepClock()
    portal = create_portal(DvcqgSettings(session_ttl=1800), clock=PortalClock(clock))
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(portal)) as http,
        httpx.AsyncClient(transport=httpx.ASGITransport(portal), base_url=BASE) as admin,
    ):
        resources = Resources(
            service="dvcqg",
            http=http,
            upstream=Upstream(base_url=BASE, timeout=10, connect_timeout=5),
            credentials=Credentials({"username": USER, "password": PASSWORD}),
            clock=clock,
            log=get_logger(service="dvcqg"),
            digest=digest,
            state=MemoryState(),
        )
        adapter = DvcqgAdapter(OPTIONS)
        await adapter.start(resources)
        yield Setup(adapter, resources, portal, admin, clock)


def dossier(**changes: Any) -> DossierSync:
    values: dict[str, Any] = {
        "code": CODE,
        "procedure_code": "1.004227",
        "procedure_name": "Đăng ký biến động quyền sử dụng đất",
        "field_code": "DDAI",
        "field_name": "Đất đai",
        "channel": "online",
        "owner_name": OWNER,
        "owner_id": OWNER_ID,
        "owner_kind": 1,
        "email": "an.nguyen@example.vn",
        "summary": "Đăng ký biến động do chuyển nhượng",
        "status": 2,
        "submitted_at": "2025-01-02T01:15:00Z",
        "received_at": "2025-01-02T09:30:00+07:00",
        "due_at": "2025-01-16T05:00:00-05:00",
        "agency_code": "G12.34",
        "paid_online": True,
        "result_delivery": "postal",
        "fees": [{"code": "LP", "name": "Lệ phí đăng ký", "amount": 50000}],
        "documents": [{"name": "Đơn đăng ký", "url": "https://one-stop.example/files/1"}],
    }
    values.update(changes)
    return DossierSync.model_validate(values)


def step(previous: int, status: int, **changes: Any) -> DossierProgress:
    values: dict[str, Any] = {
        "dossier_code": CODE,
        "officer_name": "Trần Thị Bình",
        "officer_title": "Chuyên viên",
        "at": "2025-01-03T01:00:00Z",
        "department": "Phòng Đăng ký",
        "note": "Chuyển xử lý",
        "previous_status": previous,
        "status": status,
        "due_at": "2025-01-10T17:00:00+07:00",
    }
    values.update(changes)
    return DossierProgress.model_validate(values)


async def test_create_then_resync_becomes_an_update(setup: Setup) -> None:
    """The first sync creates; a re-sync (re-delivery or a later snapshot) meets "đã tồn tại"
    and is sent as an update: the caller sees success with created False."""
    first = await setup.adapter.sync(dossier(), setup.ctx())
    assert (first.code, first.created, first.status) == (CODE, True, DossierStatus.RECEIVED)
    again = await setup.adapter.sync(dossier(status=4), setup.ctx())
    assert (again.created, again.status) == (False, DossierStatus.IN_PROGRESS)
    stored = await setup.stored()
    assert stored["dossier"]["TrangThaiHoSo"] == "4"
    assert stored["updates"] == 1
    stats = await setup.stats()
    assert stats["calls"] == {"DongBoHoSoMC": 3}
    assert stats["errors"] == {"-3": 1}


async def test_the_session_is_opened_once_for_many_calls(setup: Setup) -> None:
    """One login serves sequential and concurrent calls alike."""
    await setup.adapter.sync(dossier(), setup.ctx())
    await setup.adapter.get(DossierQuery(code=CODE), setup.ctx("dossier.get"))
    await asyncio.gather(
        *(
            setup.adapter.procedure(ProcedureQuery(code="1.004227"), setup.ctx("procedure.get"))
            for _ in range(10)
        )
    )
    stats = await setup.stats()
    assert stats["logins"] == 1
    assert sum(stats["calls"].values()) == 12


async def test_a_session_ended_by_the_portal_is_renewed_once(setup: Setup) -> None:
    """The portal ends every session: the next call gets -2, logs in again and succeeds."""
    await setup.adapter.sync(dossier(), setup.ctx())
    assert (await setup.admin.post("/__admin/sessions/expire")).json() == {"expired": 1}
    ctx = setup.ctx("dossier.get")
    record = await setup.adapter.get(DossierQuery(code=CODE), ctx)
    assert record.code == CODE
    stats = await setup.stats()
    assert stats["logins"] == 2
    assert stats["errors"] == {"-2": 1}
    assert [e["error_code"] for e in ctx.upstream_exchanges] == ["-2", "0"]


async def test_the_session_is_renewed_before_its_lifetime_ends(setup: Setup) -> None:
    """session_ttl 1500 s less the 60 s margin: renewed at 1440 s, before the portal's 1800."""
    await setup.adapter.sync(dossier(), setup.ctx())
    setup.clock.t += 1439
    await setup.adapter.get(DossierQuery(code=CODE), setup.ctx("dossier.get"))
    assert (await setup.stats())["logins"] == 1
    setup.clock.t += 1
    await setup.adapter.get(DossierQuery(code=CODE), setup.ctx("dossier.get"))
    stats = await setup.stats()
    assert stats["logins"] == 2
    assert "-2" not in stats["errors"]


async def test_a_session_refused_twice_is_rejected(setup: Setup) -> None:
    """If even a fresh session is refused, the call fails instead of looping."""
    ctx = setup.ctx("dossier.get")
    original = setup.adapter.sessions.token

    async def expiring_token() -> str:
        value = await original()
        await setup.admin.post("/__admin/sessions/expire")
        return value

    # The portal ends every session between its login and its first use: replace the method on
    # this one instance, which mypy forbids for methods in general.
    setup.adapter.sessions.token = expiring_token  # type: ignore[method-assign]
    with pytest.raises(UpstreamRejected) as caught:
        await setup.adapter.get(DossierQuery(code=CODE), ctx)
    assert "freshly opened session" in caught.value.message
    assert len(ctx.upstream_exchanges) == 2


async def test_wrong_password_is_upstream_rejected(setup: Setup) -> None:
    resources = Resources(
        service="dvcqg",
        http=setup.resources.http,
        upstream=setup.resources.upstream,
        credentials=Credentials({"username": USER, "password": "wrong-password"}),
        clock=setup.clock,
        log=setup.resources.log,
        digest=digest,
        state=MemoryState(),
    )
    adapter = DvcqgAdapter(OPTIONS)
    await adapter.start(resources)
    with pytest.raises(UpstreamRejected) as caught:
        await adapter.sync(dossier(), setup.ctx())
    assert caught.value.detail == {"error_code": "-1"}
    assert "wrong-password" not in repr(caught.value) + repr(adapter.sessions)


async def test_missing_credentials_are_named_at_start(setup: Setup) -> None:
    resources = Resources(
        service="dvcqg",
        http=setup.resources.http,
        upstream=setup.resources.upstream,
        credentials=Credentials({"username": USER}),
        clock=setup.clock,
        log=setup.resources.log,
        digest=digest,
        state=MemoryState(),
    )
    with pytest.raises(ValueError, match="password"):
        await DvcqgAdapter(OPTIONS).start(resources)


async def test_dates_are_converted_both_ways(setup: Setup) -> None:
    """ISO times with any offset go on the wire as yyyyMMddHHmmss in Ho Chi Minh time and come
    back as the same instants, shown +07:00."""
    sent = dossier()
    await setup.adapter.sync(sent, setup.ctx())
    await setup.adapter.progress(step(2, 4), setup.ctx("dossier.progress"))
    wire = (await setup.stored())["dossier"]
    assert wire["NgayNopHoSo"] == "20250102081500"  # 01:15Z
    assert wire["NgayTiepNhan"] == "20250102093000"  # already +07:00
    assert wire["NgayHenTra"] == "20250116170000"  # 05:00-05:00 = 10:00Z
    history = (await setup.stored())["history"]
    assert history[0]["ThoiDiemXuLy"] == "20250103080000"
    assert history[0]["NgayKetThucTheoQuyDinh"] == "20250110170000"

    record = await setup.adapter.get(DossierQuery(code=CODE), setup.ctx("dossier.get"))
    assert record.submitted_at == sent.submitted_at
    assert record.received_at == sent.received_at
    assert record.due_at == sent.due_at
    shown = record.model_dump(mode="json")
    assert shown["due_at"] == "2025-01-16T17:00:00+07:00"
    assert shown["progress"][0]["at"] == "2025-01-03T08:00:00+07:00"
    assert record.status == DossierStatus.IN_PROGRESS
    assert record.owner_id == OWNER_ID
    assert record.fees[0].amount == 50000
    assert record.paid_online is True
    assert record.result_delivery == "postal"
    assert record.channel == "online"
    assert record.documents[0].url == "https://one-stop.example/files/1"


def test_time_conversion_functions() -> None:
    utc = datetime(2024, 12, 31, 20, 0, 30, 999, tzinfo=UTC)
    assert time_to_wire(utc) == "20250101030030"
    back = time_from_wire("20250101030030", "NgayTiepNhan")
    assert back == utc.replace(microsecond=0)
    assert back is not None
    assert back.utcoffset() == timedelta(hours=7)
    minus = datetime(2025, 1, 1, 3, 0, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert time_to_wire(minus) == "20250101150030"
    assert time_from_wire("", "NgayTra") is None


async def test_an_unknown_dossier_is_a_not_found_rejection(setup: Setup) -> None:
    with pytest.raises(UpstreamRejected) as caught:
        await setup.adapter.get(DossierQuery(code="G12.34-000"), setup.ctx("dossier.get"))
    assert caught.value.detail["reason"] == "not_found"
    assert caught.value.detail["error_code"] == "-4"
    assert not caught.value.retryable
    with pytest.raises(UpstreamRejected) as progress:
        await setup.adapter.progress(step(2, 4), setup.ctx("dossier.progress"))
    assert progress.value.detail["reason"] == "not_found"


async def test_a_refused_transition_is_rejected_not_retried(setup: Setup) -> None:
    """The bus's input allows 4 -> 9, but the portal holds status 2: the portal refuses (-5),
    and the caller gets upstream.rejected with both statuses."""
    await setup.adapter.sync(dossier(), setup.ctx())
    with pytest.raises(UpstreamRejected) as caught:
        await setup.adapter.progress(step(4, 9), setup.ctx("dossier.progress"))
    error = caught.value
    assert error.code == "upstream.rejected"
    assert not error.retryable
    assert error.detail["reason"] == "transition_refused"
    assert (error.detail["from_status"], error.detail["to_status"]) == (2, 9)
    # A sync moving the status backwards is refused the same way, and is not "created".
    with pytest.raises(UpstreamRejected) as back:
        await setup.adapter.sync(dossier(status=1), setup.ctx())
    assert back.value.detail["reason"] == "transition_refused"


async def test_progress_moves_the_dossier(setup: Setup) -> None:
    await setup.adapter.sync(dossier(), setup.ctx())
    result = await setup.adapter.progress(step(2, 4), setup.ctx("dossier.progress"))
    assert (result.dossier_code, result.status) == (CODE, DossierStatus.IN_PROGRESS)
    again = await setup.adapter.progress(step(2, 4), setup.ctx("dossier.progress"))
    assert again.status == DossierStatus.IN_PROGRESS  # a re-delivery is harmless
    assert len((await setup.stored())["history"]) == 1


async def test_a_field_the_portal_refuses_is_named_canonically(setup: Setup) -> None:
    """A procedure code missing from the portal's catalogue: -1 naming MaTTHC becomes a field
    error on procedure_code; the portal's message itself is not passed on."""
    with pytest.raises(UpstreamRejected) as caught:
        await setup.adapter.sync(dossier(procedure_code="9.999999"), setup.ctx())
    error = caught.value
    assert error.detail["field"] == "procedure_code"
    assert [f.field for f in error.field_errors] == ["procedure_code"]
    assert "MaTTHC" not in error.message


async def test_procedure_get(setup: Setup) -> None:
    procedure = await setup.adapter.procedure(
        ProcedureQuery(code="1.004227"), setup.ctx("procedure.get")
    )
    assert procedure.code == "1.004227"
    assert procedure.name.startswith("Đăng ký biến động quyền sử dụng đất")
    assert [(f.code, f.name) for f in procedure.fields] == [("DDAI", "Đất đai")]
    assert procedure.agencies[0].code == "G12.34"
    assert [w.channel for w in procedure.ways] == ["in_person", "online"]
    assert [f.amount for f in procedure.ways[0].fees] == [50000, 300000]
    assert procedure.ways[0].duration == 10
    with pytest.raises(UpstreamRejected) as caught:
        await setup.adapter.procedure(ProcedureQuery(code="9.999999"), setup.ctx("procedure.get"))
    assert caught.value.detail["reason"] == "not_found"


async def test_exchanges_are_recorded_as_digests(setup: Setup) -> None:
    """Each POST adds the service, keyed digests and sizes, HTTP status and error_code, and
    nothing of the content."""
    ctx = setup.ctx()
    await setup.adapter.sync(dossier(), ctx)
    await setup.adapter.sync(dossier(), ctx)
    exchanges = ctx.upstream_exchanges
    assert [(e["service"], e["error_code"]) for e in exchanges] == [
        ("DongBoHoSoMC", "0"),
        ("DongBoHoSoMC", "-3"),
        ("DongBoHoSoMC", "0"),
    ]
    for exchange in exchanges:
        assert set(exchange) == {
            "service",
            "request_hmac",
            "request_bytes",
            "reply_hmac",
            "reply_bytes",
            "http_status",
            "error_code",
        }
        assert len(exchange["request_hmac"]) == 64
    assert OWNER_ID not in repr(exchanges)


async def test_http_failures_are_catalogue_errors(setup: Setup) -> None:
    """A 503 is upstream.unavailable (retryable); a reply that is not the portal's JSON is
    upstream.bad_response; an unknown service is upstream.fault."""
    rules = {"rules": [{"path": "/api", "error_rate": 1, "error_statuses": [503]}]}
    await setup.admin.put("/__admin/faults", json=rules)
    with pytest.raises(UpstreamUnavailable) as unavailable:
        await setup.adapter.get(DossierQuery(code=CODE), setup.ctx("dossier.get"))
    assert unavailable.value.retryable
    rules = {"rules": [{"path": "/api", "malformed_rate": 1}]}
    await setup.admin.put("/__admin/faults", json=rules)
    with pytest.raises(UpstreamBadResponse):
        await setup.adapter.get(DossierQuery(code=CODE), setup.ctx("dossier.get"))
    await setup.admin.delete("/__admin/faults")
    reply = await setup.adapter._call(setup.ctx(), "XoaHoSo", {})
    error = portal_error(reply, "XoaHoSo", {})
    assert isinstance(error, UpstreamFault)
    assert error.detail["error_code"] == "-6"


async def test_a_throttled_login_is_unavailable_and_not_repeated(setup: Setup) -> None:
    """A 429 from the login is upstream.unavailable; concurrent calls share one login."""
    rules = {"rules": [{"path": "/login", "error_rate": 1, "error_statuses": [429]}]}
    await setup.admin.put("/__admin/faults", json=rules)
    results = await asyncio.gather(
        *(setup.adapter.get(DossierQuery(code=CODE), setup.ctx("dossier.get")) for _ in range(5)),
        return_exceptions=True,
    )
    assert all(isinstance(r, UpstreamUnavailable) for r in results)
    assert setup.adapter.sessions.requests == 1


# -- through the bus -----------------------------------------------------------------------------

BUS_YAML = f"""\
version: 1
services:
  dvcqg:
    adapter: dvcqg
    upstream:
      base_url: {BASE}
      credentials: {{username: DVCQG_USERNAME, password: DVCQG_PASSWORD}}
      health_path: null
    timeout: 5
    retry: none
    circuit_breaker: null
    delivery: {{attempts: 2, initial_wait: 0.01, max_wait: 0.05, jitter: 0}}
    options:
      agency_code: H12.01
      dstcode: DVCQG
"""


async def test_through_the_bus(
    settings_for: Callable[..., Settings], sensitive: Callable[[str], str]
) -> None:
    """dossier.sync is queued (202) and delivered to the portal; an impossible transition is
    refused with 400 on the field status before anything is queued."""
    for value in (OWNER_ID, OWNER, PASSWORD):
        sensitive(value)
    portal = create_portal()
    registry = AdapterRegistry()
    registry.register("dvcqg", DvcqgAdapter)
    settings = settings_for(BUS_YAML).model_copy(update={"delivery_poll_seconds": 0.02})
    app = create_app(
        settings,
        registry=registry,
        environ={"DVCQG_USERNAME": USER, "DVCQG_PASSWORD": PASSWORD},
        transport=httpx.ASGITransport(portal),
        recorder=MemoryRecorder(),
    )
    async with running(app) as client:
        reply = await client.post(
            "/v1/services/dvcqg/dossier.sync", json=dossier().model_dump(mode="json")
        )
        assert reply.status_code == 202, reply.text
        view = await until(client, reply.json()["data"]["delivery_id"], "delivered")
        assert view["result"] == {"code": CODE, "created": True, "status": 2}

        refused = await client.post(
            "/v1/services/dvcqg/dossier.progress",
            json=step(2, 4).model_dump(mode="json") | {"status": 10},
        )
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert error["code"] == "client.bad_request"
        assert [f["field"] for f in error["field_errors"]] == ["status"]
        assert "2 (RECEIVED)" in error["field_errors"][0]["reason"]

        got = await client.post("/v1/services/dvcqg/dossier.get", json={"code": CODE})
        assert got.status_code == 200, got.text
        assert got.json()["data"]["received_at"] == "2025-01-02T09:30:00+07:00"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(portal), base_url=BASE) as admin:
        stats = (await admin.get("/__admin/stats")).json()
    assert stats["calls"] == {"DongBoHoSoMC": 1, "TraCuuHoSo": 1}
    assert stats["logins"] == 1
