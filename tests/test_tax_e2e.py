"""The tax link end to end over loopback HTTP: the tax authority's mock pushes its notice to the
bus's callback route, the land registry's one-stop-shop gets ``tax.notice`` at its webhook (once,
however often the same notice is pushed), and the payment voucher goes back through the bus."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from datetime import date
from typing import Any

import httpx
import pytest

from bus.audit.store import AuditQuery
from bus.settings import Settings
from mocks.stack import MockStack
from tests.live import LiveBus, live_bus

pytestmark = [pytest.mark.anyio, pytest.mark.live]

ENV = {"TAX_SECURITY_KEY": "tax-demo-key"}
TAX_CODE = "8012345678"
PAYER_ID = "001099012345"
DOSSIER = "H12.01-261121-0007"


def bus_yaml(stack: MockStack) -> str:
    return f"""\
version: 1
services:
  tax:
    adapter: tax
    upstream:
      base_url: {stack.urls["tax"]}
      credentials: {{security_key: TAX_SECURITY_KEY}}
    timeout: 10
    retry: none
    audit: full
    options: {{notice_consumer: anonymous}}
"""


@pytest.fixture
async def bus(
    stack: MockStack, settings_for: Callable[..., Settings], sensitive: Callable[[str], str]
) -> AsyncIterator[LiveBus]:
    sensitive(TAX_CODE)
    sensitive(PAYER_ID)
    async with (
        live_bus(settings_for(bus_yaml(stack)), ENV) as live,
        httpx.AsyncClient(base_url=stack.urls["tax"]) as tax,
    ):
        notice_url = f"{live.url}/v1/callbacks/tax"
        assert (await tax.put("/__admin/settings", json={"notice_url": notice_url})).is_success
        yield live


def notice(amounts: tuple[int, ...] = (1_250_000, 18_000_000)) -> dict[str, Any]:
    return {
        "dossier_code": DOSSIER,
        "items": [
            {
                "tax_code": TAX_CODE,
                "decision_no": "TB-2026-007",
                "decision_date": date(2026, 11, 20).isoformat(),
                "item_name": f"Khoản {i}",
                "amount": amount,
            }
            for i, amount in enumerate(amounts)
        ],
    }


async def push(stack: MockStack, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.urls["tax"]) as tax:
        return await tax.post("/__admin/notices", json=body)


async def test_notice_reaches_the_one_stop_shop_once(bus: LiveBus, stack: MockStack) -> None:
    pushed = await push(stack, notice())
    assert pushed.status_code == 200, pushed.text
    assert pushed.json()["Status"] == "OK"
    event = await bus.inbox.wait_for("tax.notice")
    assert event.data["dossier_code"] == DOSSIER
    assert event.data["total"] == 19_250_000
    assert [i["amount"] for i in event.data["items"]] == [1_250_000, 18_000_000]
    assert event.data["items"][0]["decision_date"] == "2026-11-20"

    again = await push(stack, notice())
    assert again.status_code == 200
    assert len(await bus.gw.delivery_store.list(service="tax")) == 1

    assert bus.gw.audit is not None
    records = await bus.gw.audit.store.query(AuditQuery(kind="callback"), limit=10)
    assert [r.parsed()["detail"]["duplicate"] for r in records] == [True, False]
    # The tax code is personal data: the record holds its blind index, never the code.
    found = await bus.gw.audit.store.query(
        AuditQuery(subject=bus.gw.audit.keys.blind(TAX_CODE)), limit=10
    )
    assert len(found) >= 2


async def test_wrong_key_and_bad_file_are_refused(bus: LiveBus) -> None:
    body = {
        "SecurityKey": "wrong",
        "Service": "ThongBaoThue",
        "Ngay": "20261121090000",
        "IsUpdating": False,
        "Data": {"FileThongBaoThue": base64.b64encode(b"<DATA/>").decode()},
    }
    refused = await bus.client.post("/v1/callbacks/tax", json=body)
    assert refused.status_code == 401
    assert refused.json() == {"Status": "ERROR", "Message": "Error Security Code"}
    body["SecurityKey"] = ENV["TAX_SECURITY_KEY"]
    bad = await bus.client.post("/v1/callbacks/tax", json=body)
    assert bad.status_code == 400
    assert "ROW_LIST" in bad.json()["Message"]
    body["Data"] = {"FileThongBaoThue": "%%% not base64"}
    assert (await bus.client.post("/v1/callbacks/tax", json=body)).status_code == 400
    assert await bus.gw.delivery_store.list(service="tax") == []


async def test_voucher_goes_back(bus: LiveBus, stack: MockStack) -> None:
    assert (await push(stack, notice((500_000,)))).status_code == 200
    voucher = {
        "dossier_code": DOSSIER,
        "tax_code": TAX_CODE,
        "payer_name": "Nguyen Van An",
        "payer_id": PAYER_ID,
        "notice_no": "TB-2026-007",
        "description": "Nop nghia vu tai chinh",
        "paid_at": "2026-11-21T09:30:00+07:00",
        "amount": 500_000,
    }
    ok = await bus.call("tax", "tax.voucher", voucher)
    assert ok["status"] == "ok", ok
    again = await bus.call("tax", "tax.voucher", voucher)
    assert again["data"] == ok["data"]  # the authority de-duplicates: the same voucher id

    wrong = await bus.call("tax", "tax.voucher", {**voucher, "amount": 1})
    assert wrong["error"]["code"] == "upstream.rejected"
    assert "amount" in wrong["error"]["message"]
    unknown = await bus.call("tax", "tax.voucher", {**voucher, "dossier_code": "NO-SUCH"})
    assert "no notice" in unknown["error"]["message"]
    floating = await bus.call("tax", "tax.voucher", {**voucher, "amount": 500_000.0})
    assert floating["http_status"] == 400


async def test_the_log_never_keeps_the_shared_key(bus: LiveBus, stack: MockStack) -> None:
    """Accepted or refused, a notice's recorded body has the SecurityKey removed."""
    assert (await push(stack, notice((700_000,)))).status_code == 200
    wrong = {"SecurityKey": "guess", "Service": "ThongBaoThue", "Data": {}}
    assert (await bus.client.post("/v1/callbacks/tax", json=wrong)).status_code == 401
    audit = bus.gw.audit
    assert audit is not None
    records = await audit.store.query(AuditQuery(kind="callback"), limit=10)
    assert len(records) == 2
    for record in records:
        request, _ = audit.keys.open_bodies(record.parsed()["body"], record.id)
        assert request is not None
        assert ENV["TAX_SECURITY_KEY"] not in request
        assert "guess" not in request
        assert '"SecurityKey": "[removed]"' in request


