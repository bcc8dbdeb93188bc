"""The document axis adapter against the mock, in process: a document built as edXML (valid
against the axis's XSD), sent with signed headers, found in the recipient's inbox and read back
equal, attachments byte for byte; a redelivery de-duplicated by the DocumentId derived from the
idempotency key; statuses reported; every FAIL reply and HTTP failure a catalogue error; and
nothing of a document in the exchange record."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import structlog
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from lxml import etree
from pydantic import ValidationError

from adapters.base import (
    BadRequest,
    Context,
    Credentials,
    Resources,
    Upstream,
    UpstreamBadResponse,
    UpstreamFault,
    UpstreamRejected,
    UpstreamUnavailable,
)
from adapters.edoc import EdocAdapter, EdocOptions
from adapters.edoc.edxml import build_edxml, parse_edxml
from adapters.edoc.signing import (
    HASH_HEADER,
    SIGN_HEADER,
    SIGN_KEY_HEADER,
    file_hash,
    format_timestamp,
    parse_timestamp,
    signed_headers,
    verify_signed_headers,
)
from bus import create_app as create_bus
from bus.registry import AdapterRegistry
from bus.security import Consumer
from bus.settings import Settings
from mocks.edoc import EDXML_XSD, create_app
from schemas.document import (
    Attachment,
    Document,
    DocumentQuery,
    DocumentStatus,
    InboxQuery,
    Officer,
    Organ,
    OutgoingDocument,
    ResponseFor,
    Signer,
    StatusUpdate,
    TraceEntry,
)
from tests.support import StepClock, running
from tests.test_mock_edoc import HAND_WRITTEN

pytestmark = pytest.mark.anyio

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
SYSTEM, SECRET = "lgsp-demo", "edoc-demo-secret"
UBND, SO_TNMT, VPDK = "000.00.00.H12", "000.00.00.G12", "000.00.01.H12"
SCHEMA = etree.XMLSchema(etree.parse(str(EDXML_XSD)))
SUBJECT = "Về việc thẩm định hồ sơ đất đai của bà Hoàng Thị Mai"
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 40
CONSUMER = Consumer(id="qlvb", name="Quản lý văn bản tỉnh")


class MemoryState:
    """The adapter state the bus would lend (unused by this adapter)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    async def get(self, key: str) -> str | None:
        return self.values.get(key)

    async def put(self, key: str, value: str) -> None:
        self.values[key] = value


def digest(data: bytes) -> str:
    return hmac.new(b"test-digest-key", data, hashlib.sha256).hexdigest()


def full_document(**overrides: Any) -> OutgoingDocument:
    """A document using every field the edXML can carry."""
    fields: dict[str, Any] = {
        "sender": Organ(
            id=UBND,
            name="Ủy ban nhân dân tỉnh",
            in_charge="Chủ tịch",
            address="Số 1 Trần Phú",
            email="ubnd@example.gov.vn",
            phone="0240000000",
            fax="0240000001",
            website="https://example.gov.vn",
        ),
        "recipients": [
            Organ(id=SO_TNMT, name="Sở Tài nguyên và Môi trường"),
            Organ(id=VPDK, name="Văn phòng đăng ký đất đai"),
        ],
        "code_number": "123",
        "code_notation": "UBND-VP",
        "promulgation_place": "Hà Nội",
        "promulgation_date": dt.date(2026, 3, 1),
        "document_type": "1",
        "document_type_name": "Công văn",
        "subject": SUBJECT,
        "content": "Kính gửi: Sở Tài nguyên và Môi trường\n\tĐề nghị thẩm định <hồ sơ> & trả lời.",
        "signer": Signer(competence="TM. UBND", position="Phó Chủ tịch", full_name="Phạm Văn C"),
        "due_date": dt.date(2026, 3, 15),
        "to_places": ["Như trên", "Lưu: VT"],
        "priority": 3,
        "sphere_of_promulgation": "Nội bộ",
        "typer_notation": "NVA",
        "promulgation_amount": 5,
        "page_amount": 2,
        "response_for": [
            ResponseFor(
                organ_id=SO_TNMT,
                code="12/STNMT-VP",
                promulgation_date=dt.date(2026, 2, 20),
                document_id="stnmt-12",
            )
        ],
        "attachments": [
            Attachment.from_bytes("cong-van.pdf", PDF, "application/pdf", "Bản chính"),
            Attachment.from_bytes("phu-luc.bin", b"\x00\xff" * 100),
        ],
    }
    fields.update(overrides)
    return OutgoingDocument(**fields)


