"""edXML (QCVN 102:2016) to and from the canonical document models.

:func:`build_edxml` writes an :class:`~schemas.document.OutgoingDocument` as an edXML file,
every element in the namespace ``http://www.mic.gov.vn/TBT/QCVN_102_2016`` (prefix ``edXML``),
in the order of the axis's schema (shipped with the mock as ``mocks/edoc/edxml.xsd``; the tests
validate what this module builds against it). Attachment *n* (from 1) gets the content id
``attachment<n>``: the manifest's ``Reference/ContentId`` is ``cid:attachment<n>`` and
``AttachmentEncoded/Attachment@ContentId`` is ``attachment<n>``, as RFC 2392 pairs a ``cid:``
URL with a Content-ID. No XML-DSig ``Signature`` is written: the axis headers are signed instead.

:func:`parse_edxml` reads an edXML file into a :class:`~schemas.document.Document`. It trusts
nothing: a DOCTYPE or entity declaration is refused unread, and the lxml parser expands no
entity, loads no DTD, reaches no network and refuses huge trees (one text node holds at most
10,000,000 characters, hence ``MAX_ATTACHMENT_BYTES``). A file that is not well-formed, not
edXML, or that does not fit the canonical models is :class:`~bus.errors.UpstreamBadResponse`,
whose message quotes nothing of the file. A ``cid:`` prefix is accepted on either side when
attachments are matched with their references; an attachment without a reference takes its
name and type from its own attributes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any, Final

from lxml import etree
from pydantic import ValidationError

from adapters.base import UpstreamBadResponse
from adapters.wire import safe_xml_parser
from schemas.document import Document, Organ, OutgoingDocument

__all__ = ["CONTENT_ID_PREFIX", "NS", "build_edxml", "parse_edxml"]

NS: Final = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
CONTENT_ID_PREFIX: Final = "attachment"
_NSMAP: Final = {"edXML": NS}
_E: Final = {"e": NS}

# "<!DOCTYPE" and "<!ENTITY" in every encoding an XML parser detects without being told.
_DECLARATIONS: Final = frozenset(
    marker.encode(encoding)
    for marker in ("<!DOCTYPE", "<!ENTITY")
    for encoding in ("ascii", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
)


# -- building ---------------------------------------------------------------------------------


def _q(name: str) -> str:
    return f"{{{NS}}}{name}"


def _add(parent: etree._Element, name: str, text: str | int | date | None = None) -> Any:
    element = etree.SubElement(parent, _q(name))
    if text is not None:
        element.text = text.isoformat() if isinstance(text, date) else str(text)
    return element


def _add_optional(parent: etree._Element, name: str, text: str | int | date | None) -> None:
    if text is not None:
        _add(parent, name, text)


def _add_organ(parent: etree._Element, name: str, organ: Organ) -> None:
    element = _add(parent, name)
    _add(element, "OrganId", organ.id)
    _add(element, "OrganName", organ.name)
    for wire, value in (
        ("OrganInCharge", organ.in_charge),
        ("OrganAdd", organ.address),
        ("Email", organ.email),
        ("Telephone", organ.phone),
        ("Fax", organ.fax),
        ("Website", organ.website),
    ):
        _add_optional(element, wire, value)


def build_edxml(
    doc: OutgoingDocument, document_id: str, *, sent_at: datetime | None = None
) -> bytes:
    """The edXML file of ``doc`` with the given DocumentId; with ``sent_at`` (timezone-aware),
    a TraceHeader of the sender at that time."""
    root = etree.Element(_q("edXML"), nsmap=_NSMAP)
    envelope = _add(root, "edXMLEnvelope")
    header = _add(envelope, "edXMLHeader")
    message = _add(header, "MessageHeader")
    _add_organ(message, "From", doc.sender)
    for recipient in doc.recipients:
        _add_organ(message, "To", recipient)
    _add(message, "DocumentId", document_id)
    code = _add(message, "Code")
    _add(code, "CodeNumber", doc.code_number)
    _add(code, "CodeNotation", doc.code_notation)
    promulgation = _add(message, "PromulgationInfo")
    _add(promulgation, "Place", doc.promulgation_place)
    _add(promulgation, "PromulgationDate", doc.promulgation_date)
    kind = _add(message, "DocumentType")
    _add(kind, "Type", doc.document_type)
    _add(kind, "TypeName", doc.document_type_name)
    _add(message, "Subject", doc.subject)
    _add_optional(message, "Content", doc.content)
    signer = _add(message, "SignerInfo")
    _add_optional(signer, "Competence", doc.signer.competence)
    _add_optional(signer, "Position", doc.signer.position)
    _add(signer, "FullName", doc.signer.full_name)
    _add_optional(message, "DueDate", doc.due_date)
    if doc.to_places:
        places = _add(message, "ToPlaces")
        for place in doc.to_places:
            _add(places, "Place", place)
    other = _add(message, "OtherInfo")
    _add(other, "Priority", doc.priority)
    _add_optional(other, "SphereOfPromulgation", doc.sphere_of_promulgation)
    _add_optional(other, "TyperNotation", doc.typer_notation)
    _add_optional(other, "PromulgationAmount", doc.promulgation_amount)
    _add_optional(other, "PageAmount", doc.page_amount)
    for answered in doc.response_for:
        response = _add(message, "ResponseFor")
        _add(response, "OrganId", answered.organ_id)
        _add(response, "Code", answered.code)
        _add(response, "PromulgationDate", answered.promulgation_date)
        _add(response, "DocumentId", answered.document_id)
    if sent_at is not None:
        trace = _add(_add(header, "TraceHeaderList"), "TraceHeader")
        _add(trace, "OrganId", doc.sender.id)
        _add(trace, "Timestamp", sent_at.isoformat(timespec="seconds"))
    manifest = _add(_add(envelope, "edXMLBody"), "edXMLManifest")
    encoded = _add(root, "AttachmentEncoded") if doc.attachments else None
    for number, attachment in enumerate(doc.attachments, start=1):
        content_id = f"{CONTENT_ID_PREFIX}{number}"
        reference = _add(manifest, "Reference")
        _add(reference, "ContentId", f"cid:{content_id}")
        _add(reference, "ContentType", attachment.content_type)
        _add(reference, "AttachmentName", attachment.name)
        _add_optional(reference, "Description", attachment.description)
        assert encoded is not None
        element = _add(encoded, "Attachment", attachment.content)
        element.set("ContentId", content_id)
        element.set("ContentType", attachment.content_type)
        element.set("AttachmentName", attachment.name)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


# -- parsing ----------------------------------------------------------------------------------


def _text(parent: etree._Element | None, path: str) -> str | None:
    if parent is None:
        return None
    element = parent.find(path, _E)
    if element is None:
        return None
    return element.text or ""


def _opt(parent: etree._Element | None, path: str) -> str | None:
    """An optional element's text; None when the element is absent or blank (``<Email/>``)."""
    text = _text(parent, path)
    return text if text and text.strip() else None


