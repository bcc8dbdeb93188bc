"""The National Public Service Portal (DVCQG) end to end over loopback HTTP: consumer -> bus ->
portal mock. Dossiers are synced and moved along their statuses by store-and-forward deliveries
(202, then followed through ``GET /v1/deliveries/{id}``), read back synchronously, with times
converted to the portal's Vietnam wall clock and back; refusals before queueing, refusals of the
portal as dead deliveries, and the shared login session with its renewal."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from bus.settings import Settings
from mocks.stack import MockStack
from tests.live import LiveBus, live_bus

pytestmark = [pytest.mark.anyio, pytest.mark.live]

ENV = {"DVCQG_USERNAME": "lgsp-demo", "DVCQG_PASSWORD": "dvcqg-demo-password"}
OWNER_ID = "001099012345"
OWNER_NAME = "Nguyễn Văn An"
FINAL = ("delivered", "dead", "discarded")


def bus_yaml(stack: MockStack) -> str:
    # A retryable failure would be tried 3 times, quickly; a refusal must be tried once.
    return f"""\
version: 1
services:
  dvcqg:
    adapter: dvcqg
    upstream:
      base_url: {stack.urls["dvcqg"]}
      credentials: {{username: DVCQG_USERNAME, password: DVCQG_PASSWORD}}
      health_path: /health
    timeout: 10
    retry: none
    delivery: {{attempts: 3, initial_wait: 0.05, max_wait: 0.2, jitter: 0}}
    options: {{agency_code: "H12.01", dstcode: "H12"}}
"""


@pytest.fixture
async def bus(
    stack: MockStack, settings_for: Callable[..., Settings], sensitive: Callable[[str], str]
) -> AsyncIterator[LiveBus]:
    sensitive(OWNER_ID)
    sensitive(OWNER_NAME)
    settings = settings_for(bus_yaml(stack), delivery_poll_seconds=0.05)
    async with live_bus(settings, ENV) as live:
        yield live


@pytest.fixture
async def portal(stack: MockStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.urls["dvcqg"]) as client:
        yield client


def dossier(code: str, status: int = 2, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": code,
        "procedure_code": "1.004227",
        "procedure_name": "Đăng ký biến động quyền sử dụng đất",
        "field_code": "DDAI",
        "field_name": "Đất đai",
        "channel": "online",
        "owner_name": OWNER_NAME,
        "owner_id": OWNER_ID,
        "owner_kind": 1,
        "summary": "Đăng ký biến động do chuyển nhượng quyền sử dụng đất",
        "submitted_at": "2026-03-01T08:00:00+07:00",
        "received_at": "2026-03-01T08:30:00+07:00",
        "due_at": "2026-03-11T17:00:00+07:00",
        "status": status,
        "agency_code": "G12.34",
        "fees": [{"code": "LP01", "name": "Lệ phí đăng ký", "amount": 50_000}],
    }
    body.update(overrides)
    return body


def step(code: str, previous: int, status: int, at: str) -> dict[str, Any]:
    return {
        "dossier_code": code,
        "officer_name": "Trần Thị Bình",
        "officer_title": "Chuyên viên",
        "at": at,
        "department": "Bộ phận một cửa",
        "note": f"Chuyển trạng thái {previous} sang {status}",
        "previous_status": previous,
        "status": status,
    }


async def settle(bus: LiveBus, accepted: dict[str, Any]) -> dict[str, Any]:
    """The delivery of a 202 once it is delivered, dead or discarded (bounded polling)."""
    assert accepted["http_status"] == 202, accepted
    url = accepted["data"]["status_url"]
    view: dict[str, Any] = {}
    for _ in range(400):
        reply = await bus.client.get(url)
        assert reply.status_code == 200, reply.text
        view = reply.json()["data"]
        if view["state"] in FINAL:
            return view
        await asyncio.sleep(0.05)
    raise AssertionError(f"delivery {url} still {view.get('state')}")


async def deliver(bus: LiveBus, operation: str, body: dict[str, Any]) -> dict[str, Any]:
    view = await settle(bus, await bus.call("dvcqg", operation, body))
    assert view["state"] == "delivered", view
    return view


async def held(portal: httpx.AsyncClient, code: str) -> dict[str, Any]:
    reply = await portal.get(f"/__admin/dossiers/{code}")
    assert reply.status_code == 200, reply.text
    stored: dict[str, Any] = reply.json()
    return stored


async def test_sync_is_delivered_with_times_in_vietnam_wall_clock(
    bus: LiveBus, portal: httpx.AsyncClient
) -> None:
    """The same instants given with other offsets are stored as Asia/Ho_Chi_Minh wall clock,
    seconds only; the delivery's result says the portal created the dossier."""
    code = "H12.01-260301-0101"
    body = dossier(
        code,
        submitted_at="2026-03-01T02:30:00.750+00:00",  # 09:30:00 in Vietnam, fraction dropped
        received_at="2026-03-01T09:45:00+07:00",
        due_at="2026-03-10T17:00:00-05:00",  # 22:00 UTC: 05:00 the next day in Vietnam
    )
    accepted = await bus.call("dvcqg", "dossier.sync", body)
    assert accepted["http_status"] == 202, accepted
    assert accepted["data"]["state"] == "queued"
    assert accepted["data"]["delivery_id"]
    view = await settle(bus, accepted)
    assert view["state"] == "delivered", view
    assert view["attempts"] == 1
    assert view["result"] == {"code": code, "created": True, "status": 2}

    stored = (await held(portal, code))["dossier"]
    assert stored["NgayNopHoSo"] == "20260301093000"
    assert stored["NgayTiepNhan"] == "20260301094500"
    assert stored["NgayHenTra"] == "20260311050000"
    assert stored["TrangThaiHoSo"] == "2"
    assert stored["MaTTHC"] == "1.004227"
    assert stored["KenhThucHien"] == "2"
    assert stored["SoGiayToChuHoSo"] == OWNER_ID
    assert stored["DanhSachLePhi"] == [
        {"MaPhiLePhi": "LP01", "TenPhiLePhi": "Lệ phí đăng ký", "Gia": 50_000}
    ]