def minimal_document() -> OutgoingDocument:
    return OutgoingDocument(
        sender=Organ(id=UBND, name="UBND tỉnh"),
        recipients=[Organ(id=SO_TNMT, name="Sở TN&MT")],
        code_number="1",
        code_notation="UBND",
        promulgation_place="Hà Nội",
        promulgation_date=dt.date(2026, 1, 2),
        document_type="1",
        document_type_name="Công văn",
        subject="Thông báo",
        signer=Signer(full_name="Nguyễn Văn A"),
    )


def outgoing_part(doc: Document) -> dict[str, Any]:
    """The fields a sender writes, as a received document carries them."""
    return doc.model_dump(exclude={"doc_id", "document_id", "trace"})


@dataclass
class Harness:
    """An adapter started on resources that reach ``transport`` (the mock, by default)."""

    transport: httpx.AsyncBaseTransport
    app: Any = None
    clock: StepClock = field(default_factory=lambda: StepClock(NOW.timestamp()))
    http: httpx.AsyncClient | None = None

    async def adapter(self, secret: str = SECRET, **options: Any) -> EdocAdapter:
        if self.http is None:
            self.http = httpx.AsyncClient(transport=self.transport)
        resources = Resources(
            service="edoc",
            http=self.http,
            upstream=Upstream(base_url="http://edoc.test/", timeout=10, connect_timeout=5),
            credentials=Credentials({"secret": secret}),
            clock=self.clock,
            log=structlog.get_logger("test.edoc"),
            digest=digest,
            state=MemoryState(),
        )
        adapter = EdocAdapter(
            EdocOptions.model_validate({"system_id": SYSTEM, "organ_id": SO_TNMT, **options})
        )
        await adapter.start(resources)
        self.resources = resources
        return adapter

    def ctx(self, key: str | None = None, consumer: Consumer = CONSUMER) -> Context:
        return Context(
            request_id="req-1",
            service="edoc",
            operation="document.send",
            consumer=consumer,
            resources=self.resources,
            idempotency_key=key,
            delivery_id=key,
        )

    def mock_state(self) -> Any:
        return self.app.state.store


@pytest.fixture
async def harness(sensitive: Callable[[str], str]) -> AsyncIterator[Harness]:
    sensitive(SECRET)
    sensitive(SUBJECT)
    axis_clock = StepClock(NOW.timestamp())  # the axis's own: tests move only the bus's
    app = create_app(clock=axis_clock.now)
    h = Harness(transport=httpx.ASGITransport(app), app=app)
    yield h
    if h.http is not None:
        await h.http.aclose()


@pytest.fixture
async def replying() -> AsyncIterator[Callable[[httpx.Response], Harness]]:
    """A harness whose upstream answers every request with the given response."""
    made: list[Harness] = []

    def make(response: httpx.Response) -> Harness:
        h = Harness(transport=httpx.MockTransport(lambda request: response))
        made.append(h)
        return h

    yield make
    for h in made:
        if h.http is not None:
            await h.http.aclose()


# -- signing -----------------------------------------------------------------------------------


def test_signed_headers_carry_copies_names_json_and_hmac() -> None:
    """Each header is re-sent as XroadVnpt-X; the names, the JSON and its HMAC follow."""
    base = {"systemid": SYSTEM, "timestamp": "1772442000000", "from": UBND}
    headers = signed_headers(base, SECRET, version="2.0")
    assert headers["XroadVnpt-systemid"] == SYSTEM
    assert headers["XroadVnpt-from"] == UBND
    assert headers[SIGN_KEY_HEADER] == "systemid;timestamp;from"
    assert json.loads(headers[SIGN_HEADER]) == base
    expected = hmac.new(SECRET.encode(), headers[SIGN_HEADER].encode(), hashlib.sha256)
    assert headers[HASH_HEADER] == expected.hexdigest()
    assert headers["XroadVnpt-version"] == "2.0"
    assert verify_signed_headers(headers, SECRET) is None


