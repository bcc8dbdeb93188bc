"""The document axis mock as a system meets it: signed headers checked (signature, timestamp,
who acts for whom), edXML checked against the shipped XSD, a document de-duplicated by sender
and DocumentId, delivered to each recipient's inbox, read back, and its status reported to the
sender; every refusal a FAIL reply with its own ErrorCode."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from lxml import etree

from adapters.edoc.edxml import build_edxml
from adapters.edoc.signing import (
    TimestampFormat,
    file_hash,
    format_timestamp,
    signed_headers,
)
from mocks.edoc import EDXML_XSD, ERROR_CODES, EdocSettings, create_app
from schemas.document import Attachment, Organ, OutgoingDocument, Signer

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SYSTEM, SECRET = "lgsp-demo", "edoc-demo-secret"
UBND, SO_TNMT, VPDK, BO = "000.00.00.H12", "000.00.00.G12", "000.00.01.H12", "000.00.00.G01"
SCHEMA = etree.XMLSchema(etree.parse(str(EDXML_XSD)))
SUBJECT = "Về việc cấp giấy chứng nhận quyền sử dụng đất cho hộ ông Trần Văn Bình"


# -- helpers -----------------------------------------------------------------------------------


def axis_headers(
    messagetype: str = "edoc",
    organ: str | None = UBND,
    *,
    extra: Mapping[str, str] | None = None,
    secret: str = SECRET,
    system: str = SYSTEM,
    when: datetime = NOW,
    fmt: TimestampFormat = "epoch_ms",
) -> dict[str, str]:
    """The signed headers of one call."""
    base = {
        "systemid": system,
        "timestamp": format_timestamp(when, fmt),
        "servicetype": "eDoc",
        "messagetype": messagetype,
    }
    if organ is not None:
        base["from"] = organ
    base.update(extra or {})
    return signed_headers(base, secret)


def document(recipients: tuple[str, ...] = (SO_TNMT,), **overrides: Any) -> OutgoingDocument:
    fields: dict[str, Any] = {
        "sender": Organ(id=UBND, name="Ủy ban nhân dân tỉnh"),
        "recipients": [Organ(id=r, name=f"Cơ quan {r}") for r in recipients],
        "code_number": "123",
        "code_notation": "UBND-VP",
        "promulgation_place": "Hà Nội",
        "promulgation_date": "2026-03-01",
        "document_type": "1",
        "document_type_name": "Công văn",
        "subject": SUBJECT,
        "signer": Signer(full_name="Nguyễn Văn An", position="Chủ tịch"),
        "attachments": [Attachment.from_bytes("cv.pdf", b"%PDF-1.7 noi dung", "application/pdf")],
    }
    fields.update(overrides)
    return OutgoingDocument(**fields)


def send_headers(
    body: bytes, doc: OutgoingDocument, document_id: str, **overrides: Any
) -> dict[str, str]:
    extra = {
        "to": json.dumps([r.id for r in doc.recipients]),
        "docId": document_id,
        "hash-file": file_hash(body),
    }
    extra.update(overrides.pop("extra", {}))
    return axis_headers(organ=overrides.pop("organ", doc.sender.id), extra=extra, **overrides)


async def send(
    client: httpx.AsyncClient,
    doc: OutgoingDocument | None = None,
    document_id: str = "vb-2026-0001",
    **overrides: Any,
) -> httpx.Response:
    doc = doc or document()
    body = overrides.pop("body", None) or build_edxml(doc, document_id)
    headers = send_headers(body, doc, document_id, **overrides)
    return await client.post("/sendEdoc", content=body, headers=headers)


def fail_code(reply: httpx.Response) -> str:
    body = reply.json()
    assert body["status"] == "FAIL", body
    assert body["data"] == []
    assert reply.status_code == ERROR_CODES[body["ErrorCode"]][0]
    code: str = body["ErrorCode"]
    return code


def ok(reply: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = reply.json()
    assert reply.status_code == 200, body
    assert (body["status"], body["ErrorCode"], body["ErrorDesc"]) == ("OK", "0", "")
    return body


async def inbox(client: httpx.AsyncClient, organ: str) -> list[dict[str, Any]]:
    reply = await client.post("/getReceivedEdocList", headers=axis_headers(organ=organ))
    data: list[dict[str, Any]] = ok(reply)["data"]
    return data


async def sent_list(client: httpx.AsyncClient, organ: str = UBND) -> list[dict[str, Any]]:
    reply = await client.post("/getSentEdocList", headers=axis_headers(organ=organ))
    data: list[dict[str, Any]] = ok(reply)["data"]
    return data


async def update_status(
    client: httpx.AsyncClient, organ: str, body: dict[str, Any], messagetype: str = "status"
) -> httpx.Response:
    return await client.post(
        "/updateStatus", json=body, headers=axis_headers(messagetype, organ=organ)
    )


def mock(settings: EdocSettings | None = None, now: datetime = NOW) -> FastAPI:
    return create_app(settings, clock=lambda: now)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(mock()), base_url="http://edoc.test"
    ) as c:
        yield c


# -- signed headers ----------------------------------------------------------------------------


async def test_signed_call_lists_the_agencies(client: httpx.AsyncClient) -> None:
    """A call signed with the system's secret is served: the agency catalogue, in Vietnamese."""
    reply = await client.post("/getAgenciesList", headers=axis_headers(organ=None))
    agencies = {a["OrganId"]: a["OrganName"] for a in ok(reply)["data"]}
    assert agencies[SO_TNMT] == "Sở Tài nguyên và Môi trường"
    assert agencies[UBND] == "Ủy ban nhân dân tỉnh"
    assert agencies[VPDK] == "Văn phòng đăng ký đất đai"