@pytest.mark.parametrize(
    ("xml", "reason"),
    [
        (
            b'<!DOCTYPE DATA [<!ENTITY x "1">]><DATA><BODY><ROW_LIST><MA_HSO>H&x;</MA_HSO>'
            b"</ROW_LIST></BODY></DATA>",
            "DOCTYPE",
        ),
        (
            (
                "<DATA><BODY><ROW_LIST><MA_HSO>H</MA_HSO><LIST><MA_SO_THUE>8012345678</MA_SO_THUE>"
                "<SO_QUYET_DINH>TB-1</SO_QUYET_DINH><NGAY_QUYET_DINH>20/11/2026</NGAY_QUYET_DINH>"
                "<TEN_TIEUMUC>x</TEN_TIEUMUC><SO_TIEN>١٢</SO_TIEN></LIST></ROW_LIST></BODY></DATA>"
            ).encode(),
            "SO_TIEN",
        ),
        (b"<DATA><BODY>", "not well-formed"),
    ],
)
async def test_notice_files_that_cannot_be_trusted_are_refused(
    bus: LiveBus, xml: bytes, reason: str
) -> None:
    body = {
        "SecurityKey": ENV["TAX_SECURITY_KEY"],
        "Service": "ThongBaoThue",
        "Data": {"FileThongBaoThue": base64.b64encode(xml).decode()},
    }
    refused = await bus.client.post("/v1/callbacks/tax", json=body)
    assert refused.status_code == 400
    assert reason in refused.json()["Message"]