def test_verification_ignores_header_name_case() -> None:
    headers = signed_headers({"systemid": SYSTEM, "docId": "d-1"}, SECRET)
    assert verify_signed_headers({k.lower(): v for k, v in headers.items()}, SECRET) is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda h: h.pop(HASH_HEADER), "missing"),
        (lambda h: h.update({"docId": "d-2"}), "differs from its signed value"),
        (lambda h: h.update({"XroadVnpt-docId": "d-2"}), "differs from its signed value"),
        (lambda h: h.update({SIGN_KEY_HEADER: "systemid"}), "does not name"),
        (lambda h: h.update({SIGN_HEADER: '{"systemid":"other"}'}), "does not match"),
    ],
)
def test_verification_says_why_it_fails(
    change: Callable[[dict[str, str]], Any], reason: str
) -> None:
    headers = signed_headers({"systemid": SYSTEM, "docId": "d-1"}, SECRET)
    change(headers)
    assert reason in (verify_signed_headers(headers, SECRET) or "")


def test_verification_with_another_secret_fails() -> None:
    headers = signed_headers({"systemid": SYSTEM}, SECRET)
    assert "does not match" in (verify_signed_headers(headers, "other") or "")


@pytest.mark.parametrize("fmt", ["epoch_ms", "epoch_s", "iso8601"])
def test_timestamps_round_trip(fmt: Any) -> None:
    assert parse_timestamp(format_timestamp(NOW, fmt)) == NOW


@pytest.mark.parametrize("text", ["", "soon", "12345", "2026-13-01T00:00:00"])
def test_unreadable_timestamps(text: str) -> None:
    assert parse_timestamp(text) is None


# -- edXML -------------------------------------------------------------------------------------


@pytest.mark.parametrize("doc", [full_document(), minimal_document()], ids=["full", "minimal"])
def test_built_edxml_validates_against_the_axis_xsd(doc: OutgoingDocument) -> None:
    data = build_edxml(doc, "vb-2026-1", sent_at=NOW)
    root = etree.fromstring(data)
    assert SCHEMA.validate(root), SCHEMA.error_log
    assert root.nsmap == {"edXML": "http://www.mic.gov.vn/TBT/QCVN_102_2016"}


def test_built_edxml_pairs_references_with_attachments() -> None:
    """Reference cid:attachmentN goes with Attachment ContentId attachmentN, in order."""
    root = etree.fromstring(build_edxml(full_document(), "vb-1"))
    ns = {"e": "http://www.mic.gov.vn/TBT/QCVN_102_2016"}
    refs = root.xpath("//e:Reference/e:ContentId/text()", namespaces=ns)
    ids = root.xpath("//e:Attachment/@ContentId", namespaces=ns)
    assert refs == ["cid:attachment1", "cid:attachment2"]
    assert ids == ["attachment1", "attachment2"]


def test_parse_gives_back_the_built_document() -> None:
    doc = full_document()
    parsed = parse_edxml(build_edxml(doc, "vb-7", sent_at=NOW))
    assert outgoing_part(parsed) == doc.model_dump()
    assert parsed.document_id == "vb-7"
    assert parsed.doc_id is None
    assert parsed.trace == [TraceEntry(organ_id=UBND, timestamp=NOW)]
    assert parsed.attachments[0].data == PDF