async def test_wrong_secret_is_a_bad_signature(client: httpx.AsyncClient) -> None:
    """Headers signed with another secret: 401, ErrorCode 1003."""
    reply = await client.post("/getAgenciesList", headers=axis_headers(secret="not-the-secret"))
    assert fail_code(reply) == "1003"
    assert reply.status_code == 401


async def test_header_changed_after_signing_is_a_bad_signature(client: httpx.AsyncClient) -> None:
    """Reading another organ's inbox by changing the plain from header breaks the signature."""
    headers = axis_headers(organ=UBND)
    headers["from"] = SO_TNMT
    reply = await client.post("/getReceivedEdocList", headers=headers)
    assert fail_code(reply) == "1003"
    assert "from" in reply.json()["ErrorDesc"]


async def test_from_must_be_signed(client: httpx.AsyncClient) -> None:
    """An organ named in an unsigned from header is refused."""
    headers = axis_headers(organ=None)
    headers["from"] = UBND
    reply = await client.post("/getReceivedEdocList", headers=headers)
    assert fail_code(reply) == "1003"
    assert "not signed" in reply.json()["ErrorDesc"]


async def test_unknown_system(client: httpx.AsyncClient) -> None:
    reply = await client.post("/getAgenciesList", headers=axis_headers(system="other-system"))
    assert fail_code(reply) == "1002"


async def test_missing_header(client: httpx.AsyncClient) -> None:
    """A call without its timestamp header is 1001, before any signature check."""
    headers = axis_headers()
    del headers["timestamp"]
    reply = await client.post("/getAgenciesList", headers=headers)
    assert fail_code(reply) == "1001"
    assert "timestamp" in reply.json()["ErrorDesc"]


@pytest.mark.parametrize("fmt", ["epoch_ms", "epoch_s", "iso8601"])
async def test_every_timestamp_format_is_read(
    client: httpx.AsyncClient, fmt: TimestampFormat
) -> None:
    reply = await client.post("/getAgenciesList", headers=axis_headers(fmt=fmt))
    ok(reply)


