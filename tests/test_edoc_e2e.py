"""The national document exchange axis end to end over loopback HTTP: consumer -> bus -> edoc
mock. A document is sent by store-and-forward delivery (202, then followed through
``GET /v1/deliveries/{id}``), found in the recipient organ's inbox, read back equal to what was
sent, its status reported; the edXML the bus built validates against the axis's XSD; a
redelivery of the same delivery is one document at the axis; the axis's refusals are named."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from lxml import etree

from adapters.edoc import DOCUMENT_ID_NAMESPACE
from adapters.edoc.signing import format_timestamp, signed_headers
from bus.audit.store import AuditQuery
from bus.settings import Settings
from mocks.edoc import EDXML_XSD
from mocks.stack import MockStack
from schemas.document import OutgoingDocument
from tests.live import LiveBus, live_bus

pytestmark = [pytest.mark.anyio, pytest.mark.live]

SYSTEM = "lgsp-demo"
ENV = {"EDOC_SECRET": "edoc-demo-secret"}
SENDER = {"id": "000.00.00.G12", "name": "Sở Tài nguyên và Môi trường"}
RECIPIENT = {"id": "000.00.01.H12", "name": "Văn phòng đăng ký đất đai"}
SIGNER_NAME = "Lê Văn Cường"
CITIZEN_NAME = "Trần Văn Bình"
FINAL = ("delivered", "dead", "discarded")
#: Bytes of every value, so that any mangling of the base64 on the way shows.
DECISION = b"%PDF-1.4\n" + bytes(range(256)) + "Quyết định số 125\n".encode()


def bus_yaml(stack: MockStack) -> str:
    # A retryable failure would be tried 3 times, quickly; a refusal must be tried once.
    return f"""\
version: 1
services:
  edoc:
    adapter: edoc
    upstream:
      base_url: {stack.urls["edoc"]}
      credentials: {{secret: EDOC_SECRET}}
      health_path: /health
    timeout: 10
    retry: none
    delivery: {{attempts: 3, initial_wait: 0.05, max_wait: 0.2, jitter: 0}}
    options: {{system_id: {SYSTEM}}}
"""


@pytest.fixture
async def bus(
    stack: MockStack, settings_for: Callable[..., Settings], sensitive: Callable[[str], str]
) -> AsyncIterator[LiveBus]:
    sensitive(SIGNER_NAME)
    sensitive(CITIZEN_NAME)
    settings = settings_for(bus_yaml(stack), delivery_poll_seconds=0.05)
    async with live_bus(settings, ENV) as live:
        yield live


@pytest.fixture
async def axis(stack: MockStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.urls["edoc"]) as client:
        yield client
        await client.delete("/__admin/faults")


def document(number: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sender": {**SENDER, "email": "stnmt@tayninh.gov.vn", "phone": "0276 3822 111"},
        "recipients": [{**RECIPIENT, "address": "Số 1, đường 30/4, TP Tây Ninh"}],
        "code_number": number,
        "code_notation": "QĐ-STNMT",
        "promulgation_place": "Tây Ninh",
        "promulgation_date": "2026-03-02",
        "document_type": "2",
        "document_type_name": "Quyết định",
        "subject": f"Quyết định công nhận biến động đất đai của hộ ông {CITIZEN_NAME}",
        "content": "Điều 1. Công nhận biến động.\nĐiều 2. Hiệu lực từ ngày ký.",
        "signer": {
            "competence": "KT. GIÁM ĐỐC",
            "position": "Phó Giám đốc",
            "full_name": SIGNER_NAME,
        },
        "due_date": "2026-03-16",
        "to_places": ["Như Điều 2", "Lưu: VT"],
        "priority": 1,
        "page_amount": 2,
        "response_for": [
            {
                "organ_id": RECIPIENT["id"],
                "code": "45/VPĐK-ĐK",
                "promulgation_date": "2026-02-20",
                "document_id": "VPDK-2026-000045",
            }
        ],
        "attachments": [
            {
                "name": "quyet-dinh.pdf",
                "content_type": "application/pdf",
                "content": base64.b64encode(DECISION).decode(),
                "description": "Bản ký số",
            },
            {
                "name": "phu-luc.txt",
                "content_type": "text/plain; charset=utf-8",
                "content": base64.b64encode("Phụ lục: sơ đồ thửa đất\n".encode()).decode(),
            },
        ],
    }
    body.update(overrides)
    return body


async def settle(bus: LiveBus, delivery_id: str) -> dict[str, Any]:
    """The delivery once it is delivered, dead or discarded (bounded polling)."""
    view: dict[str, Any] = {}
    for _ in range(400):
        reply = await bus.client.get(f"/v1/deliveries/{delivery_id}")
        assert reply.status_code == 200, reply.text
        view = reply.json()["data"]
        if view["state"] in FINAL:
            return view
        await asyncio.sleep(0.05)
    raise AssertionError(f"delivery {delivery_id} still {view.get('state')}")


async def send(bus: LiveBus, body: dict[str, Any]) -> dict[str, Any]:
    accepted = await bus.call("edoc", "document.send", body)
    assert accepted["http_status"] == 202, accepted
    return await settle(bus, accepted["data"]["delivery_id"])


async def documents(axis: httpx.AsyncClient) -> list[dict[str, Any]]:
    reply = await axis.get("/__admin/documents")
    assert reply.status_code == 200
    found: list[dict[str, Any]] = reply.json()["documents"]
    return found


def axis_headers(organ: str, **extra: str) -> dict[str, str]:
    """Signed headers of a direct call to the axis, as the recipient organ's system."""
    headers = {
        "systemid": SYSTEM,
        "timestamp": format_timestamp(datetime.now(UTC), "epoch_ms"),
        "servicetype": "eDoc",
        "messagetype": "edoc",
        "from": organ,
        **extra,
    }
    return signed_headers(headers, ENV["EDOC_SECRET"])