def test_parse_reads_a_file_another_system_wrote() -> None:
    """Dates with a zone, blank optional elements, cid: on both sides and wrapped base64."""
    doc = parse_edxml(HAND_WRITTEN.encode())
    assert doc.promulgation_date == dt.date(2026, 2, 27)
    assert doc.content is None
    assert doc.sender.website == "https://example.gov.vn"
    assert doc.priority == 1
    assert doc.response_for[0].code == "12/STNMT-VP"
    assert doc.trace[0].timestamp == dt.datetime.fromisoformat("2026-02-27T10:15:00+07:00")
    [attachment] = doc.attachments
    assert (attachment.name, attachment.content_type) == ("tra-loi.pdf", "application/pdf")
    assert attachment.description == "Văn bản trả lời"
    assert attachment.data == b"%PDF-1.7\ntra loi"


_TEXT = st.lists(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff")
    | st.sampled_from(["\n", "\r\n", "\r", "\t", " ", "&", "<", "]]>", "\u0301"]),
    min_size=1,
    max_size=40,
).map("".join)


@settings(max_examples=60, deadline=None)
@given(subject=_TEXT, content=_TEXT, name=_TEXT)
def test_any_text_survives_build_and_parse(subject: str, content: str, name: str) -> None:
    """Whatever text a valid document holds comes back identical from its edXML."""
    try:
        doc = minimal_document().model_copy()
        doc = OutgoingDocument.model_validate(
            {
                **doc.model_dump(),
                "subject": subject,
                "content": content,
                "signer": {"full_name": name},
            }
        )
    except ValidationError:
        assume(False)
        return
    assert outgoing_part(parse_edxml(build_edxml(doc, "vb-h"))) == doc.model_dump()


@pytest.mark.parametrize(
    "data",
    [
        b"<edXML:edXML",
        b"\xff\xfe<garbage",
        b"<other/>",
        b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        b"<l>&b;</l>",
        "<!DOCTYPE x>".encode("utf-16"),
    ],
    ids=["truncated", "garbage", "not-edxml", "xxe", "laughs", "utf16-doctype"],
)
def test_hostile_or_broken_files_are_bad_responses(data: bytes) -> None:
    with pytest.raises(UpstreamBadResponse):
        parse_edxml(data)


def test_a_file_that_does_not_fit_names_fields_not_values() -> None:
    """A priority of 9 and an empty subject: the error names the fields, never the text."""
    data = (
        build_edxml(full_document(), "vb-1")
        .replace(b"<edXML:Priority>3</edXML:Priority>", b"<edXML:Priority>9</edXML:Priority>")
        .replace(SUBJECT.encode(), b"")
    )
    with pytest.raises(UpstreamBadResponse) as exc:
        parse_edxml(data)
    assert exc.value.detail["fields"] == ["priority", "subject"]
    assert "Hoàng" not in exc.value.message


# -- the adapter against the mock ---------------------------------------------------------------


def test_operations_and_their_modes() -> None:
    """document.send is store-and-forward and honours the idempotency key; reads are sync."""
    specs = EdocAdapter.operations
    assert set(specs) == {"document.send", "document.inbox", "document.get", "document.status"}
    send = specs["document.send"]
    assert (send.mode, send.idempotent, send.honours_idempotency_key) == ("async", False, True)
    assert all(specs[name].mode == "sync" for name in specs if name != "document.send")


async def test_send_inbox_get_round_trip(harness: Harness) -> None:
    """The sent document is in the recipient's inbox, and reads back equal to what was sent,
    attachments byte for byte, with the DocId the axis gave."""
    adapter = await harness.adapter()
    doc = full_document()
    receipt = await adapter.send(doc, harness.ctx("dlv-1"))
    inbox = await adapter.inbox(InboxQuery(), harness.ctx())
    assert inbox.organ_id == SO_TNMT
    [entry] = inbox.entries
    assert entry.doc_id == receipt.doc_id
    assert entry.document_id == receipt.document_id
    assert (entry.sender_id, entry.sender_name) == (UBND, "Ủy ban nhân dân tỉnh")
    assert entry.subject == SUBJECT
    assert entry.status is DocumentStatus.ARRIVED
    assert entry.received_at == NOW
    got = await adapter.get(DocumentQuery(doc_id=receipt.doc_id), harness.ctx())
    assert outgoing_part(got) == doc.model_dump()
    assert [a.data for a in got.attachments] == [a.data for a in doc.attachments]
    assert (got.doc_id, got.document_id) == (receipt.doc_id, receipt.document_id)
    assert got.trace == [TraceEntry(organ_id=UBND, timestamp=NOW)]
    other = await adapter.inbox(InboxQuery(organ_id=VPDK), harness.ctx())
    assert [e.doc_id for e in other.entries] == [receipt.doc_id]