async def test_iso_timestamp_without_offset_is_vietnam_time(client: httpx.AsyncClient) -> None:
    """A naive ISO timestamp is read as UTC+7: 16:00 there is 09:00 UTC."""
    base = {
        "systemid": SYSTEM,
        "timestamp": "2026-03-02T16:00:00",
        "servicetype": "eDoc",
        "messagetype": "edoc",
    }
    headers = signed_headers(base, SECRET)
    ok(await client.post("/getAgenciesList", headers=headers))


@pytest.mark.parametrize("skew", [timedelta(minutes=-6), timedelta(minutes=6)])
async def test_stale_or_future_timestamp_is_refused(
    client: httpx.AsyncClient, skew: timedelta
) -> None:
    """Outside the 300-second window either way: 1004."""
    reply = await client.post("/getAgenciesList", headers=axis_headers(when=NOW + skew))
    assert fail_code(reply) == "1004"


async def test_wrong_messagetype_or_servicetype(client: httpx.AsyncClient) -> None:
    """updateStatus wants messagetype status; every call wants servicetype eDoc."""
    reply = await update_status(client, SO_TNMT, {"DocId": "x", "Status": "03"}, "edoc")
    assert fail_code(reply) == "1001"
    base = {"systemid": SYSTEM, "timestamp": format_timestamp(NOW, "epoch_ms")}
    headers = signed_headers({**base, "servicetype": "SOAP", "messagetype": "edoc"}, SECRET)
    assert fail_code(await client.post("/getAgenciesList", headers=headers)) == "1001"


async def test_a_system_acts_only_for_its_organs(client: httpx.AsyncClient) -> None:
    """The demo system does not act for the ministry: reading its inbox is 403, 1005."""
    reply = await client.post("/getReceivedEdocList", headers=axis_headers(organ=BO))
    assert fail_code(reply) == "1005"
    assert reply.status_code == 403


# -- sendEdoc ----------------------------------------------------------------------------------


async def test_send_delivers_to_each_recipient_inbox(client: httpx.AsyncClient) -> None:
    """A sent document arrives (01) in every recipient's inbox, without its content; the sender
    and third organs see nothing in their inboxes."""
    reply = await send(client, document(recipients=(SO_TNMT, BO)))
    doc_id = ok(reply)["DocId"]
    assert set(reply.json()) == {"status", "ErrorCode", "ErrorDesc", "DocId"}
    entries = await inbox(client, SO_TNMT)
    assert len(entries) == 1
    entry = entries[0]
    assert entry["DocId"] == doc_id
    assert entry["DocumentId"] == "vb-2026-0001"
    assert (entry["From"], entry["FromName"]) == (UBND, "Ủy ban nhân dân tỉnh")
    assert (entry["CodeNumber"], entry["CodeNotation"]) == ("123", "UBND-VP")
    assert entry["Subject"] == SUBJECT
    assert entry["Status"] == "01"
    assert datetime.fromisoformat(entry["ReceivedAt"]) == NOW
    assert "data" not in entry
    assert "cv.pdf" not in json.dumps(entries)
    assert await inbox(client, UBND) == []
    assert await inbox(client, VPDK) == []


async def test_same_sender_and_document_id_is_delivered_once(client: httpx.AsyncClient) -> None:
    """Sending the same DocumentId again from the same organ answers the first DocId and
    delivers nothing more; another DocumentId is another document."""
    first = ok(await send(client))["DocId"]
    again = ok(await send(client))["DocId"]
    other = ok(await send(client, document_id="vb-2026-0002"))["DocId"]
    assert again == first
    assert other != first
    assert [e["DocId"] for e in await inbox(client, SO_TNMT)] == [first, other]
    admin = (await client.get("/__admin/documents")).json()
    assert admin["deliveries"] == 2


async def test_hash_file_mismatch(client: httpx.AsyncClient) -> None:
    """A body whose SHA-256 is not the hash-file header: 2001, nothing delivered."""
    reply = await send(client, extra={"hash-file": file_hash(b"another file")})
    assert fail_code(reply) == "2001"
    assert await inbox(client, SO_TNMT) == []