async def test_sent_document_reaches_the_inbox_and_reads_back_equal(bus: LiveBus) -> None:
    body = document("125")
    view = await send(bus, body)
    assert view["state"] == "delivered", view
    assert view["attempts"] == 1
    receipt = view["result"]
    doc_id = receipt["doc_id"]

    inbox = await bus.call("edoc", "document.inbox", {"organ_id": RECIPIENT["id"]})
    assert inbox["http_status"] == 200, inbox
    entries = [e for e in inbox["data"]["entries"] if e["doc_id"] == doc_id]
    assert len(entries) == 1
    entry = entries[0]
    assert entry["document_id"] == receipt["document_id"]
    assert entry["sender_id"] == SENDER["id"]
    assert entry["code_number"] == "125"
    assert entry["subject"] == body["subject"]
    assert entry["status"] == "01"
    assert entry["status_code"] == "01"

    got = await bus.call("edoc", "document.get", {"doc_id": doc_id, "organ_id": RECIPIENT["id"]})
    assert got["http_status"] == 200, got
    read = got["data"]
    assert read["doc_id"] == doc_id
    assert read["document_id"] == receipt["document_id"]
    assert [t["organ_id"] for t in read["trace"]] == [SENDER["id"]]
    content = {k: v for k, v in read.items() if k not in ("doc_id", "document_id", "trace")}
    sent = OutgoingDocument.model_validate(body).model_dump(mode="json")
    assert content == sent
    assert base64.b64decode(read["attachments"][0]["content"]) == DECISION


async def test_document_id_comes_from_the_delivery_id_and_a_redelivery_is_one_document(
    bus: LiveBus, axis: httpx.AsyncClient
) -> None:
    """The axis stores the document but its reply is lost (mangled): the delivery dies as
    upstream.bad_response. The operator retries it: the same DocumentId reaches the axis,
    which answers the same DocId and keeps one document."""
    before = len(await documents(axis))
    faults = {"rules": [{"path": "/sendEdoc", "malformed_rate": 1.0}], "seed": 1}
    assert (await axis.put("/__admin/faults", json=faults)).status_code == 200
    accepted = await bus.call("edoc", "document.send", document("126"))
    delivery_id = accepted["data"]["delivery_id"]
    lost = await settle(bus, delivery_id)
    assert lost["state"] == "dead", lost
    assert lost["last_error"]["code"] == "upstream.bad_response"
    stored = await documents(axis)
    assert len(stored) == before + 1
    expected = str(uuid.uuid5(DOCUMENT_ID_NAMESPACE, f"{SYSTEM}\x1fanonymous\x1f{delivery_id}"))
    assert stored[-1]["DocumentId"] == expected

    assert (await axis.delete("/__admin/faults")).status_code == 200
    await bus.gw.delivery_store.retry(delivery_id, bus.gw.clock.now().timestamp())
    bus.gw.deliveries_waiting.set()
    view = await settle(bus, delivery_id)
    assert view["state"] == "delivered", view
    assert view["attempts"] == 2
    assert view["result"] == {"doc_id": stored[-1]["DocId"], "document_id": expected}
    again = await documents(axis)
    assert len(again) == before + 1
    assert again[-1]["To"] == [{"OrganId": RECIPIENT["id"], "Status": "01"}]


