"""The canonical document models: documented status codes only, organ ids and text normalised,
attachments checked as base64 within their limits, and documents that cannot be sent refused
before any upstream call."""

from __future__ import annotations

import base64
import datetime as dt
import unicodedata
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from schemas.document import (
    MAX_ATTACHMENT_BYTES,
    MAX_ATTACHMENTS_BYTES,
    Attachment,
    Document,
    DocumentQuery,
    DocumentReceipt,
    DocumentStatus,
    Inbox,
    InboxEntry,
    InboxQuery,
    Organ,
    OutgoingDocument,
    StatusResult,
    StatusUpdate,
)


def outgoing(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "sender": {"id": "000.00.00.H12", "name": "Ủy ban nhân dân tỉnh"},
        "recipients": [{"id": "000.00.00.G12", "name": "Sở Tài nguyên và Môi trường"}],
        "code_number": "123",
        "code_notation": "UBND-VP",
        "promulgation_place": "Hà Nội",
        "promulgation_date": "2026-01-05",
        "document_type": "1",
        "document_type_name": "Công văn",
        "subject": "Về việc cấp giấy chứng nhận",
        "signer": {"full_name": "Nguyễn Văn An", "position": "Chủ tịch"},
    }
    fields.update(overrides)
    return fields


def errors_of(exc: pytest.ExceptionInfo[ValidationError]) -> list[str]:
    return [".".join(str(p) for p in e["loc"]) for e in exc.value.errors()]


def test_status_codes_are_the_documented_ones() -> None:
    """Only the nine codes PLATFORMS.md names exist; 07-12 and 14 are not invented."""
    assert {s.value for s in DocumentStatus} == {
        "01",
        "02",
        "03",
        "04",
        "05",
        "06",
        "13",
        "15",
        "16",
    }
    assert DocumentStatus("03") is DocumentStatus.RECEIVED
    assert DocumentStatus.RECALL_REFUSED.value == "16"
    with pytest.raises(ValueError, match="07"):
        DocumentStatus("07")


def test_a_minimal_document_is_valid_with_defaults() -> None:
    """Sender, recipients, code, promulgation, type, subject and signer suffice."""
    doc = OutgoingDocument.model_validate(outgoing())
    assert doc.priority == 0
    assert doc.attachments == []
    assert doc.content is None
    assert doc.promulgation_date == dt.date(2026, 1, 5)


def test_text_is_nfc_and_collapsed_but_content_keeps_its_lines() -> None:
    """Short texts are NFC with whitespace collapsed; content keeps its line breaks, as \\n."""
    nfd = unicodedata.normalize("NFD", "Về  việc   cấp ")
    doc = OutgoingDocument.model_validate(
        outgoing(subject=nfd, content="  Dòng một\r\nDòng hai\rDòng ba  ")
    )
    assert doc.subject == "Về việc cấp"
    assert doc.content == "Dòng một\nDòng hai\nDòng ba"
    assert OutgoingDocument.model_validate(outgoing(content="   ")).content is None


@pytest.mark.parametrize("bad", ["a\x00b", "a\x1bb", "\ud800", "x\uffff"])
def test_characters_xml_cannot_carry_are_refused(bad: str) -> None:
    """Controls, lone surrogates and non-characters are refused in every text."""
    with pytest.raises(ValidationError) as subject:
        OutgoingDocument.model_validate(outgoing(subject=bad))
    with pytest.raises(ValidationError) as content:
        OutgoingDocument.model_validate(outgoing(content=bad))
    assert errors_of(subject) == ["subject"]
    assert errors_of(content) == ["content"]


@pytest.mark.parametrize("organ_id", ["", "x y", ".000", "000/00", "a" * 51])
def test_bad_organ_ids_are_refused(organ_id: str) -> None:
    with pytest.raises(ValidationError):
        Organ(id=organ_id, name="Cơ quan")


def test_recipients_at_least_one_each_once_and_never_the_sender() -> None:
    """No recipient, a recipient twice, or the sender among them: refused."""
    g12 = {"id": "000.00.00.G12", "name": "Sở"}
    with pytest.raises(ValidationError) as none:
        OutgoingDocument.model_validate(outgoing(recipients=[]))
    assert errors_of(none) == ["recipients"]
    with pytest.raises(ValidationError, match="listed twice"):
        OutgoingDocument.model_validate(outgoing(recipients=[g12, g12]))
    with pytest.raises(ValidationError, match="sender cannot be one of its recipients"):
        OutgoingDocument.model_validate(
            outgoing(recipients=[g12, {"id": "000.00.00.H12", "name": "UBND"}])
        )


@pytest.mark.parametrize("priority", [-1, 5])
def test_priority_is_zero_to_four(priority: int) -> None:
    with pytest.raises(ValidationError) as exc:
        OutgoingDocument.model_validate(outgoing(priority=priority))
    assert errors_of(exc) == ["priority"]


