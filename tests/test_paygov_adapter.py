"""The PayGov adapter against the PayGov mock in process: who owns a payment reference, and the
confirmation handler's refusals of messages that are not genuine confirmations."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from adapters.base import BusError, Context, Inbound, Resources, Upstream
from adapters.payment import PaygovAdapter, PaygovOptions
from adapters.payment.checksum import CALLBACK_FIELDS, CALLBACK_REPLY_FIELDS, sign, verify
from bus.clock import SystemClock
from bus.security import Consumer
from bus.state import SqliteStateStore, scoped
from mocks.paygov import PaygovSettings, create_app
from schemas.payment import PaymentCreate, PaymentQuery

pytestmark = pytest.mark.anyio

SECRET = "paygov-demo-secret"
BASE = "http://paygov.test"


@dataclass
class Setup:
    adapter: PaygovAdapter
    resources: Resources
    state: SqliteStateStore

    def ctx(self, consumer: str, operation: str = "payment.create") -> Context:
        return Context(
            request_id="req-1",
            service="paygov",
            operation=operation,
            consumer=Consumer(id=consumer, name=consumer),
            resources=self.resources,
        )


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    app = create_app(PaygovSettings())
    state = SqliteStateStore(tmp_path / "state.db")
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE) as http,
    ):
        resources = Resources(
            service="paygov",
            http=http,
            upstream=Upstream(base_url=BASE, timeout=10, connect_timeout=5),
            credentials={"token": "paygov-demo-token", "secret": SECRET},  # type: ignore[arg-type]
            clock=SystemClock(),
            log=structlog.get_logger(),
            digest=lambda data: "x",
            state=scoped(state, "paygov", SystemClock()),
        )
        adapter = PaygovAdapter(PaygovOptions(partner_code="LGSP_DEMO"))
        await adapter.start(resources)
        yield Setup(adapter, resources, state)
    await state.close()


def payment(reference: str, amount: int = 100_000) -> PaymentCreate:
    return PaymentCreate.model_validate(
        {
            "reference": reference,
            "amount": amount,
            "description": "Le phi",
            "dossier_code": "H12.01-261121-0001",
            "payer": {"name": "Nguyen Van An"},
        }
    )


async def test_a_reference_belongs_to_the_consumer_that_created_it(setup: Setup) -> None:
    """Another consumer may neither take a reference over, concurrently or later, nor read its
    status or receipt (the receipt names the payer)."""
    results = await asyncio.gather(
        setup.adapter.create(payment("REF-A"), setup.ctx("one")),
        setup.adapter.create(payment("REF-A"), setup.ctx("two")),
        return_exceptions=True,
    )
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BusError)]
    assert len(won) == 1
    assert len(lost) == 1
    assert "another consumer" in lost[0].message
    owner = json.loads(await setup.state.get("paygov", "payment:REF-A") or "{}")["consumer"]
    other = "two" if owner == "one" else "one"
    for operation in (setup.adapter.status, setup.adapter.receipt):
        with pytest.raises(BusError, match="created no payment"):
            await operation(PaymentQuery(reference="REF-A"), setup.ctx(other, "payment.status"))
    status = await setup.adapter.status(PaymentQuery(reference="REF-A"), setup.ctx(owner))
    assert status.state == "pending"


async def test_a_refused_amount_change_keeps_the_payment(setup: Setup) -> None:
    """Creating the reference again with another amount is refused before PayGov, and the
    remembered amount stays the real one, so the real confirmation is still accepted."""
    await setup.adapter.create(payment("REF-B", 150_000), setup.ctx("one"))
    with pytest.raises(BusError) as refused:
        await setup.adapter.create(payment("REF-B", 1), setup.ctx("one"))
    assert refused.value.detail["error_code"] == "02"
    remembered = json.loads(await setup.state.get("paygov", "payment:REF-B") or "{}")
    assert remembered["amount"] == 150_000
    reply = await setup.adapter.confirmation(
        inbound(confirmation("REF-B", 150_000)), setup.ctx("platform:paygov", "callback")
    )
    assert reply.body["MaLoi"] == "00"
    assert [e.type for e in reply.events] == ["payment.confirmed"]


def confirmation(reference: str, amount: int, **fields: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "LoaiBanTin": "NOTIFY",
        "MaLoi": "00",
        "MaDoiTac": "LGSP_DEMO",
        "MaThamChieu": reference,
        "SoTien": amount,
        "MaTienTe": "VND",
        "MaGiaoDich": "PG-1",
        "MaNganHang": "VCB",
        "ThoiGianGD": "20261121093000",
        "ThongTinGiaoDich": "t",
        **fields,
    }
    message["MaXacThuc"] = sign(message, CALLBACK_FIELDS, SECRET, "sha256")
    return message


def inbound(message: dict[str, Any]) -> Inbound:
    return Inbound(body=json.dumps(message).encode(), headers={})


async def test_a_signed_refusal_cannot_be_replayed_as_a_confirmation(setup: Setup) -> None:
    """A reference holding the separator is never echoed nor signed: the "99" reply's checksum
    covers an empty reference, so its signed text cannot be split into a callback's fields."""
    await setup.adapter.create(payment("REF-C"), setup.ctx("one"))
    ctx = setup.ctx("platform:paygov", "callback")
    crafted = {"MaDoiTac": "LGSP_DEMO", "MaThamChieu": "P|REF-C|100000|VND|TX|BANK|2026"}
    reply = await setup.adapter.confirmation(inbound(crafted), ctx)
    assert reply.body["MaLoi"] == "99"
    assert reply.body["MaThamChieu"] == ""
    assert verify(reply.body, CALLBACK_REPLY_FIELDS, SECRET, "sha256")

    for bad in (
        {"LoaiBanTin": "99"},  # not a confirmation
        {"MaLoi": "P"},  # not a result code
    ):
        message = confirmation("REF-C", 100_000, **bad)
        reply = await setup.adapter.confirmation(inbound(message), ctx)
        assert reply.body["MaLoi"] == "99", bad
        assert reply.events == ()


async def test_failed_attempts_are_separate_events_in_order(setup: Setup) -> None:
    """Each failed attempt (its own MaGiaoDich) is its own event; all share the reference as
    their order key, so the consumer sees them in the order PayGov sent them."""
    await setup.adapter.create(payment("REF-D"), setup.ctx("one"))
    ctx = setup.ctx("platform:paygov", "callback")
    first = await setup.adapter.confirmation(
        inbound(confirmation("REF-D", 100_000, MaLoi="01", MaGiaoDich="PG-1")), ctx
    )
    second = await setup.adapter.confirmation(
        inbound(confirmation("REF-D", 100_000, MaLoi="01", MaGiaoDich="PG-2")), ctx
    )
    paid = await setup.adapter.confirmation(
        inbound(confirmation("REF-D", 100_000, MaGiaoDich="PG-3")), ctx
    )
    events = [*first.events, *second.events, *paid.events]
    assert [e.type for e in events] == ["payment.failed", "payment.failed", "payment.confirmed"]
    assert len({e.key for e in events}) == 3
    assert {e.order_key for e in events} == {"REF-D"}