def _day(text: str | None) -> str | None:
    """An xs:date without its optional time zone (``2026-01-02+07:00`` -> ``2026-01-02``)."""
    if text is None:
        return None
    text = text.strip()
    return text[:10] if len(text) > 10 and text[10] in "Z+-" else text


def _organ(element: etree._Element) -> dict[str, Any]:
    return {
        "id": _text(element, "e:OrganId"),
        "name": _text(element, "e:OrganName"),
        "in_charge": _opt(element, "e:OrganInCharge"),
        "address": _opt(element, "e:OrganAdd"),
        "email": _opt(element, "e:Email"),
        "phone": _opt(element, "e:Telephone"),
        "fax": _opt(element, "e:Fax"),
        "website": _opt(element, "e:Website"),
    }


def _bare_cid(value: str | None) -> str:
    value = (value or "").strip()
    return value[4:] if value.lower().startswith("cid:") else value


def _attachments(root: etree._Element) -> list[dict[str, Any]]:
    references = {
        _bare_cid(_text(ref, "e:ContentId")): ref
        for ref in root.iterfind("e:edXMLEnvelope/e:edXMLBody/e:edXMLManifest/e:Reference", _E)
    }
    found = []
    for element in root.iterfind("e:AttachmentEncoded/e:Attachment", _E):
        content_id = _bare_cid(element.get("ContentId"))
        reference = references.get(content_id)
        found.append(
            {
                "name": _text(reference, "e:AttachmentName")
                or element.get("AttachmentName")
                or content_id,
                "content_type": _text(reference, "e:ContentType")
                or element.get("ContentType")
                or "application/octet-stream",
                "description": _opt(reference, "e:Description"),
                "content": element.text or "",
            }
        )
    return found


