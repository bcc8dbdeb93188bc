"""Canonical document models: what callers of ``document.send``, ``document.inbox``,
``document.get`` and ``document.status`` send and receive, in English, whatever the national
document exchange axis speaks (edXML after QCVN 102:2016, signed HTTP headers).

The mapping to the wire (``adapters/edoc``):

====================================  ======================================================
``sender`` / ``recipients``           MessageHeader/From, To+ (``Organ``: OrganId, OrganName,
                                      OrganInCharge, OrganAdd, Email, Telephone, Fax, Website)
``document_id``                       MessageHeader/DocumentId (the sender's id; the axis
                                      de-duplicates by sender and this id)
``code_number`` / ``code_notation``   Code/CodeNumber, Code/CodeNotation (123 / UBND-VP)
``promulgation_place`` / ``_date``    PromulgationInfo/Place, PromulgationDate
``document_type`` / ``_type_name``    DocumentType/Type, TypeName
``subject`` / ``content``             Subject (trích yếu), Content
``signer``                            SignerInfo{Competence, Position, FullName}
``due_date`` / ``to_places``          DueDate, ToPlaces/Place*
``priority`` ...                      OtherInfo{Priority, SphereOfPromulgation, TyperNotation,
                                      PromulgationAmount, PageAmount}
``response_for``                      ResponseFor*{OrganId, Code, PromulgationDate, DocumentId}
``attachments``                       edXMLManifest/Reference + AttachmentEncoded/Attachment
``doc_id``                            the axis's own id (DocId), given when a document is sent
====================================  ======================================================

Text is normalised as in ``schemas.citizen`` (NFC, trimmed, inner whitespace collapsed), except
``content``, whose line breaks are kept. Attachments travel as base64 text; each may hold at most
``MAX_ATTACHMENT_BYTES`` (a text node of an XML parser that refuses huge trees holds at most
10,000,000 characters, and base64 grows data by a third) and a document's attachments together
``MAX_ATTACHMENTS_BYTES``. The bus's ``max_body_bytes`` must be raised for such documents.

Status codes: PLATFORMS.md names 01, 02, 03, 04, 05, 06, 13, 15 and 16 only; codes 07 to 12 and
14 exist on the axis but their meaning is not known, so they are not invented here: an inbox
entry carries the raw ``status_code`` and ``status`` is null for a code not listed.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import unicodedata
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field, field_validator, model_validator

from schemas.base import CanonicalModel
from schemas.citizen import normalise_text

__all__ = [
    "MAX_ATTACHMENTS",
    "MAX_ATTACHMENTS_BYTES",
    "MAX_ATTACHMENT_BYTES",
    "Attachment",
    "Document",
    "DocumentQuery",
    "DocumentReceipt",
    "DocumentStatus",
    "Inbox",
    "InboxEntry",
    "InboxQuery",
    "Officer",
    "Organ",
    "OutgoingDocument",
    "ResponseFor",
    "Signer",
    "StatusResult",
    "StatusUpdate",
    "TraceEntry",
]

#: The most one attachment may hold, decoded (7 MiB: its base64 stays under the 10,000,000
#: characters an XML parser without ``huge_tree`` accepts in one text node).
MAX_ATTACHMENT_BYTES = 7 * 1024 * 1024
#: The most the attachments of one document may hold together, decoded.
MAX_ATTACHMENTS_BYTES = 20 * 1024 * 1024
#: The most attachments one document may carry.
MAX_ATTACHMENTS = 50
_MAX_BASE64 = -(-MAX_ATTACHMENT_BYTES // 3) * 4


class DocumentStatus(StrEnum):
    """Processing status of a document at a recipient, as the axis codes it."""

    ARRIVED = "01"  # delivered by the axis (đã đến)
    REJECTED = "02"  # refused by the recipient (từ chối)
    RECEIVED = "03"  # taken in by the recipient's clerk (đã tiếp nhận)
    ASSIGNED = "04"  # assigned to a unit or officer (phân công)
    IN_PROGRESS = "05"  # being handled (đang xử lý)
    FINISHED = "06"  # handled (hoàn thành)
    RECALL = "13"  # the sender asks for it back (thu hồi)
    RECALL_ACCEPTED = "15"  # the recipient agreed to the recall
    RECALL_REFUSED = "16"  # the recipient refused the recall


def _xml_unsafe(char: str) -> bool:
    """A character that XML 1.0 cannot carry, or that only confuses: controls (line breaks and
    tabs aside), lone surrogates and the non-characters U+FFFE and U+FFFF."""
    if char in "\t\n":
        return False
    return unicodedata.category(char) in ("Cc", "Cs") or char in "\ufffe\uffff"


def _long_text(value: object) -> object:
    """NFC, trimmed, line breaks kept (as \\n: XML readers turn \\r\\n into \\n anyway);
    non-strings pass through."""
    if not isinstance(value, str):
        return value
    value = unicodedata.normalize("NFC", value).replace("\r\n", "\n").replace("\r", "\n")
    if any(_xml_unsafe(c) for c in value):
        raise ValueError("control characters are not allowed")
    return value.strip()


def _clean_text(value: object) -> object:
    """``normalise_text``, then no control character may remain (line breaks are whitespace,
    already collapsed)."""
    value = normalise_text(value)
    if isinstance(value, str) and any(_xml_unsafe(c) for c in value):
        raise ValueError("control characters are not allowed")
    return value


def _file_name(value: object) -> object:
    value = _clean_text(value)
    if isinstance(value, str) and ("/" in value or "\\" in value or value in (".", "..")):
        raise ValueError("an attachment name is a file name, without any directory")
    return value


def _base64(value: object) -> object:
    """Base64 text without the line breaks MIME encoders insert, checked to decode to at most
    ``MAX_ATTACHMENT_BYTES``."""
    if not isinstance(value, str):
        return value
    if len(value) > 2 * _MAX_BASE64:  # not worth stripping: too long even with line breaks
        raise ValueError(f"an attachment may hold at most {MAX_ATTACHMENT_BYTES} bytes")
    value = "".join(value.split())
    if len(value) % 4:
        raise ValueError("content must be base64 (RFC 4648, with padding)")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("content must be base64 (RFC 4648, with padding)") from None
    if len(data) > MAX_ATTACHMENT_BYTES:
        raise ValueError(f"an attachment may hold at most {MAX_ATTACHMENT_BYTES} bytes")
    return value


Text = Annotated[str, BeforeValidator(_clean_text)]
Short = Annotated[Text, Field(min_length=1, max_length=500)]
OrganId = Annotated[
    str,
    BeforeValidator(normalise_text),
    Field(
        min_length=1,
        max_length=50,
        pattern=r"^[0-9A-Za-z][0-9A-Za-z._-]*$",
        description="Organ code (mã định danh cơ quan), e.g. 000.00.00.H12.",
    ),
]
DocId = Annotated[
    str,
    BeforeValidator(normalise_text),
    Field(min_length=1, max_length=200, pattern=r"^[!-~]+$", description="Printable ASCII."),
]
DocumentId = Annotated[Text, Field(min_length=1, max_length=100)]


class _Frozen(CanonicalModel):
    model_config = ConfigDict(frozen=True)


class Organ(_Frozen):
    """An agency on the axis (a sender or a recipient)."""

    id: OrganId
    name: Short = Field(description="OrganName")
    in_charge: Short | None = Field(default=None, description="OrganInCharge")
    address: Short | None = Field(default=None, description="OrganAdd")
    email: Short | None = None
    phone: Short | None = Field(default=None, description="Telephone")
    fax: Short | None = None
    website: Short | None = None


class Signer(_Frozen):
    """Who signed the document (SignerInfo)."""

    competence: Short | None = Field(default=None, description="e.g. TM. UBND, KT. CHỦ TỊCH")
    position: Short | None = Field(default=None, description="e.g. Phó Chủ tịch")
    full_name: Short


class ResponseFor(_Frozen):
    """The document this one answers."""

    organ_id: OrganId
    code: Short = Field(description="The whole code as written, e.g. 123/UBND-VP.")
    promulgation_date: dt.date
    document_id: DocumentId


class Attachment(_Frozen):
    """One file of a document."""

    name: Annotated[str, BeforeValidator(_file_name), Field(min_length=1, max_length=500)] = Field(
        description="AttachmentName"
    )
    content_type: Annotated[
        str, Field(min_length=3, max_length=255, pattern=r"^[!-~]+/[!-~]+( *;.*)?$")
    ] = "application/octet-stream"
    content: str = Field(max_length=_MAX_BASE64, description="The file's bytes, base64.")
    description: Short | None = None

    # A validator of the model, not of the type: the field's own max_length then replaces the
    # canonical 10,000-character default (a type's validator would keep both).
    @field_validator("content", mode="before")
    @classmethod
    def _content_base64(cls, value: object) -> object:
        return _base64(value)

    @property
    def data(self) -> bytes:
        """The file's bytes."""
        return base64.b64decode(self.content)

    @classmethod
    def from_bytes(
        cls,
        name: str,
        data: bytes,
        content_type: str = "application/octet-stream",
        description: str | None = None,
    ) -> Attachment:
        return cls(
            name=name,
            content_type=content_type,
            content=base64.b64encode(data).decode("ascii"),
            description=description,
        )


