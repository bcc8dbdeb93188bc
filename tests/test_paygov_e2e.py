"""PayGov end to end over loopback HTTP: consumer -> bus -> PayGov mock, the citizen pays on the
mock's page, PayGov's confirmation comes back to the bus's callback route and is delivered to
the consumer's webhook as ``payment.confirmed``, once, however often PayGov repeats it."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from adapters.payment.checksum import CALLBACK_FIELDS, sign
from bus import create_app
from bus.audit.store import AuditQuery
from bus.gateway import Gateway
from bus.loopback import WebhookInbox, serving
from bus.settings import Settings
from mocks.stack import MockStack
from tests.live import live_bus

pytestmark = [pytest.mark.anyio, pytest.mark.live]

PARTNER = "LGSP_DEMO"
ENV = {"PAYGOV_TOKEN": "paygov-demo-token", "PAYGOV_SECRET": "paygov-demo-secret"}
PAYER_ID = "001099012345"


def bus_yaml(stack: MockStack, checksum: str = "sha256") -> str:
    return f"""\
version: 1
services:
  paygov:
    adapter: paygov
    upstream:
      base_url: {stack.urls["paygov"]}
      credentials: {{token: PAYGOV_TOKEN, secret: PAYGOV_SECRET}}
    timeout: 10
    retry: none
    audit: full
    options: {{partner_code: {PARTNER}, checksum: {checksum}}}
"""


async def callback_attempts(
    paygov: httpx.AsyncClient, reference: str, within: float = 10.0
) -> list[dict[str, Any]]:
    """PayGov's logged callback attempts for ``reference``, once there is at least one."""
    async with asyncio.timeout(within):
        while True:
            attempts = (await paygov.get("/__admin/callbacks")).json()
            mine = [a for a in attempts if a["reference"] == reference]
            if mine:
                return mine
            await asyncio.sleep(0.02)


@dataclass
class Running:
    bus: httpx.AsyncClient
    url: str
    gw: Gateway
    inbox: WebhookInbox
    paygov: httpx.AsyncClient


@pytest.fixture
async def running_bus(
    stack: MockStack, settings_for: Callable[..., Settings], sensitive: Callable[[str], str]
) -> AsyncIterator[Running]:
    sensitive(PAYER_ID)
    async with (
        live_bus(settings_for(bus_yaml(stack)), ENV) as live,
        httpx.AsyncClient(base_url=stack.urls["paygov"]) as paygov,
    ):
        callback_url = f"{live.url}/v1/callbacks/paygov"
        reply = await paygov.put(
            f"/__admin/partners/{PARTNER}", json={"callback_url": callback_url}
        )
        assert reply.status_code == 200
        yield Running(live.client, live.url, live.gw, live.inbox, paygov)
        await paygov.put(f"/__admin/partners/{PARTNER}", json={"callback_url": None})


def payment(reference: str, amount: int = 150_000) -> dict[str, Any]:
    return {
        "reference": reference,
        "amount": amount,
        "description": "Le phi dang ky bien dong dat dai",
        "dossier_code": "G12.34-261121-0001",
        "procedure_code": "1.004227",
        "payer": {"name": "Nguyen Van An", "id_number": PAYER_ID},
        "fees": [{"kind": "1", "code": "LP01", "name": "Le phi", "amount": amount}],
    }


