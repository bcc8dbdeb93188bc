"""The national document exchange axis (Trục liên thông văn bản quốc gia): edXML over signed HTTP.

Operations offered to consumers (canonical models in ``schemas/document.py``):

- ``document.send``   -> ``POST /sendEdoc`` (store-and-forward: the caller gets 202 and a
  delivery id; the bus delivers with long-horizon retries)
- ``document.inbox``  -> ``POST /getReceivedEdocList``
- ``document.get``    -> ``POST /getEdoc``, the edXML parsed back into a canonical document
- ``document.status`` -> ``POST /updateStatus`` (messagetype ``status``)

How it talks: every call carries the axis headers (``systemid`` = ``options.system_id``,
``timestamp`` from the bus's clock, ``servicetype: eDoc``, ``messagetype``, ``from`` = the organ
acting, and where they apply ``to`` = a JSON array of recipient organ ids, ``docId``,
``hash-file``), signed with the service's credential ``secret`` as ``adapters.edoc.signing``
describes. ``sendEdoc``'s body is the edXML file built by ``adapters.edoc.edxml``; the others
send a small JSON body. The organ acting is the query's ``organ_id``, or ``options.organ_id``.

Idempotency: ``document.send`` is a write the axis de-duplicates by sender and edXML
``DocumentId``. The DocumentId (also sent as ``docId``) is derived from ``ctx.idempotency_key``
— the delivery id, the same on every redelivery — with the system and consumer ids, as a UUIDv5;
so a delivery sent twice (after a crash or a timeout) is delivered once and answers the same
DocId. Without a key (a synchronous call without ``Idempotency-Key``) it is a fresh UUIDv4.

Errors: 429 and 5xx go through ``raise_for_upstream_status`` (``upstream.unavailable``, with
``Retry-After``, or ``upstream.fault``). A ``{"status": "FAIL", "ErrorCode": ...}`` reply is
``upstream.rejected`` whatever its HTTP status, with ``detail = {"error_code", "reason",
"endpoint", "http_status"}``; the reasons (the codes are the mock's, see ``mocks.edoc``)::

    1001 missing_header    1002 unknown_system   1003 bad_signature   1004 stale_timestamp
    1005 organ_not_served  2001 bad_file_hash    2002 invalid_edxml   2003 unknown_agency
    2004 header_mismatch   2005 too_large        3001 unknown_document
    3002 bad_status        3003 bad_body         other codes: other

1xxx and 2001 mean an operator must fix the service's configuration (system id, secret, the
bus's clock); 2003 and 3001 that the caller named an organ or a document the axis does not know.
A reply that is not the axis's JSON, or a document that does not fit the canonical models, is
``upstream.bad_response``; the axis's ``ErrorDesc`` is kept in the detail only for header and
signature problems, since for a refused edXML it may quote the document.

The exchange record gets, per HTTP exchange, the endpoint, the keyed digests (HMAC-SHA256
under the bus's digest key) and sizes of the exact request and reply bodies, the HTTP status,
the axis's status and error code, and the ids of the document (never its content).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapters.base import (
    Adapter,
    BadRequest,
    Context,
    Resources,
    UpstreamBadResponse,
    UpstreamRejected,
    operation,
    raise_for_upstream_status,
)
from adapters.edoc.edxml import build_edxml, parse_edxml
from adapters.edoc.signing import (
    DEFAULT_VERSION,
    TimestampFormat,
    file_hash,
    format_timestamp,
    signed_headers,
)
from schemas.document import (
    Document,
    DocumentQuery,
    DocumentReceipt,
    DocumentStatus,
    Inbox,
    InboxEntry,
    InboxQuery,
    OutgoingDocument,
    StatusResult,
    StatusUpdate,
)

__all__ = ["FAILURES", "EdocAdapter", "EdocOptions", "EdocPaths"]

#: The namespace of the UUIDv5 DocumentIds derived from idempotency keys (fixed forever: a
#: change would let a redelivery after an upgrade be delivered twice).
DOCUMENT_ID_NAMESPACE: Final = uuid.UUID("6f1c2a4e-5b0d-5e8f-9a43-2d7c0b1e8f61")

#: The axis's error codes: reason and what the caller is told.
FAILURES: Final[dict[str, tuple[str, str]]] = {
    "1001": ("missing_header", "the document axis found a header missing or malformed"),
    "1002": ("unknown_system", "the document axis does not know the configured system id"),
    "1003": ("bad_signature", "the document axis refused the header signature (check the secret)"),
    "1004": ("stale_timestamp", "the document axis refused the timestamp (check the bus's clock)"),
    "1005": ("organ_not_served", "the configured system may not act for this organ"),
    "2001": ("bad_file_hash", "the document axis found the file hash wrong"),
    "2002": ("invalid_edxml", "the document axis refused the edXML file"),
    "2003": ("unknown_agency", "the document axis does not know one of the organs named"),
    "2004": ("header_mismatch", "the document axis found the headers and the edXML disagree"),
    "2005": ("too_large", "the document is larger than the document axis accepts"),
    "3001": ("unknown_document", "the document axis knows no such document for this organ"),
    "3002": ("bad_status", "the document axis refused the status"),
    "3003": ("bad_body", "the document axis refused the request body"),
}
#: Codes whose ErrorDesc names headers, never the document: kept in the error's detail.
_DESCRIBED: Final = frozenset({"1001", "1002", "1003", "1004", "1005", "2001"})

_M = TypeVar("_M", bound=BaseModel)


class EdocPaths(BaseModel):
    """Where each endpoint is, under the upstream's base URL."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    send: str = "/sendEdoc"
    received: str = "/getReceivedEdocList"
    get: str = "/getEdoc"
    status: str = "/updateStatus"