def test_unknown_fields_are_refused_and_models_are_frozen() -> None:
    """A misspelt field is an error, and a document cannot be changed once made."""
    with pytest.raises(ValidationError) as exc:
        OutgoingDocument.model_validate(outgoing(subjet="typo"))
    assert errors_of(exc) == ["subjet"]
    doc = OutgoingDocument.model_validate(outgoing())
    with pytest.raises(ValidationError):
        doc.subject = "changed"  # type: ignore[misc]  # the point: frozen models refuse it


def test_attachment_round_trips_bytes_and_accepts_wrapped_base64() -> None:
    """from_bytes and data are inverses; MIME-style line breaks in base64 are removed."""
    data = bytes(range(256)) * 10
    attachment = Attachment.from_bytes("quyet-dinh.pdf", data, "application/pdf")
    assert attachment.data == data
    encoded = base64.encodebytes(data).decode()  # wrapped at 76 characters
    assert "\n" in encoded
    wrapped = Attachment(name="a.bin", content=encoded)
    assert wrapped.data == data
    assert "\n" not in wrapped.content
    assert wrapped.content_type == "application/octet-stream"


@pytest.mark.parametrize("content", ["not base64!", "YWJj=", "YWJjZA"])
def test_attachment_content_must_be_base64(content: str) -> None:
    with pytest.raises(ValidationError, match="base64"):
        Attachment(name="a.txt", content=content)


@pytest.mark.parametrize("name", ["../etc/passwd", "dir/a.pdf", "C:\\a.pdf", "..", ""])
def test_attachment_name_is_a_plain_file_name(name: str) -> None:
    with pytest.raises(ValidationError):
        Attachment(name=name, content="YQ==")


def test_attachment_content_type_looks_like_a_media_type() -> None:
    with pytest.raises(ValidationError):
        Attachment(name="a", content="YQ==", content_type="pdf")
    assert Attachment(name="a", content="YQ==", content_type="text/plain; charset=utf-8")


def test_one_attachment_may_hold_at_most_its_limit() -> None:
    """MAX_ATTACHMENT_BYTES decoded is accepted; one byte more is refused."""
    assert Attachment.from_bytes("big.bin", bytes(MAX_ATTACHMENT_BYTES)).data
    with pytest.raises(ValidationError, match=f"at most {MAX_ATTACHMENT_BYTES} bytes"):
        Attachment.from_bytes("big.bin", bytes(MAX_ATTACHMENT_BYTES + 1))


def test_attachments_together_may_hold_at_most_their_limit() -> None:
    """Three attachments at the single limit exceed the document's total."""
    one = Attachment.from_bytes("a.bin", bytes(MAX_ATTACHMENT_BYTES))
    assert 3 * MAX_ATTACHMENT_BYTES > MAX_ATTACHMENTS_BYTES >= 2 * MAX_ATTACHMENT_BYTES
    assert OutgoingDocument.model_validate(outgoing(attachments=[one, one]))
    with pytest.raises(ValidationError, match="together"):
        OutgoingDocument.model_validate(outgoing(attachments=[one, one, one]))


def test_inbox_entry_keeps_an_undocumented_status_code() -> None:
    """A code the axis uses but PLATFORMS.md does not explain (07) is kept raw, status null."""
    entry = InboxEntry(doc_id="d-1", sender_id="000.00.00.H12", status_code="07")
    assert entry.status is None
    assert entry.status_code == "07"


def test_status_update_takes_only_documented_codes() -> None:
    update = StatusUpdate.model_validate({"doc_id": "d-1", "status": "05"})
    assert update.status is DocumentStatus.IN_PROGRESS
    with pytest.raises(ValidationError):
        StatusUpdate.model_validate({"doc_id": "d-1", "status": "07"})


def test_document_is_the_outgoing_form_plus_axis_ids() -> None:
    """A received document carries everything a sender writes, its DocumentId and DocId."""
    doc = Document.model_validate(outgoing(document_id="abc", doc_id="d-1"))
    assert set(Document.model_fields) - set(OutgoingDocument.model_fields) == {
        "document_id",
        "doc_id",
        "trace",
    }
    assert doc.doc_id == "d-1"


@pytest.mark.parametrize(
    "model",
    [
        OutgoingDocument,
        DocumentReceipt,
        InboxQuery,
        Inbox,
        DocumentQuery,
        Document,
        StatusUpdate,
        StatusResult,
    ],
)
def test_models_have_a_json_schema(model: type[BaseModel]) -> None:
    """Every operation model renders in the OpenAPI document, refusing unknown properties."""
    schema = model.model_json_schema()
    assert schema["additionalProperties"] is False