async def test_syncing_again_updates_and_never_says_already_exists(
    bus: LiveBus, portal: httpx.AsyncClient
) -> None:
    code = "H12.01-260301-0102"
    first = await deliver(bus, "dossier.sync", dossier(code))
    assert first["result"]["created"] is True
    changed = dossier(code, summary="Đăng ký biến động (bổ sung giấy tờ)")
    again = await deliver(bus, "dossier.sync", changed)
    assert again["result"] == {"code": code, "created": False, "status": 2}
    assert again["last_error"] is None
    assert again["attempts"] == 1
    stored = await held(portal, code)
    assert stored["updates"] == 1
    assert stored["dossier"]["TrichYeuHoSo"] == "Đăng ký biến động (bổ sung giấy tờ)"


async def test_progress_along_allowed_transitions_and_read_back(
    bus: LiveBus, portal: httpx.AsyncClient
) -> None:
    """2 -> 4 -> 6 -> 9 -> 10, each delivered; dossier.get shows status and steps in +07:00."""
    code = "H12.01-260301-0103"
    await deliver(bus, "dossier.sync", dossier(code))
    moves = [(2, 4), (4, 6), (6, 9), (9, 10)]
    for hour, (before, after) in enumerate(moves, start=1):
        at = f"2026-03-0{hour + 1}T0{hour}:15:00+00:00"  # UTC: 7 hours later in Vietnam
        view = await deliver(bus, "dossier.progress", step(code, before, after, at))
        assert view["result"] == {"dossier_code": code, "status": after}

    stored = await held(portal, code)
    assert stored["dossier"]["TrangThaiHoSo"] == "10"
    assert [h["TrangThai"] for h in stored["history"]] == ["4", "6", "9", "10"]
    assert stored["history"][0]["ThoiDiemXuLy"] == "20260302081500"

    read = await bus.call("dvcqg", "dossier.get", {"code": code})
    assert read["http_status"] == 200, read
    data = read["data"]
    assert data["status"] == 10
    assert data["owner_id"] == OWNER_ID
    assert [p["status"] for p in data["progress"]] == [4, 6, 9, 10]
    assert [p["at"] for p in data["progress"]] == [
        "2026-03-02T08:15:00+07:00",
        "2026-03-03T09:15:00+07:00",
        "2026-03-04T10:15:00+07:00",
        "2026-03-05T11:15:00+07:00",
    ]
    assert data["submitted_at"] == "2026-03-01T08:00:00+07:00"
    assert data["due_at"] == "2026-03-11T17:00:00+07:00"
    assert data["fees"] == [{"code": "LP01", "name": "Lệ phí đăng ký", "amount": 50_000}]