class EdocOptions(BaseModel):
    """The ``options:`` of a document exchange service in bus.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system_id: str = Field(min_length=1, max_length=100, description="The systemid header.")
    organ_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=50,
        description="The organ acting when a query names none (inbox, get, status).",
    )
    version: str = Field(default=DEFAULT_VERSION, description="The XroadVnpt-version header.")
    timestamp_format: TimestampFormat = Field(
        default="epoch_ms", description="How the timestamp header is written."
    )
    paths: EdocPaths = Field(default_factory=EdocPaths)


def _model(model: type[_M], data: Any, what: str) -> _M:
    """``model`` from upstream data, or ``upstream.bad_response`` quoting none of it."""
    try:
        return model.model_validate(data)
    except ValidationError:
        raise UpstreamBadResponse(f"the document axis's {what} does not fit the model") from None


def _inbox_entry(item: Any) -> InboxEntry:
    if not isinstance(item, Mapping):
        raise UpstreamBadResponse("the document axis's inbox lists something that is not an entry")
    sender = item.get("From")
    sender_id = sender.get("OrganId") if isinstance(sender, Mapping) else sender
    sender_name = (
        sender.get("OrganName") if isinstance(sender, Mapping) else item.get("FromName")
    ) or None
    code = item.get("Status")
    code = str(code) if code is not None else None
    known = code in DocumentStatus._value2member_map_
    return _model(
        InboxEntry,
        {
            "doc_id": item.get("DocId"),
            "document_id": item.get("DocumentId") or None,
            "sender_id": sender_id,
            "sender_name": sender_name,
            "code_number": item.get("CodeNumber") or None,
            "code_notation": item.get("CodeNotation") or None,
            "subject": item.get("Subject") or None,
            "promulgation_date": item.get("PromulgationDate") or None,
            "status_code": code,
            "status": DocumentStatus(code) if known and code is not None else None,
            "received_at": item.get("ReceivedAt") or None,
        },
        "inbox entry",
    )


class EdocAdapter(Adapter):
    description = "National document exchange axis (Trục liên thông văn bản quốc gia), edXML"
    Options = EdocOptions

    options: EdocOptions

    async def start(self, resources: Resources) -> None:
        upstream = resources.upstream
        assert upstream is not None  # requires_upstream is True
        if "secret" not in resources.credentials:
            raise ValueError(
                f"service {resources.service!r}: the document axis adapter needs the credential "
                "'secret' (credentials: {secret: ENV_VAR_NAME} under upstream)"
            )
        self._base = upstream.base_url.rstrip("/")
        self._secret = resources.credentials["secret"]

    # -- the wire -----------------------------------------------------------------------------

    def _organ(self, given: str | None) -> str:
        organ = given or self.options.organ_id
        if organ is None:
            raise BadRequest("name organ_id: this service has no default organ configured")
        return organ

    def _headers(
        self,
        ctx: Context,
        messagetype: str,
        organ: str,
        *,
        to: list[str] | None = None,
        doc_id: str | None = None,
        file: bytes | None = None,
    ) -> dict[str, str]:
        headers = {
            "systemid": self.options.system_id,
            "timestamp": format_timestamp(ctx.clock.now(), self.options.timestamp_format),
            "servicetype": "eDoc",
            "messagetype": messagetype,
            "from": organ,
        }
        if to is not None:
            headers["to"] = json.dumps(to, separators=(",", ":"))
        if doc_id is not None:
            headers["docId"] = doc_id
        if file is not None:
            headers["hash-file"] = file_hash(file)
        return signed_headers(headers, self._secret, version=self.options.version)

    async def _exchange(
        self,
        ctx: Context,
        endpoint: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        media_type: str,
        ids: Mapping[str, str],
    ) -> dict[str, Any]:
        """POST ``body``; the axis's OK reply, or the catalogue error its reply means."""
        response = await ctx.http.post(
            self._base + path,
            content=body,
            headers={**headers, "Content-Type": media_type},
            timeout=ctx.upstream.http_timeout,
        )
        reply: dict[str, Any] | None = None
        try:
            parsed = response.json()
        except ValueError:  # not JSON, or not UTF-8
            parsed = None
        if isinstance(parsed, dict) and parsed.get("status") in ("OK", "FAIL"):
            reply = parsed
        digest = ctx.resources.digest
        ctx.upstream_exchanges.append(  # the exact bytes on the wire, keyed: never the content
            {
                "endpoint": endpoint,
                **ids,
                "request_hmac": digest(body),
                "request_bytes": len(body),
                "reply_hmac": digest(response.content),
                "reply_bytes": len(response.content),
                "http_status": response.status_code,
                "axis_status": reply.get("status") if reply else None,
                "error_code": str(reply.get("ErrorCode", "")) if reply else None,
            }
        )
        status = response.status_code
        if status == 429 or status >= 500:
            raise_for_upstream_status(response)
        if reply is None:
            raise_for_upstream_status(response)
            raise UpstreamBadResponse(f"the document axis's reply to {endpoint} is not its JSON")
        if reply["status"] == "FAIL":
            raise self._failure(ctx, endpoint, status, reply)
        raise_for_upstream_status(response)  # "OK" with an error status: trust the status
        return reply

    def _failure(
        self, ctx: Context, endpoint: str, status: int, reply: Mapping[str, Any]
    ) -> UpstreamRejected:
        code = str(reply.get("ErrorCode", ""))
        reason, message = FAILURES.get(code, ("other", "the document axis refused the request"))
        ctx.log.warning(
            "document axis refused a call", endpoint=endpoint, error_code=code, reason=reason
        )
        detail: dict[str, Any] = {
            "error_code": code,
            "reason": reason,
            "endpoint": endpoint,
            "http_status": status,
        }
        if code in _DESCRIBED and isinstance(reply.get("ErrorDesc"), str):
            detail["upstream_description"] = reply["ErrorDesc"][:300]
        return UpstreamRejected(f"{message} (error code {code or 'none'})", detail=detail)

    def _document_id(self, ctx: Context) -> str:
        """The edXML DocumentId: derived from the idempotency key, so that a redelivery carries
        the same one and the axis delivers the document once."""
        key = ctx.idempotency_key
        if key is None:
            return str(uuid.uuid4())
        name = "\x1f".join((self.options.system_id, ctx.consumer.id, key))
        return str(uuid.uuid5(DOCUMENT_ID_NAMESPACE, name))

    @staticmethod
    def _json(body: Mapping[str, Any]) -> bytes:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()

    # -- operations ---------------------------------------------------------------------------

    @operation(
        "document.send",
        input=OutgoingDocument,
        output=DocumentReceipt,
        idempotent=False,
        mode="async",
        honours_idempotency_key=True,
    )
    async def send(self, doc: OutgoingDocument, ctx: Context) -> DocumentReceipt:
        """Send a document to other agencies through the national document exchange axis."""
        document_id = self._document_id(ctx)
        body = build_edxml(doc, document_id, sent_at=ctx.clock.now())
        headers = self._headers(
            ctx,
            "edoc",
            doc.sender.id,
            to=[organ.id for organ in doc.recipients],
            doc_id=document_id,
            file=body,
        )
        reply = await self._exchange(
            ctx,
            "sendEdoc",
            self.options.paths.send,
            headers,
            body,
            "application/octet-stream",
            {"document_id": document_id},
        )
        return _model(
            DocumentReceipt,
            {"doc_id": reply.get("DocId"), "document_id": document_id},
            "reply to sendEdoc",
        )

    @operation("document.inbox", input=InboxQuery, output=Inbox)
    async def inbox(self, query: InboxQuery, ctx: Context) -> Inbox:
        """The documents an organ received through the axis, with their status; no content."""
        organ = self._organ(query.organ_id)
        reply = await self._exchange(
            ctx,
            "getReceivedEdocList",
            self.options.paths.received,
            self._headers(ctx, "edoc", organ),
            self._json({}),
            "application/json",
            {},
        )
        items = reply.get("data")
        if not isinstance(items, list):
            raise UpstreamBadResponse("the document axis's inbox reply has no list of documents")
        return Inbox(organ_id=organ, entries=[_inbox_entry(item) for item in items])

    @operation("document.get", input=DocumentQuery, output=Document)
    async def get(self, query: DocumentQuery, ctx: Context) -> Document:
        """One document, attachments included, as sent by its organ."""
        organ = self._organ(query.organ_id)
        reply = await self._exchange(
            ctx,
            "getEdoc",
            self.options.paths.get,
            self._headers(ctx, "edoc", organ, doc_id=query.doc_id),
            self._json({"DocId": query.doc_id}),
            "application/json",
            {"doc_id": query.doc_id},
        )
        data = reply.get("data")
        if not isinstance(data, str):
            raise UpstreamBadResponse("the document axis's reply to getEdoc has no file")
        try:
            edxml = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise UpstreamBadResponse("the document axis's file is not base64") from None
        return parse_edxml(edxml).model_copy(update={"doc_id": query.doc_id})

    @operation("document.status", input=StatusUpdate, output=StatusResult)
    async def status(self, update: StatusUpdate, ctx: Context) -> StatusResult:
        """Tell the sender where a received document stands (or, as its sender, recall it)."""
        organ = self._organ(update.organ_id)
        body: dict[str, Any] = {"DocId": update.doc_id, "Status": update.status.value}
        if update.description is not None:
            body["Description"] = update.description
        if update.officer is not None:
            staff = {
                "Staff": update.officer.name,
                "Department": update.officer.department,
                "Mobile": update.officer.phone,
                "Email": update.officer.email,
            }
            body["StaffInfo"] = {k: v for k, v in staff.items() if v is not None}
        await self._exchange(
            ctx,
            "updateStatus",
            self.options.paths.status,
            self._headers(ctx, "status", organ, doc_id=update.doc_id),
            self._json(body),
            "application/json",
            {"doc_id": update.doc_id},
        )
        return StatusResult(doc_id=update.doc_id, organ_id=organ, status=update.status)