def _all(parent: etree._Element, path: str) -> Iterable[etree._Element]:
    return parent.iterfind(path, _E)


def parse_edxml(data: bytes) -> Document:
    """The canonical document in an edXML file (``doc_id`` is left empty)."""
    if any(marker in data for marker in _DECLARATIONS):
        raise UpstreamBadResponse("the edXML file carries a DOCTYPE or entity declaration")
    try:
        root = etree.fromstring(data, safe_xml_parser())
    except etree.XMLSyntaxError:
        raise UpstreamBadResponse("the edXML file is not well-formed XML") from None
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.doctype:
        raise UpstreamBadResponse("the edXML file carries a DOCTYPE or entity declaration")
    if root.tag != _q("edXML"):
        raise UpstreamBadResponse("the file is not edXML (QCVN 102:2016)")
    message = root.find("e:edXMLEnvelope/e:edXMLHeader/e:MessageHeader", _E)
    if message is None:
        raise UpstreamBadResponse("the edXML file has no MessageHeader")
    sender = message.find("e:From", _E)
    signer = message.find("e:SignerInfo", _E)
    other = message.find("e:OtherInfo", _E)
    places = message.find("e:ToPlaces", _E)
    fields: dict[str, Any] = {
        "document_id": _text(message, "e:DocumentId"),
        "sender": _organ(sender) if sender is not None else None,
        "recipients": [_organ(to) for to in _all(message, "e:To")],
        "code_number": _text(message, "e:Code/e:CodeNumber"),
        "code_notation": _text(message, "e:Code/e:CodeNotation"),
        "promulgation_place": _text(message, "e:PromulgationInfo/e:Place"),
        "promulgation_date": _day(_text(message, "e:PromulgationInfo/e:PromulgationDate")),
        "document_type": _text(message, "e:DocumentType/e:Type"),
        "document_type_name": _text(message, "e:DocumentType/e:TypeName"),
        "subject": _text(message, "e:Subject"),
        "content": _opt(message, "e:Content"),
        "signer": None
        if signer is None
        else {
            "competence": _opt(signer, "e:Competence"),
            "position": _opt(signer, "e:Position"),
            "full_name": _text(signer, "e:FullName"),
        },
        "due_date": _day(_opt(message, "e:DueDate")),
        "to_places": [p.text or "" for p in _all(places, "e:Place")] if places is not None else [],
        "response_for": [
            {
                "organ_id": _text(r, "e:OrganId"),
                "code": _text(r, "e:Code"),
                "promulgation_date": _day(_text(r, "e:PromulgationDate")),
                "document_id": _text(r, "e:DocumentId"),
            }
            for r in _all(message, "e:ResponseFor")
        ],
        "trace": [
            {"organ_id": _text(t, "e:OrganId"), "timestamp": _text(t, "e:Timestamp")}
            for t in _all(root, "e:edXMLEnvelope/e:edXMLHeader/e:TraceHeaderList/e:TraceHeader")
        ],
        "attachments": _attachments(root),
    }
    if other is not None:
        fields.update(
            {
                "priority": _text(other, "e:Priority"),
                "sphere_of_promulgation": _opt(other, "e:SphereOfPromulgation"),
                "typer_notation": _opt(other, "e:TyperNotation"),
                "promulgation_amount": _opt(other, "e:PromulgationAmount"),
                "page_amount": _opt(other, "e:PageAmount"),
            }
        )
    fields = {name: value for name, value in fields.items() if value is not None}
    try:
        return Document.model_validate(fields)
    except ValidationError as exc:
        # Name the fields, never their values: the file's text is the document's content.
        where = sorted({".".join(str(p) for p in e["loc"][:1]) or "document" for e in exc.errors()})
        raise UpstreamBadResponse(
            "the edXML document does not fit the canonical document model",
            detail={"fields": where},
        ) from None