async def test_impossible_transition_is_refused_and_nothing_is_queued(
    bus: LiveBus, portal: httpx.AsyncClient
) -> None:
    code = "H12.01-260301-0104"
    await deliver(bus, "dossier.sync", dossier(code))
    queued = len(await bus.gw.delivery_store.list(service="dvcqg"))

    refused = await bus.call(
        "dvcqg", "dossier.progress", step(code, 2, 10, "2026-03-02T09:00:00+07:00")
    )
    assert refused["http_status"] == 400, refused
    assert refused["error"]["code"] == "client.bad_request"
    assert [e["field"] for e in refused["error"]["field_errors"]] == ["status"]
    assert len(await bus.gw.delivery_store.list(service="dvcqg")) == queued
    assert (await held(portal, code))["dossier"]["TrangThaiHoSo"] == "2"


async def test_transition_the_portal_refuses_goes_dead_at_once(
    bus: LiveBus, portal: httpx.AsyncClient
) -> None:
    """The caller says the dossier is at 4 and moves it to 9 (allowed by the table), but the
    portal holds 2: upstream.rejected, dead after one attempt, not retried."""
    code = "H12.01-260301-0105"
    await deliver(bus, "dossier.sync", dossier(code))
    accepted = await bus.call(
        "dvcqg", "dossier.progress", step(code, 4, 9, "2026-03-02T09:00:00+07:00")
    )
    view = await settle(bus, accepted)
    assert view["state"] == "dead", view
    assert view["attempts"] == 1
    assert view["last_error"]["code"] == "upstream.rejected"
    assert "transition" in view["last_error"]["message"]
    assert [a["outcome"] for a in view["attempt_log"]] == ["error"]
    assert view["attempt_log"][0]["error"]["code"] == "upstream.rejected"
    stored = await held(portal, code)
    assert stored["dossier"]["TrangThaiHoSo"] == "2"
    assert stored["history"] == []


async def test_session_is_shared_then_renewed_once_after_expiry(
    bus: LiveBus, portal: httpx.AsyncClient
) -> None:
    code = "H12.01-260301-0106"
    before = (await portal.get("/__admin/stats")).json()
    await deliver(bus, "dossier.sync", dossier(code))
    await deliver(bus, "dossier.progress", step(code, 2, 4, "2026-03-02T09:00:00+07:00"))
    for _ in range(3):
        assert (await bus.call("dvcqg", "dossier.get", {"code": code}))["status"] == "ok"
    assert (await bus.call("dvcqg", "procedure.get", {"code": "1.004227"}))["status"] == "ok"
    middle = (await portal.get("/__admin/stats")).json()
    assert middle["logins"] - before["logins"] == 1
    assert middle["failed_logins"] == before["failed_logins"]

    assert (await portal.post("/__admin/sessions/expire")).status_code == 200
    read = await bus.call("dvcqg", "dossier.get", {"code": code})
    assert read["status"] == "ok", read
    assert read["data"]["status"] == 4
    for _ in range(2):
        assert (await bus.call("dvcqg", "dossier.get", {"code": code}))["status"] == "ok"
    after = (await portal.get("/__admin/stats")).json()
    assert after["logins"] - before["logins"] == 2
    assert after["errors"].get("-2", 0) - before["errors"].get("-2", 0) == 1

    # Several calls finding the session ended at once share one login (single flight).
    assert (await portal.post("/__admin/sessions/expire")).status_code == 200
    replies = await asyncio.gather(
        *(bus.call("dvcqg", "dossier.get", {"code": code}) for _ in range(5))
    )
    assert [r["status"] for r in replies] == ["ok"] * 5, replies
    last = (await portal.get("/__admin/stats")).json()
    assert last["logins"] - before["logins"] == 3