async def test_redelivery_with_the_same_key_is_delivered_once(harness: Harness) -> None:
    """The same delivery id twice gives the same DocumentId and DocId, one delivery; another
    key, or no key, is another document."""
    adapter = await harness.adapter()
    doc = minimal_document()
    first = await adapter.send(doc, harness.ctx("dlv-1"))
    harness.clock.t += 30  # a later attempt: another timestamp and trace, the same document
    again = await adapter.send(doc, harness.ctx("dlv-1"))
    other = await adapter.send(doc, harness.ctx("dlv-2"))
    unkeyed = [await adapter.send(doc, harness.ctx(None)) for _ in range(2)]
    assert again == first
    assert other.doc_id != first.doc_id
    assert unkeyed[0].doc_id != unkeyed[1].doc_id
    assert harness.mock_state().deliveries == 4


async def test_document_id_depends_on_the_consumer_too(harness: Harness) -> None:
    """Two consumers using the same Idempotency-Key send two documents."""
    adapter = await harness.adapter()
    doc = minimal_document()
    mine = await adapter.send(doc, harness.ctx("key-1"))
    theirs = await adapter.send(doc, harness.ctx("key-1", Consumer(id="portal", name="Cổng")))
    assert mine.document_id != theirs.document_id


async def test_send_headers_are_signed_and_bind_the_file(harness: Harness) -> None:
    """What goes on the wire: signed headers naming the recipients, the DocumentId as docId,
    the file's hash, the version; the body the edXML (octet-stream)."""
    seen: list[httpx.Request] = []
    inner = harness.transport

    class Spy(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            await request.aread()
            seen.append(request)
            return await inner.handle_async_request(request)

    harness.transport = Spy()
    adapter = await harness.adapter(version="1.2", timestamp_format="iso8601")
    receipt = await adapter.send(full_document(), harness.ctx("dlv-9"))
    [request] = seen
    headers = request.headers
    assert request.url == "http://edoc.test/sendEdoc"
    assert verify_signed_headers(headers, SECRET) is None
    assert headers["systemid"] == SYSTEM
    assert headers["servicetype"] == "eDoc"
    assert headers["messagetype"] == "edoc"
    assert headers["from"] == UBND
    assert json.loads(headers["to"]) == [SO_TNMT, VPDK]
    assert headers["docId"] == receipt.document_id
    assert headers["hash-file"] == file_hash(request.content)
    assert headers["timestamp"] == "2026-03-02T09:00:00+00:00"
    assert headers["XroadVnpt-version"] == "1.2"
    assert headers["content-type"] == "application/octet-stream"
    assert "hash-file" in headers[SIGN_KEY_HEADER].split(";")
    assert SCHEMA.validate(etree.fromstring(request.content))


async def test_status_update_reaches_the_sender(harness: Harness) -> None:
    """A recipient's status and officer are recorded against its copy; the sender may recall."""
    adapter = await harness.adapter()
    receipt = await adapter.send(full_document(), harness.ctx("dlv-1"))
    result = await adapter.status(
        StatusUpdate(
            doc_id=receipt.doc_id,
            status=DocumentStatus.RECEIVED,
            description="Đã tiếp nhận",
            officer=Officer(name="Lê Thị Hoa", department="Văn phòng"),
        ),
        harness.ctx(),
    )
    assert (result.doc_id, result.organ_id, result.status) == (
        receipt.doc_id,
        SO_TNMT,
        DocumentStatus.RECEIVED,
    )
    copy = harness.mock_state().documents[receipt.doc_id].copies[SO_TNMT]
    assert (copy.status, copy.description) == ("03", "Đã tiếp nhận")
    assert copy.staff == {"Staff": "Lê Thị Hoa", "Department": "Văn phòng"}
    inbox = await adapter.inbox(InboxQuery(), harness.ctx())
    assert inbox.entries[0].status is DocumentStatus.RECEIVED
    recall = StatusUpdate(doc_id=receipt.doc_id, status=DocumentStatus.RECALL, organ_id=UBND)
    await adapter.status(recall, harness.ctx())
    copies = harness.mock_state().documents[receipt.doc_id].copies
    assert {c.status for c in copies.values()} == {"13"}


async def test_status_the_organ_may_not_set_is_rejected(harness: Harness) -> None:
    adapter = await harness.adapter()
    receipt = await adapter.send(minimal_document(), harness.ctx("dlv-1"))
    with pytest.raises(UpstreamRejected) as exc:
        await adapter.status(
            StatusUpdate(doc_id=receipt.doc_id, status=DocumentStatus.RECALL), harness.ctx()
        )
    assert exc.value.detail["reason"] == "bad_status"


async def test_bad_secret_is_rejected_for_the_operator_to_fix(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong secret: upstream.rejected, reason bad_signature, not retryable; the secret is in
    no message and no log."""
    adapter = await harness.adapter(secret="wrong-secret-value")
    with pytest.raises(UpstreamRejected) as exc:
        await adapter.inbox(InboxQuery(), harness.ctx())
    error = exc.value
    assert error.detail["reason"] == "bad_signature"
    assert error.detail["error_code"] == "1003"
    assert error.detail["http_status"] == 401
    assert not error.retryable
    assert "secret" in error.message
    assert "wrong-secret-value" not in error.message
    assert "wrong-secret-value" not in capsys.readouterr().out


async def test_clock_off_is_a_stale_timestamp(harness: Harness) -> None:
    adapter = await harness.adapter()
    harness.clock.t -= 3600
    with pytest.raises(UpstreamRejected) as exc:
        await adapter.inbox(InboxQuery(), harness.ctx())
    assert exc.value.detail["reason"] == "stale_timestamp"


async def test_unknown_document_and_unknown_recipient(harness: Harness) -> None:
    adapter = await harness.adapter()
    with pytest.raises(UpstreamRejected) as missing:
        await adapter.get(DocumentQuery(doc_id="no-such-doc"), harness.ctx())
    assert missing.value.detail["reason"] == "unknown_document"
    nobody = full_document(recipients=[Organ(id="999.99.99.Z99", name="Không có")])
    with pytest.raises(UpstreamRejected) as unknown:
        await adapter.send(nobody, harness.ctx("dlv-1"))
    assert unknown.value.detail["reason"] == "unknown_agency"
    assert "upstream_description" not in unknown.value.detail


async def test_organ_not_served_by_the_system(harness: Harness) -> None:
    adapter = await harness.adapter()
    with pytest.raises(UpstreamRejected) as exc:
        await adapter.inbox(InboxQuery(organ_id="000.00.00.G01"), harness.ctx())
    assert exc.value.detail["reason"] == "organ_not_served"


async def test_no_organ_given_or_configured(harness: Harness) -> None:
    adapter = await harness.adapter(organ_id=None)
    with pytest.raises(BadRequest, match="organ_id"):
        await adapter.inbox(InboxQuery(), harness.ctx())


@pytest.mark.parametrize("fmt", ["epoch_ms", "epoch_s", "iso8601"])
async def test_every_timestamp_format_is_accepted(harness: Harness, fmt: str) -> None:
    adapter = await harness.adapter(timestamp_format=fmt)
    assert (await adapter.inbox(InboxQuery(), harness.ctx())).entries == []


async def test_start_needs_the_secret(harness: Harness) -> None:
    harness.http = httpx.AsyncClient(transport=harness.transport)
    resources = Resources(
        service="edoc",
        http=harness.http,
        upstream=Upstream(base_url="http://edoc.test", timeout=10, connect_timeout=5),
        credentials=Credentials({}),
        clock=harness.clock,
        log=structlog.get_logger("test.edoc"),
        digest=digest,
        state=MemoryState(),
    )
    with pytest.raises(ValueError, match="'secret'"):
        await EdocAdapter(EdocOptions(system_id=SYSTEM)).start(resources)


async def test_exchange_record_has_digests_never_content(harness: Harness) -> None:
    """One entry per HTTP exchange: endpoint, ids, keyed digests and sizes, statuses."""
    adapter = await harness.adapter()
    ctx = harness.ctx("dlv-1")
    receipt = await adapter.send(full_document(), ctx)
    [entry] = ctx.upstream_exchanges
    assert entry["endpoint"] == "sendEdoc"
    assert entry["document_id"] == receipt.document_id
    assert (entry["http_status"], entry["axis_status"], entry["error_code"]) == (200, "OK", "0")
    assert entry["request_bytes"] > len(PDF)
    assert len(entry["request_hmac"]) == len(entry["reply_hmac"]) == 64
    recorded = json.dumps(ctx.upstream_exchanges, ensure_ascii=False)
    assert SUBJECT not in recorded
    assert base64.b64encode(PDF).decode()[:40] not in recorded
    read = harness.ctx()
    await adapter.get(DocumentQuery(doc_id=receipt.doc_id), read)
    assert [e["endpoint"] for e in read.upstream_exchanges] == ["getEdoc"]
    assert read.upstream_exchanges[0]["doc_id"] == receipt.doc_id
    assert SUBJECT not in json.dumps(read.upstream_exchanges, ensure_ascii=False)


# -- replies that are not the happy path ---------------------------------------------------------


async def test_throttled_or_down_is_unavailable_with_retry_after(
    replying: Callable[[httpx.Response], Harness],
) -> None:
    h = replying(httpx.Response(503, headers={"Retry-After": "7"}, text="down"))
    adapter = await h.adapter()
    with pytest.raises(UpstreamUnavailable) as exc:
        await adapter.inbox(InboxQuery(), h.ctx())
    assert exc.value.retry_after == 7
    assert h.ctx().upstream_exchanges == []  # a fresh context records nothing


async def test_server_error_with_a_fail_body_is_a_fault(
    replying: Callable[[httpx.Response], Harness],
) -> None:
    body = {"status": "FAIL", "ErrorCode": "9999", "ErrorDesc": "Lỗi hệ thống", "data": []}
    h = replying(httpx.Response(500, json=body))
    adapter = await h.adapter()
    with pytest.raises(UpstreamFault):
        await adapter.inbox(InboxQuery(), h.ctx())


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>portal</html>"),
        httpx.Response(200, content=b"\xff\xfe{"),
        httpx.Response(200, json={"result": "ok"}),
        httpx.Response(200, json=["OK"]),
    ],
    ids=["html", "not-utf8", "no-status", "array"],
)
async def test_a_reply_that_is_not_the_axis_json_is_a_bad_response(
    replying: Callable[[httpx.Response], Harness], response: httpx.Response
) -> None:
    h = replying(response)
    adapter = await h.adapter()
    with pytest.raises(UpstreamBadResponse):
        await adapter.inbox(InboxQuery(), h.ctx())


async def test_an_error_status_without_the_axis_json_is_rejected(
    replying: Callable[[httpx.Response], Harness],
) -> None:
    h = replying(httpx.Response(404, text="Not Found"))
    adapter = await h.adapter()
    with pytest.raises(UpstreamRejected) as exc:
        await adapter.inbox(InboxQuery(), h.ctx())
    assert exc.value.detail["upstream_status"] == 404


async def test_an_unknown_error_code_is_rejected_as_other(
    replying: Callable[[httpx.Response], Harness],
) -> None:
    body = {"status": "FAIL", "ErrorCode": "42", "ErrorDesc": "?", "data": []}
    h = replying(httpx.Response(200, json=body))
    adapter = await h.adapter()
    with pytest.raises(UpstreamRejected) as exc:
        await adapter.inbox(InboxQuery(), h.ctx())
    assert (exc.value.detail["reason"], exc.value.detail["error_code"]) == ("other", "42")


@pytest.mark.parametrize(
    "data",
    [None, "not base64!", base64.b64encode(b"<not-edxml/>").decode()],
    ids=["no-data", "not-base64", "not-edxml"],
)
async def test_get_with_an_unusable_file_is_a_bad_response(
    replying: Callable[[httpx.Response], Harness], data: str | None
) -> None:
    body = {"status": "OK", "ErrorCode": "0", "ErrorDesc": "", "data": data}
    h = replying(httpx.Response(200, json=body))
    adapter = await h.adapter()
    with pytest.raises(UpstreamBadResponse):
        await adapter.get(DocumentQuery(doc_id="d-1"), h.ctx())


async def test_inbox_keeps_undocumented_status_codes_and_refuses_broken_entries(
    replying: Callable[[httpx.Response], Harness],
) -> None:
    """An entry at status 07 (meaning unknown) is listed with status null; an entry without a
    DocId makes the reply unusable."""
    entry = {"DocId": "d-1", "From": {"OrganId": UBND, "OrganName": "UBND"}, "Status": "07"}
    ok = {"status": "OK", "ErrorCode": "0", "ErrorDesc": ""}
    h = replying(httpx.Response(200, json={**ok, "data": [entry]}))
    inbox = await (await h.adapter()).inbox(InboxQuery(), h.ctx())
    [listed] = inbox.entries
    assert (listed.status_code, listed.status, listed.sender_name) == ("07", None, "UBND")
    broken = replying(httpx.Response(200, json={**ok, "data": [{"Status": "01"}]}))
    with pytest.raises(UpstreamBadResponse):
        await (await broken.adapter()).inbox(InboxQuery(), broken.ctx())
    no_list = replying(httpx.Response(200, json={**ok, "data": {}}))
    with pytest.raises(UpstreamBadResponse):
        await (await no_list.adapter()).inbox(InboxQuery(), no_list.ctx())


# -- through the bus ---------------------------------------------------------------------------

BUS_YAML = """\
version: 1
services:
  edoc:
    adapter: edoc
    upstream:
      base_url: http://edoc.test
      credentials: {secret: EDOC_SECRET}
      health_path: null
    timeout: 10
    retry: none
    options: {system_id: lgsp-demo, organ_id: "000.00.00.G12"}
"""


async def test_through_the_bus_send_is_queued_delivered_and_read(
    settings_for: Callable[..., Settings], sensitive: Callable[[str], str]
) -> None:
    """Configured in bus.yaml, document.send answers 202 and is delivered by the worker; the
    recipient's inbox and document.get then show it, through the gateway."""
    sensitive(SECRET)
    sensitive(SUBJECT)
    registry = AdapterRegistry()
    registry.register("edoc", EdocAdapter)
    settings = settings_for(BUS_YAML, delivery_poll_seconds=0.02, max_body_bytes=4_000_000)
    app = create_bus(
        settings,
        registry=registry,
        environ={"EDOC_SECRET": SECRET},
        transport=httpx.ASGITransport(create_app()),
    )
    doc = full_document()
    async with running(app) as client:
        queued = await client.post(
            "/v1/services/edoc/document.send", json=doc.model_dump(mode="json")
        )
        assert queued.status_code == 202
        delivery_id = queued.json()["data"]["delivery_id"]
        for _ in range(500):  # the worker polls every 0.02 s; wait at most ~5 s
            view = (await client.get(f"/v1/deliveries/{delivery_id}")).json()["data"]
            if view["state"] not in ("queued", "in_flight"):
                break
            await asyncio.sleep(0.01)
        assert view["state"] == "delivered", view
        doc_id = view["result"]["doc_id"]
        inbox = (await client.post("/v1/services/edoc/document.inbox", json={})).json()
        got = (await client.post("/v1/services/edoc/document.get", json={"doc_id": doc_id})).json()
    assert [e["doc_id"] for e in inbox["data"]["entries"]] == [doc_id]
    assert got["status"] == "ok", got
    assert outgoing_part(Document.model_validate(got["data"])) == doc.model_dump()