async def test_missing_hash_file(client: httpx.AsyncClient) -> None:
    body = build_edxml(document(), "vb-1")
    headers = axis_headers(extra={"to": json.dumps([SO_TNMT]), "docId": "vb-1"})
    reply = await client.post("/sendEdoc", content=body, headers=headers)
    assert fail_code(reply) == "1001"
    assert "hash-file" in reply.json()["ErrorDesc"]


async def test_edxml_breaking_the_xsd_is_refused_naming_the_first_error(
    client: httpx.AsyncClient,
) -> None:
    """A priority of 9 breaks the schema: 2002, the error named with its line."""
    body = build_edxml(document(), "vb-1").replace(
        b"<edXML:Priority>0</edXML:Priority>", b"<edXML:Priority>9</edXML:Priority>"
    )
    reply = await send(client, body=body, document_id="vb-1")
    assert fail_code(reply) == "2002"
    description = reply.json()["ErrorDesc"]
    assert "Priority" in description
    assert "line 2:" in description  # after the XML declaration


@pytest.mark.parametrize(
    "body",
    [
        b"<edXML",
        b"<?xml version='1.0'?><other/>",
        b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
    ],
    ids=["not-well-formed", "not-edxml", "xxe"],
)
async def test_not_edxml_is_refused(client: httpx.AsyncClient, body: bytes) -> None:
    reply = await send(client, body=body)
    assert fail_code(reply) == "2002"
    assert "root:" not in reply.text  # /etc/passwd was not read


async def test_unknown_recipient_is_named(client: httpx.AsyncClient) -> None:
    """A recipient not in the agency catalogue: 2003 naming it; nobody gets the document."""
    reply = await send(client, document(recipients=(SO_TNMT, "999.99.99.Z99")))
    assert fail_code(reply) == "2003"
    assert "999.99.99.Z99" in reply.json()["ErrorDesc"]
    assert await inbox(client, SO_TNMT) == []


@pytest.mark.parametrize(
    "overrides",
    [
        {"extra": {"to": json.dumps([VPDK])}},
        {"extra": {"docId": "another-id"}},
        {"organ": VPDK},
    ],
    ids=["to", "docId", "from"],
)
async def test_headers_must_agree_with_the_edxml(
    client: httpx.AsyncClient, overrides: dict[str, Any]
) -> None:
    reply = await send(client, **overrides)
    assert fail_code(reply) == "2004"


async def test_to_header_must_be_a_json_array(client: httpx.AsyncClient) -> None:
    reply = await send(client, extra={"to": SO_TNMT})
    assert fail_code(reply) == "1001"


async def test_body_over_the_limit() -> None:
    app = mock(EdocSettings(max_body_bytes=1000))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://edoc.test"
    ) as client:
        reply = await send(client)
    assert fail_code(reply) == "2005"
    assert reply.status_code == 413


async def test_a_hand_written_edxml_with_every_part_is_accepted(
    client: httpx.AsyncClient,
) -> None:
    """A file written by another system (not the adapter's builder) with a trace, an XML-DSig
    signature, a ResponseFor, blank optional elements and a cid: content id validates and is
    delivered."""
    body = HAND_WRITTEN.encode()
    assert SCHEMA.validate(etree.fromstring(body)), SCHEMA.error_log
    doc = document(recipients=(SO_TNMT,))
    reply = await client.post("/sendEdoc", content=body, headers=send_headers(body, doc, "khac-01"))
    ok(reply)
    assert [e["Subject"] for e in await inbox(client, SO_TNMT)] == ["Về việc trả lời"]


# -- reading, status, count --------------------------------------------------------------------