async def test_async_send_with_the_same_idempotency_key_is_queued_once(
    bus: LiveBus, axis: httpx.AsyncClient
) -> None:
    before = len(await documents(axis))
    body = document("127")
    headers = {"Idempotency-Key": "send-127-2026-03-02"}
    first = await bus.client.post("/v1/services/edoc/document.send", json=body, headers=headers)
    second = await bus.client.post("/v1/services/edoc/document.send", json=body, headers=headers)
    assert first.status_code == second.status_code == 202
    assert second.headers.get("Idempotent-Replayed") == "true"
    delivery_id = first.json()["data"]["delivery_id"]
    assert second.json()["data"]["delivery_id"] == delivery_id
    assert len(await bus.gw.delivery_store.list(service="edoc")) == 1
    view = await settle(bus, delivery_id)
    assert view["state"] == "delivered", view
    third = await bus.client.post("/v1/services/edoc/document.send", json=body, headers=headers)
    assert third.json()["data"]["delivery_id"] == delivery_id
    assert len(await documents(axis)) == before + 1


async def test_status_update_accepted_and_unknown_code_refused_before_the_axis(
    bus: LiveBus,
) -> None:
    view = await send(bus, document("128"))
    doc_id = view["result"]["doc_id"]
    update = {
        "doc_id": doc_id,
        "status": "03",
        "description": "Đã tiếp nhận",
        "officer": {"name": "Phạm Thị Dung", "department": "Văn thư"},
        "organ_id": RECIPIENT["id"],
    }
    accepted = await bus.call("edoc", "document.status", update)
    assert accepted["http_status"] == 200, accepted
    assert accepted["data"] == {"doc_id": doc_id, "organ_id": RECIPIENT["id"], "status": "03"}

    refused = await bus.call("edoc", "document.status", {**update, "status": "07"})
    assert refused["http_status"] == 400, refused
    assert refused["error"]["code"] == "client.bad_request"
    assert [e["field"] for e in refused["error"]["field_errors"]] == ["status"]
    assert bus.gw.audit is not None
    records = await bus.gw.audit.store.query(AuditQuery(request_id=refused["request_id"]), limit=5)
    assert [r.parsed()["attempts"] for r in records] == [0]
    assert [r.parsed()["upstream_exchanges"] for r in records] == [[]]

    inbox = await bus.call("edoc", "document.inbox", {"organ_id": RECIPIENT["id"]})
    [entry] = [e for e in inbox["data"]["entries"] if e["doc_id"] == doc_id]
    assert entry["status"] == "03"


async def test_wrong_secret_is_named_as_a_bad_signature(
    stack: MockStack, settings_for: Callable[..., Settings]
) -> None:
    env = {"EDOC_SECRET": "not-the-secret"}
    settings = settings_for(bus_yaml(stack), delivery_poll_seconds=0.05)
    async with live_bus(settings, env) as bus:
        reply = await bus.call("edoc", "document.inbox", {"organ_id": RECIPIENT["id"]})
    assert reply["http_status"] == 422, reply
    assert reply["error"]["code"] == "upstream.rejected"
    assert reply["error"]["upstream_code"] == "1003"
    assert "signature" in reply["error"]["message"]
    assert reply["error"]["retryable"] is False


async def test_unknown_recipient_agency_goes_dead_at_once(
    bus: LiveBus, axis: httpx.AsyncClient
) -> None:
    before = len(await documents(axis))
    nowhere = {"id": "000.00.99.X99", "name": "Cơ quan không có"}
    view = await send(bus, document("129", recipients=[nowhere]))
    assert view["state"] == "dead", view
    assert view["attempts"] == 1
    assert view["last_error"]["code"] == "upstream.rejected"
    assert "organs" in view["last_error"]["message"]
    assert "2003" in view["last_error"]["message"]
    assert len(await documents(axis)) == before


async def test_the_edxml_sent_validates_against_the_axis_schema(
    bus: LiveBus, axis: httpx.AsyncClient
) -> None:
    view = await send(bus, document("130"))
    assert view["state"] == "delivered", view
    doc_id = view["result"]["doc_id"]
    reply = await axis.get(
        "/downloadEdoc",
        params={"docId": doc_id},
        headers=axis_headers(RECIPIENT["id"], docId=doc_id),
    )
    assert reply.status_code == 200, reply.text
    edxml = reply.content
    [listed] = [d for d in await documents(axis) if d["DocId"] == doc_id]
    assert listed["Sha256"] == hashlib.sha256(edxml).hexdigest()

    schema = etree.XMLSchema(etree.parse(str(EDXML_XSD)))
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    root = etree.fromstring(edxml, parser)
    assert schema.validate(root), schema.error_log
    ns = {"e": "http://www.mic.gov.vn/TBT/QCVN_102_2016"}
    assert (
        root.findtext("e:edXMLEnvelope/e:edXMLHeader/e:MessageHeader/e:DocumentId", None, ns)
        == (view["result"]["document_id"])
    )
    attachment = root.find("e:AttachmentEncoded/e:Attachment", ns)
    assert attachment is not None
    assert base64.b64decode(attachment.text or "") == DECISION