async def test_procedure_known_and_unknown(bus: LiveBus) -> None:
    found = await bus.call("dvcqg", "procedure.get", {"code": "1.004227"})
    assert found["http_status"] == 200, found
    procedure = found["data"]
    assert procedure["code"] == "1.004227"
    assert procedure["name"]
    assert "G12.34" in [a["code"] for a in procedure["agencies"]]
    assert procedure["ways"]

    unknown = await bus.call("dvcqg", "procedure.get", {"code": "9.999999"})
    assert unknown["http_status"] == 422, unknown
    assert unknown["error"]["code"] == "upstream.rejected"
    assert unknown["error"]["upstream_code"] == "-4"
    assert unknown["error"]["retryable"] is False


async def test_naive_time_and_float_amount_are_refused_before_queueing(
    bus: LiveBus, portal: httpx.AsyncClient
) -> None:
    code = "H12.01-260301-0107"
    naive = await bus.call(
        "dvcqg", "dossier.sync", dossier(code, received_at="2026-03-01T08:30:00")
    )
    assert naive["http_status"] == 400, naive
    assert [e["field"] for e in naive["error"]["field_errors"]] == ["received_at"]
    assert "offset" in naive["error"]["field_errors"][0]["reason"]

    naive_step = step(code, 2, 4, "2026-03-02T09:00:00")
    refused_step = await bus.call("dvcqg", "dossier.progress", naive_step)
    assert refused_step["http_status"] == 400, refused_step
    assert [e["field"] for e in refused_step["error"]["field_errors"]] == ["at"]

    floating = dossier(code, fees=[{"code": "LP01", "name": "Lệ phí", "amount": 50_000.0}])
    refused = await bus.call("dvcqg", "dossier.sync", floating)
    assert refused["http_status"] == 400, refused
    assert [e["field"] for e in refused["error"]["field_errors"]] == ["fees[0].amount"]

    assert await bus.gw.delivery_store.list(service="dvcqg") == []
    assert (await portal.get(f"/__admin/dossiers/{code}")).status_code == 404


async def test_steps_queued_back_to_back_reach_the_portal_in_order(
    bus: LiveBus, portal: httpx.AsyncClient
) -> None:
    """A dossier's sync and its steps, all queued before the first is delivered, share one
    order key: each waits for the one before it, so the portal accepts every transition."""
    code = "H12.01-260301-0108"
    moves = [(2, 4), (4, 6), (6, 9), (9, 10)]
    accepted = [await bus.call("dvcqg", "dossier.sync", dossier(code))]
    for day, (before, after) in enumerate(moves, start=2):
        at = f"2026-03-0{day}T09:00:00+07:00"
        accepted.append(await bus.call("dvcqg", "dossier.progress", step(code, before, after, at)))
    views = [await settle(bus, a) for a in accepted]
    assert [v["state"] for v in views] == ["delivered"] * 5, views
    assert [v["attempts"] for v in views] == [1] * 5
    delivered_at = [v["delivered_at"] for v in views]
    assert delivered_at == sorted(delivered_at)
    stored = await held(portal, code)
    assert stored["dossier"]["TrangThaiHoSo"] == "10"
    assert [h["TrangThai"] for h in stored["history"]] == ["4", "6", "9", "10"]