async def test_get_and_download_give_the_file_back_to_its_parties(
    client: httpx.AsyncClient,
) -> None:
    """getEdoc answers the file in base64 and downloadEdoc the raw bytes, to the recipient and
    the sender; another organ, or an unknown DocId, is 3001."""
    doc = document()
    body = build_edxml(doc, "vb-1")
    doc_id = ok(await send(client, doc, "vb-1", body=body))["DocId"]
    for organ in (SO_TNMT, UBND):
        got = await client.post(
            "/getEdoc", json={"DocId": doc_id}, headers=axis_headers(organ=organ)
        )
        assert base64.b64decode(ok(got)["data"]) == body
    raw = await client.get(
        "/downloadEdoc", params={"docId": doc_id}, headers=axis_headers(organ=SO_TNMT)
    )
    assert raw.status_code == 200
    assert raw.content == body
    assert raw.headers["content-type"] == "application/octet-stream"
    stranger = await client.post(
        "/getEdoc", json={"DocId": doc_id}, headers=axis_headers(organ=VPDK)
    )
    unknown = await client.post(
        "/getEdoc", json={"DocId": "no-such-doc"}, headers=axis_headers(organ=SO_TNMT)
    )
    assert fail_code(stranger) == "3001"
    assert fail_code(unknown) == "3001"
    assert stranger.json()["ErrorDesc"] == unknown.json()["ErrorDesc"]


async def test_doc_id_from_header_and_body_must_agree(client: httpx.AsyncClient) -> None:
    doc_id = ok(await send(client))["DocId"]
    headers = axis_headers(organ=SO_TNMT, extra={"docId": doc_id})
    ok(await client.post("/getEdoc", headers=headers))
    differ = await client.post("/getEdoc", json={"DocId": "other"}, headers=headers)
    missing = await client.post("/getEdoc", json={}, headers=axis_headers(organ=SO_TNMT))
    assert fail_code(differ) == "3003"
    assert fail_code(missing) == "1001"


async def test_recipient_status_reaches_the_sender(client: httpx.AsyncClient) -> None:
    """A recipient's 03 (received) with its officer shows in the sender's sent list."""
    doc_id = ok(await send(client, document(recipients=(SO_TNMT, VPDK))))["DocId"]
    reply = await update_status(
        client,
        SO_TNMT,
        {
            "DocId": doc_id,
            "Status": "03",
            "Description": "Đã tiếp nhận",
            "StaffInfo": {"Staff": "Lê Thị Hoa", "Department": "Văn phòng"},
        },
    )
    assert ok(reply)["data"] == []
    [sent] = await sent_list(client)
    assert sent["DocId"] == doc_id
    statuses = {to["OrganId"]: (to["Status"], to["Description"]) for to in sent["To"]}
    assert statuses == {SO_TNMT: ("03", "Đã tiếp nhận"), VPDK: ("01", None)}
    assert [e["Status"] for e in await inbox(client, SO_TNMT)] == ["03"]


@pytest.mark.parametrize("code", ["07", "12", "14", "99", "3", 3, None])
async def test_unknown_status_codes_are_refused(client: httpx.AsyncClient, code: Any) -> None:
    doc_id = ok(await send(client))["DocId"]
    reply = await update_status(client, SO_TNMT, {"DocId": doc_id, "Status": code})
    assert fail_code(reply) == "3002"


async def test_who_may_set_which_status(client: httpx.AsyncClient) -> None:
    """Recipients may not set 01 or 13; the sender may only recall (13), which marks every
    copy; an organ that is no party gets 3001."""
    doc_id = ok(await send(client, document(recipients=(SO_TNMT, VPDK))))["DocId"]
    for organ, code, expected in [
        (SO_TNMT, "01", "3002"),
        (SO_TNMT, "13", "3002"),
        (UBND, "03", "3002"),
    ]:
        reply = await update_status(client, organ, {"DocId": doc_id, "Status": code})
        assert fail_code(reply) == expected, (organ, code)
    ok(await update_status(client, UBND, {"DocId": doc_id, "Status": "13"}))
    [sent] = await sent_list(client)
    assert {to["Status"] for to in sent["To"]} == {"13"}
    ok(await update_status(client, VPDK, {"DocId": doc_id, "Status": "15"}))
    [sent] = await sent_list(client)
    assert {to["OrganId"]: to["Status"] for to in sent["To"]} == {SO_TNMT: "13", VPDK: "15"}