async def call(bus: httpx.AsyncClient, operation: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = await bus.post(f"/v1/services/paygov/{operation}", json=body)
    result: dict[str, Any] = reply.json()
    result["http_status"] = reply.status_code
    return result


async def test_pay_confirm_and_deliver_once(running_bus: Running, stack: MockStack) -> None:
    """Create, pay on the page, get payment.confirmed at the webhook; PayGov's repeated
    confirmation still gets "00" and changes nothing; status and receipt follow."""
    r = running_bus
    created = await call(r.bus, "payment.create", payment("REF-E2E-1"))
    assert created["status"] == "ok", created
    url = created["data"]["payment_url"]
    page = await r.paygov.get(url)
    assert page.status_code == 200
    assert "150" in page.text
    paid = await r.paygov.post(f"{url}/complete")
    assert paid.status_code == 200

    event = await r.inbox.wait_for("payment.confirmed")
    assert event.signature_ok
    assert event.data["reference"] == "REF-E2E-1"
    assert event.data["amount"] == 150_000
    assert event.data["state"] == "paid"
    assert event.data["dossier_code"] == "G12.34-261121-0001"

    # The bus may deliver the event before PayGov has read the bus's reply to its callback
    # and logged the attempt: wait for the attempt, then check it.
    attempts = await callback_attempts(r.paygov, "REF-E2E-1")
    assert [a["acknowledged"] for a in attempts] == [True]

    again = (await r.paygov.post("/__admin/payments/REF-E2E-1/resend-callback")).json()
    assert again["acknowledged"] is True
    assert again["partner_code"] == "00"
    deliveries = await r.gw.delivery_store.list(service="paygov")
    assert [d.operation for d in deliveries] == ["payment.confirmed"]
    assert len(r.inbox.events) == 1

    assert r.gw.audit is not None
    records = await r.gw.audit.store.query(AuditQuery(kind="callback"), limit=10)
    details = [record.parsed()["detail"] for record in records]
    assert sorted(d["duplicate"] for d in details) == [False, True]
    assert {d["reference"] for d in details} == {"REF-E2E-1"}

    status = await call(r.bus, "payment.status", {"reference": "REF-E2E-1"})
    assert status["data"]["state"] == "paid"
    assert status["data"]["completed_at"].endswith("+07:00")
    receipt = await call(r.bus, "payment.receipt", {"reference": "REF-E2E-1"})
    assert base64.b64decode(receipt["data"]["content_base64"]).startswith(b"%PDF-")


def confirmation(reference: str, amount: int, secret: str = ENV["PAYGOV_SECRET"]) -> dict[str, Any]:
    message: dict[str, Any] = {
        "LoaiBanTin": "NOTIFY",
        "MaLoi": "00",
        "MaDoiTac": PARTNER,
        "MaThamChieu": reference,
        "SoTien": amount,
        "MaTienTe": "VND",
        "MaGiaoDich": "PG-TEST-1",
        "MaNganHang": "VCB",
        "ThoiGianGD": "20261121093000",
        "ThongTinGiaoDich": "test",
    }
    message["MaXacThuc"] = sign(message, CALLBACK_FIELDS, secret, "sha256")
    return message


async def test_forged_and_unknown_confirmations_get_99_and_no_event(
    running_bus: Running,
) -> None:
    """A wrong checksum, an unknown reference or another amount: "99", recorded as refused,
    nothing queued; the genuine confirmation afterwards is delivered."""
    r = running_bus
    created = await call(r.bus, "payment.create", payment("REF-E2E-2", 90_000))
    assert created["status"] == "ok", created
    cases = {
        "client.unauthenticated": confirmation("REF-E2E-2", 90_000, secret="forged"),
        "upstream.rejected": confirmation("REF-UNKNOWN", 90_000),
    }
    other_amount = confirmation("REF-E2E-2", 1)
    for expected, message in [*cases.items(), ("upstream.rejected", other_amount)]:
        reply = await r.bus.post("/v1/callbacks/paygov", json=message)
        assert reply.status_code == 200
        assert reply.json()["MaLoi"] == "99", (expected, reply.json())
    assert await r.gw.delivery_store.list(service="paygov") == []
    assert r.gw.audit is not None
    refused = await r.gw.audit.store.query(AuditQuery(kind="callback"), limit=10)
    codes = sorted(record.parsed()["error_code"] for record in refused)
    assert codes == ["client.unauthenticated", "upstream.rejected", "upstream.rejected"]
    assert all(record.parsed()["outcome"] == "error" for record in refused)

    genuine = await r.bus.post("/v1/callbacks/paygov", json=confirmation("REF-E2E-2", 90_000))
    assert genuine.json()["MaLoi"] == "00"
    event = await r.inbox.wait_for("payment.confirmed")
    assert event.data["reference"] == "REF-E2E-2"


async def test_platform_errors_reach_the_caller_by_name(running_bus: Running) -> None:
    """Reused reference with another amount (02), no receipt before payment (05): each
    upstream.rejected with PayGov's code; a reference the consumer did not create is refused;
    a float amount never leaves."""
    r = running_bus
    assert (await call(r.bus, "payment.create", payment("REF-E2E-3", 50_000)))["status"] == "ok"
    again = await call(r.bus, "payment.create", payment("REF-E2E-3", 50_000))
    assert again["status"] == "ok"  # the same INIT repeated: the same payment

    reused = await call(r.bus, "payment.create", payment("REF-E2E-3", 60_000))
    assert reused["error"]["code"] == "upstream.rejected"
    assert reused["error"]["upstream_code"] == "02"
    # A reference this consumer did not create through the bus is not asked about at all.
    unknown = await call(r.bus, "payment.status", {"reference": "REF-NEVER"})
    assert unknown["error"]["code"] == "upstream.rejected"
    assert "created no payment" in unknown["error"]["message"]
    early = await call(r.bus, "payment.receipt", {"reference": "REF-E2E-3"})
    assert early["error"]["upstream_code"] == "05"
    pending = await call(r.bus, "payment.status", {"reference": "REF-E2E-3"})
    assert pending["data"]["state"] == "pending"

    floating = payment("REF-E2E-4", 50_000)
    floating["amount"] = 50_000.0
    refused = await call(r.bus, "payment.create", floating)
    assert refused["http_status"] == 400
    assert [e["field"] for e in refused["error"]["field_errors"]] == ["amount"]


async def test_wrong_checksum_secret_is_named(
    stack: MockStack, settings_for: Callable[..., Settings]
) -> None:
    """A bus configured with the wrong secret (or algorithm) gets PayGov's 01, named."""
    env = {**ENV, "PAYGOV_SECRET": "not-the-secret"}
    app = create_app(settings_for(bus_yaml(stack)), environ=env)
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as bus:
        reply = await call(bus, "payment.create", payment("REF-E2E-5"))
    assert reply["error"]["code"] == "upstream.rejected"
    assert reply["error"]["upstream_code"] == "01"
    assert "checksum" in reply["error"]["message"]


async def test_a_payment_paygov_never_saw_is_unknown_to_it(running_bus: Running) -> None:
    """INIT lost to an outage: the reference is the consumer's, but PayGov answers 03 (unknown
    reference) to its status; the retried create then starts the payment."""
    r = running_bus
    outage = {"rules": [{"path": "/api/v1/payment", "error_rate": 1, "error_statuses": [503]}]}
    assert (await r.paygov.put("/__admin/faults", json=outage)).status_code == 200
    try:
        lost = await call(r.bus, "payment.create", payment("REF-E2E-6"))
    finally:
        await r.paygov.delete("/__admin/faults")
    assert lost["error"]["code"] == "upstream.unavailable"
    unknown = await call(r.bus, "payment.status", {"reference": "REF-E2E-6"})
    assert unknown["error"]["upstream_code"] == "03"
    assert (await call(r.bus, "payment.create", payment("REF-E2E-6")))["status"] == "ok"