class TraceEntry(_Frozen):
    """One hop the document passed (TraceHeader)."""

    organ_id: OrganId
    timestamp: dt.datetime


class _DocumentFields(_Frozen):
    """What a sender writes on a document; shared by the outgoing and the received forms."""

    sender: Organ
    recipients: list[Organ] = Field(min_length=1, max_length=200)
    code_number: Short = Field(description="Số, e.g. 123")
    code_notation: Short = Field(description="Ký hiệu, e.g. UBND-VP")
    promulgation_place: Short = Field(description="Where it was issued, e.g. Hà Nội")
    promulgation_date: dt.date
    document_type: Short = Field(description="DocumentType/Type code, e.g. 1")
    document_type_name: Short = Field(description="e.g. Công văn, Quyết định")
    subject: Annotated[Text, Field(min_length=1, max_length=2000)] = Field(description="Trích yếu")
    content: str | None = Field(default=None, max_length=50_000, description="Summary text.")
    signer: Signer
    due_date: dt.date | None = None
    to_places: list[Short] = Field(default_factory=list, max_length=200)
    priority: int = Field(
        default=0,
        ge=0,
        le=4,
        description="0 normal, 1 urgent, 2 very urgent, 3 express, 4 timed express (guess).",
    )
    sphere_of_promulgation: Short | None = None
    typer_notation: Short | None = None
    promulgation_amount: int | None = Field(default=None, ge=0)
    page_amount: int | None = Field(default=None, ge=0)
    response_for: list[ResponseFor] = Field(default_factory=list, max_length=50)
    attachments: list[Attachment] = Field(default_factory=list, max_length=MAX_ATTACHMENTS)

    @field_validator("content", mode="before")
    @classmethod
    def _content_text(cls, value: object) -> object:
        """Line breaks kept (see ``_long_text``); blank is none (XML cannot tell them apart)."""
        value = _long_text(value)
        return None if value == "" else value

    @model_validator(mode="after")
    def _consistent(self) -> Any:
        ids = [organ.id for organ in self.recipients]
        if len(set(ids)) != len(ids):
            raise ValueError("a recipient is listed twice")
        if self.sender.id in ids:
            raise ValueError("the sender cannot be one of its recipients")
        total = sum(len(a.content) // 4 * 3 for a in self.attachments)  # an upper bound
        if total > MAX_ATTACHMENTS_BYTES:
            total = sum(len(a.data) for a in self.attachments)
            if total > MAX_ATTACHMENTS_BYTES:
                raise ValueError(
                    f"the attachments may hold at most {MAX_ATTACHMENTS_BYTES} bytes together"
                )
        return self


class OutgoingDocument(_DocumentFields):
    """A document to send to other agencies through the axis (``document.send``)."""


class DocumentReceipt(_Frozen):
    """What the axis gave back for a sent document."""

    doc_id: DocId = Field(description="The axis's id of the document (DocId).")
    document_id: DocumentId = Field(description="The edXML DocumentId the bus gave it.")


class InboxQuery(_Frozen):
    organ_id: OrganId | None = Field(
        default=None, description="Whose inbox; default: the service's configured organ."
    )


class InboxEntry(_Frozen):
    """A received document as the inbox lists it: who sent what, and where it stands."""

    doc_id: DocId
    document_id: DocumentId | None = None
    sender_id: OrganId
    sender_name: Short | None = None
    code_number: Short | None = None
    code_notation: Short | None = None
    subject: Annotated[Text, Field(max_length=2000)] | None = None
    promulgation_date: dt.date | None = None
    status_code: Annotated[str, Field(min_length=1, max_length=10)] = Field(
        description="The axis's status code as sent, e.g. 01."
    )
    status: DocumentStatus | None = Field(
        default=None, description="The status, or null when the code is not a documented one."
    )
    received_at: dt.datetime | None = None


class Inbox(_Frozen):
    organ_id: OrganId
    entries: list[InboxEntry] = Field(default_factory=list)


class DocumentQuery(_Frozen):
    doc_id: DocId = Field(description="The axis's id of the document (DocId).")
    organ_id: OrganId | None = Field(
        default=None, description="Who reads it; default: the service's configured organ."
    )


class Document(_DocumentFields):
    """A document as read from the axis, attachments included."""

    document_id: DocumentId = Field(description="The sender's id of the document.")
    doc_id: DocId | None = Field(default=None, description="The axis's id (DocId).")
    trace: list[TraceEntry] = Field(default_factory=list)


class Officer(_Frozen):
    """The officer who changed a document's status (StaffInfo)."""

    name: Short
    department: Short | None = None
    phone: Short | None = None
    email: Short | None = None


class StatusUpdate(_Frozen):
    """A recipient's new status of a received document, or the sender's recall (13)."""

    doc_id: DocId
    status: DocumentStatus
    description: Annotated[Text, Field(max_length=2000)] | None = None
    officer: Officer | None = None
    organ_id: OrganId | None = Field(
        default=None, description="Who updates it; default: the service's configured organ."
    )


class StatusResult(_Frozen):
    doc_id: DocId
    organ_id: OrganId
    status: DocumentStatus