async def test_status_body_must_be_a_json_object(client: httpx.AsyncClient) -> None:
    reply = await client.post(
        "/updateStatus",
        content=b"[1, 2]",
        headers={**axis_headers("status", organ=SO_TNMT), "content-type": "application/json"},
    )
    assert fail_code(reply) == "3003"


async def test_count_of_documents_still_arrived(client: httpx.AsyncClient) -> None:
    """countReceiveEdoc counts the inbox's documents still at 01."""

    async def count() -> int:
        reply = await client.get("/countReceiveEdoc", headers=axis_headers(organ=SO_TNMT))
        value: int = ok(reply)["data"]
        return value

    assert await count() == 0
    first = ok(await send(client))["DocId"]
    ok(await send(client, document_id="vb-2"))
    assert await count() == 2
    ok(await update_status(client, SO_TNMT, {"DocId": first, "Status": "03"}))
    assert await count() == 1


# -- admin, faults, settings -------------------------------------------------------------------


async def test_admin_lists_documents_without_content(client: httpx.AsyncClient) -> None:
    doc = document()
    body = build_edxml(doc, "vb-1")
    doc_id = ok(await send(client, doc, "vb-1", body=body))["DocId"]
    admin = (await client.get("/__admin/documents")).json()
    [entry] = admin["documents"]
    assert entry["DocId"] == doc_id
    assert entry["Sha256"] == file_hash(body)
    assert entry["Bytes"] == len(body)
    assert entry["To"] == [{"OrganId": SO_TNMT, "Status": "01"}]
    assert SUBJECT not in json.dumps(admin)


async def test_start_up_faults_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """LGSP_MOCK_FAULTS_EDOC rules apply to this mock."""
    rules = [{"path": "/sendEdoc", "error_rate": 1, "error_statuses": [503]}]
    monkeypatch.setenv("LGSP_MOCK_FAULTS_EDOC", json.dumps(rules))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(mock()), base_url="http://edoc.test"
    ) as client:
        faulted = await send(client)
        fine = await client.post("/getAgenciesList", headers=axis_headers())
    assert faulted.status_code == 503
    ok(fine)


def test_settings_refuse_organs_that_are_not_agencies() -> None:
    with pytest.raises(ValueError, match="unknown agencies"):
        EdocSettings(organs_of={"lgsp-demo": ["999.99.99.Z99"]})
    with pytest.raises(ValueError, match="unregistered system"):
        EdocSettings(organs_of={"nobody": [UBND]})


async def test_mock_failure_is_a_9999_reply(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in the mock answers 500 FAIL 9999; the log line quotes nothing of the request."""

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("mock bug")

    monkeypatch.setattr("mocks.edoc._app.DocumentStore.received", broken)
    reply = await client.post("/getReceivedEdocList", headers=axis_headers())
    assert fail_code(reply) == "9999"
    assert SECRET not in caplog.text


HAND_WRITTEN = """<?xml version="1.0" encoding="UTF-8"?>
<edXML:edXML xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016"
             xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
  <edXML:edXMLEnvelope>
    <edXML:edXMLHeader>
      <edXML:MessageHeader>
        <edXML:From>
          <edXML:OrganId>000.00.00.H12</edXML:OrganId>
          <edXML:OrganName>Ủy ban nhân dân tỉnh</edXML:OrganName>
          <edXML:OrganInCharge>Chủ tịch UBND tỉnh</edXML:OrganInCharge>
          <edXML:OrganAdd>Số 1 đường Trần Phú</edXML:OrganAdd>
          <edXML:Email>ubnd@example.gov.vn</edXML:Email>
          <edXML:Telephone>0240000000</edXML:Telephone>
          <edXML:Fax>0240000001</edXML:Fax>
          <edXML:Website>https://example.gov.vn</edXML:Website>
        </edXML:From>
        <edXML:To>
          <edXML:OrganId>000.00.00.G12</edXML:OrganId>
          <edXML:OrganName>Sở Tài nguyên và Môi trường</edXML:OrganName>
        </edXML:To>
        <edXML:DocumentId>khac-01</edXML:DocumentId>
        <edXML:Code>
          <edXML:CodeNumber>45</edXML:CodeNumber>
          <edXML:CodeNotation>UBND-KT</edXML:CodeNotation>
        </edXML:Code>
        <edXML:PromulgationInfo>
          <edXML:Place>Hà Nội</edXML:Place>
          <edXML:PromulgationDate>2026-02-27+07:00</edXML:PromulgationDate>
        </edXML:PromulgationInfo>
        <edXML:DocumentType>
          <edXML:Type>1</edXML:Type>
          <edXML:TypeName>Công văn</edXML:TypeName>
        </edXML:DocumentType>
        <edXML:Subject>Về việc trả lời</edXML:Subject>
        <edXML:Content></edXML:Content>
        <edXML:SignerInfo>
          <edXML:Competence>TM. UBND</edXML:Competence>
          <edXML:Position>Phó Chủ tịch</edXML:Position>
          <edXML:FullName>Phạm Văn Cường</edXML:FullName>
        </edXML:SignerInfo>
        <edXML:DueDate>2026-03-15</edXML:DueDate>
        <edXML:ToPlaces>
          <edXML:Place>Như trên</edXML:Place>
          <edXML:Place>Lưu: VT</edXML:Place>
        </edXML:ToPlaces>
        <edXML:OtherInfo>
          <edXML:Priority>1</edXML:Priority>
          <edXML:SphereOfPromulgation>Nội bộ</edXML:SphereOfPromulgation>
          <edXML:TyperNotation>NVA</edXML:TyperNotation>
          <edXML:PromulgationAmount>5</edXML:PromulgationAmount>
          <edXML:PageAmount>2</edXML:PageAmount>
        </edXML:OtherInfo>
        <edXML:ResponseFor>
          <edXML:OrganId>000.00.00.G12</edXML:OrganId>
          <edXML:Code>12/STNMT-VP</edXML:Code>
          <edXML:PromulgationDate>2026-02-20</edXML:PromulgationDate>
          <edXML:DocumentId>stnmt-12</edXML:DocumentId>
        </edXML:ResponseFor>
      </edXML:MessageHeader>
      <edXML:TraceHeaderList>
        <edXML:TraceHeader>
          <edXML:OrganId>000.00.00.H12</edXML:OrganId>
          <edXML:Timestamp>2026-02-27T10:15:00+07:00</edXML:Timestamp>
        </edXML:TraceHeader>
      </edXML:TraceHeaderList>
      <ds:Signature><ds:SignedInfo/></ds:Signature>
    </edXML:edXMLHeader>
    <edXML:edXMLBody>
      <edXML:edXMLManifest>
        <edXML:Reference>
          <edXML:ContentId>cid:tl1</edXML:ContentId>
          <edXML:ContentType>application/pdf</edXML:ContentType>
          <edXML:AttachmentName>tra-loi.pdf</edXML:AttachmentName>
          <edXML:Description>Văn bản trả lời</edXML:Description>
        </edXML:Reference>
      </edXML:edXMLManifest>
    </edXML:edXMLBody>
  </edXML:edXMLEnvelope>
  <edXML:AttachmentEncoded>
    <edXML:Attachment ContentId="cid:tl1">JVBERi0xLjcK
dHJhIGxvaQ==</edXML:Attachment>
  </edXML:AttachmentEncoded>
</edXML:edXML>
"""
