"""The document axis mock app: signed headers, edXML checked against its XSD, inboxes."""

from __future__ import annotations

import base64
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from lxml import etree
from pydantic import BaseModel, ConfigDict, Field, model_validator

from adapters.edoc.signing import (
    SIGN_KEY_HEADER,
    file_hash,
    parse_timestamp,
    verify_signed_headers,
)
from adapters.wire import safe_xml_parser
from mocks.edoc._state import (
    RECALL,
    RECIPIENT_CODES,
    STATUS_CODES,
    DocumentStore,
    Stored,
)
from mocks.faults import install_faults

__all__ = [
    "DEFAULT_AGENCIES",
    "EDXML_XSD",
    "ERROR_CODES",
    "FAULTS_ENV_VAR",
    "NS",
    "EdocSettings",
    "create_app",
]

_log = logging.getLogger("mocks.edoc")

#: The edXML schema the mock validates every sent file against.
EDXML_XSD: Final = Path(__file__).parent / "edxml.xsd"
NS: Final = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
_E: Final = {"e": NS}
#: Start-up fault rules for this mock alone, tried before the shared ``LGSP_MOCK_FAULTS``.
FAULTS_ENV_VAR: Final = "LGSP_MOCK_FAULTS_EDOC"

#: ErrorCode -> (HTTP status, ErrorDesc summary). The particulars follow the summary.
ERROR_CODES: Final[dict[str, tuple[int, str]]] = {
    "1001": (400, "Thiếu hoặc sai tiêu đề (header)"),
    "1002": (401, "Hệ thống (systemid) chưa được đăng ký"),
    "1003": (401, "Chữ ký tiêu đề không hợp lệ"),
    "1004": (401, "Thời điểm gửi (timestamp) không hợp lệ hoặc đã quá hạn"),
    "1005": (403, "Hệ thống không được phép thay mặt cơ quan này"),
    "2001": (400, "Mã băm tệp (hash-file) không khớp"),
    "2002": (400, "Tệp edXML không hợp lệ"),
    "2003": (400, "Cơ quan không có trong danh mục"),
    "2004": (400, "Tiêu đề không khớp với tệp edXML"),
    "2005": (413, "Yêu cầu vượt quá kích thước cho phép"),
    "3001": (404, "Không tìm thấy văn bản"),
    "3002": (400, "Mã trạng thái không hợp lệ"),
    "3003": (400, "Nội dung yêu cầu không hợp lệ"),
    "9999": (500, "Lỗi hệ thống"),
}

DEFAULT_AGENCIES: Final[dict[str, str]] = {
    "000.00.00.H12": "Ủy ban nhân dân tỉnh",
    "000.00.00.G12": "Sở Tài nguyên và Môi trường",
    "000.00.01.H12": "Văn phòng đăng ký đất đai",
    "000.00.00.G01": "Bộ Tài nguyên và Môi trường",
}
_DEMO_ORGANS: Final = ["000.00.00.H12", "000.00.00.G12", "000.00.01.H12"]

# "<!DOCTYPE" and "<!ENTITY" in every encoding an XML parser detects without being told.
_DECLARATIONS: Final = frozenset(
    marker.encode(encoding)
    for marker in ("<!DOCTYPE", "<!ENTITY")
    for encoding in ("ascii", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
)
_SIGNED_ALWAYS: Final = ("systemid", "timestamp", "servicetype", "messagetype")


class EdocSettings(BaseModel):
    """Registered systems, the agency catalogue, who acts for whom, and the checks' limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: systemid -> the secret its headers are signed with.
    systems: dict[str, str] = {"lgsp-demo": "edoc-demo-secret"}
    #: organ id -> name: the agencies getAgenciesList lists and documents may be sent to.
    agencies: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_AGENCIES))
    #: systemid -> the organs it may act for (send as, read the inbox of), by the ``from`` header.
    organs_of: dict[str, list[str]] = Field(
        default_factory=lambda: {"lgsp-demo": list(_DEMO_ORGANS)}
    )
    #: How far (seconds, either way) a timestamp header may be from the mock's clock.
    timestamp_window: float = Field(default=300.0, gt=0)
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1)

    @model_validator(mode="after")
    def _known(self) -> EdocSettings:
        for system, organs in self.organs_of.items():
            if system not in self.systems:
                raise ValueError(f"organs_of names the unregistered system {system!r}")
            unknown = [organ for organ in organs if organ not in self.agencies]
            if unknown:
                raise ValueError(f"organs_of[{system!r}] names unknown agencies: {unknown}")
        return self


class EdocFail(Exception):
    """A request refused with ``{"status": "FAIL", "ErrorCode": code, ...}``."""

    def __init__(self, code: str, particulars: str = "") -> None:
        assert code in ERROR_CODES, code
        self.code = code
        self.http_status, summary = ERROR_CODES[code]
        self.description = f"{summary}: {particulars}" if particulars else summary
        super().__init__(f"{code}: {self.description}")


@dataclass(frozen=True)
class _Caller:
    system: str
    organ: str  # the ``from`` header; "" where the route needs no organ


def _fail(fail: EdocFail) -> JSONResponse:
    body = {"status": "FAIL", "ErrorCode": fail.code, "ErrorDesc": fail.description, "data": []}
    return JSONResponse(body, status_code=fail.http_status)


def _ok(**fields: Any) -> dict[str, Any]:
    return {"status": "OK", "ErrorCode": "0", "ErrorDesc": "", **fields}


def _schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.fromstring(EDXML_XSD.read_bytes(), safe_xml_parser()))


def _utc_now() -> datetime:
    return datetime.now(UTC)


async def _read_capped(request: Request, limit: int) -> bytes:
    """The body, or ``2005`` as soon as it is known to exceed ``limit``."""
    too_big = EdocFail("2005", f"at most {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_big
    return bytes(body)


def _json_object(raw: bytes) -> dict[str, Any]:
    """A JSON object body; an empty body is ``{}``."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise EdocFail("3003", "the body is not JSON") from None
    if not isinstance(value, dict):
        raise EdocFail("3003", "the body is not a JSON object")
    return value


def _first(root: etree._Element, path: str) -> str:
    element = root.find(path, _E)
    return (element.text or "").strip() if element is not None else ""


_Action = Callable[[Request], Awaitable[dict[str, Any] | Response]]


def _endpoint(
    guarded: Callable[[Request, _Action], Awaitable[Response]], action: _Action
) -> Callable[[Request], Awaitable[Response]]:
    """A route handler running ``action`` under ``guarded`` (FastAPI reads its signature)."""

    async def endpoint(request: Request) -> Response:
        return await guarded(request, action)

    return endpoint


def create_app(
    settings: EdocSettings | None = None, *, clock: Callable[[], datetime] = _utc_now
) -> FastAPI:
    """The mock as an ASGI app. ``clock`` (timezone-aware) checks timestamps and dates
    receipts; the accepted documents are ``app.state.store`` (a ``DocumentStore``)."""
    settings = settings or EdocSettings()
    schema = _schema()
    store = DocumentStore()

    app = FastAPI(
        title="Mock: Trục liên thông văn bản quốc gia (edXML)",
        description="The national document exchange axis as the bus meets it.",
        version="1.0",
        docs_url=None,
        redoc_url=None,
    )
    app.state.store = store
    app.state.settings = settings

    def authenticate(request: Request, messagetype: str, *, organ: bool = True) -> _Caller:
        headers = request.headers
        for name in _SIGNED_ALWAYS:
            if not headers.get(name):
                raise EdocFail("1001", f"header {name} is missing")
        system = headers["systemid"]
        secret = settings.systems.get(system)
        if secret is None:
            raise EdocFail("1002", f"systemid {system!r}")
        reason = verify_signed_headers(headers, secret)
        if reason is not None:
            raise EdocFail("1003", reason)
        signed = {name.strip().lower() for name in headers[SIGN_KEY_HEADER].split(";")}
        for name in (*_SIGNED_ALWAYS, *(("from",) if organ else ())):
            if name not in signed:
                raise EdocFail("1003", f"header {name} is not signed")
        when = parse_timestamp(headers["timestamp"])
        if when is None:
            raise EdocFail("1004", "unreadable timestamp")
        if abs((clock() - when).total_seconds()) > settings.timestamp_window:
            raise EdocFail("1004", f"more than {settings.timestamp_window:g} s from the axis")
        if headers["servicetype"] != "eDoc":
            raise EdocFail("1001", "servicetype must be eDoc")
        if headers["messagetype"] != messagetype:
            raise EdocFail("1001", f"messagetype must be {messagetype} here")
        acting = headers.get("from", "")
        if organ:
            if not acting:
                raise EdocFail("1001", "header from is missing")
            if acting not in settings.organs_of.get(system, []):
                raise EdocFail("1005", f"{system} does not act for {acting}")
        return _Caller(system, acting)

    def doc_id_of(request: Request, body: dict[str, Any] | None = None) -> str:
        """The document named by the ``docId`` header, the ``docId`` query parameter or the
        body's ``DocId``; they must agree when several are given."""
        candidates = (
            request.headers.get("docid"),
            request.query_params.get("docId"),
            (body or {}).get("DocId"),
        )
        values = [value for value in candidates if value is not None and value != ""]
        if not values:
            raise EdocFail("1001", "docId is missing")
        if not all(isinstance(value, str) for value in values):
            raise EdocFail("3003", "DocId must be text")
        if len(set(values)) > 1:
            raise EdocFail("3003", "the docId header, parameter and DocId differ")
        return str(values[0])

    def validated(body: bytes) -> etree._Element:
        if any(marker in body for marker in _DECLARATIONS):
            raise EdocFail("2002", "DOCTYPE and ENTITY declarations are not accepted")
        try:
            root = etree.fromstring(body, safe_xml_parser())
        except etree.XMLSyntaxError as exc:
            raise EdocFail("2002", f"not well-formed XML: {exc.msg}") from None
        if not schema.validate(root):
            error = next(iter(schema.error_log))
            raise EdocFail("2002", f"line {error.line}: {error.message}")
        return root

    async def send(request: Request) -> dict[str, Any]:
        caller = authenticate(request, "edoc")
        body = await _read_capped(request, settings.max_body_bytes)
        declared = request.headers.get("hash-file", "").strip().lower()
        if not declared:
            raise EdocFail("1001", "header hash-file is missing")
        if not hmac.compare_digest(file_hash(body), declared):
            raise EdocFail("2001", "SHA-256 of the body differs from hash-file")
        root = validated(body)
        header = "e:edXMLEnvelope/e:edXMLHeader/e:MessageHeader"
        message = root.find(header, _E)
        assert message is not None  # the schema requires it
        sender = _first(message, "e:From/e:OrganId")
        if sender != caller.organ:
            raise EdocFail("2004", "From/OrganId differs from the from header")
        recipients = list(
            dict.fromkeys((to.text or "").strip() for to in message.iterfind("e:To/e:OrganId", _E))
        )
        try:
            listed = json.loads(request.headers.get("to", ""))
        except ValueError:
            raise EdocFail("1001", "header to must be a JSON array of organ ids") from None
        if not isinstance(listed, list) or not all(isinstance(v, str) for v in listed):
            raise EdocFail("1001", "header to must be a JSON array of organ ids")
        if set(listed) != set(recipients):
            raise EdocFail("2004", "the to header differs from To/OrganId")
        document_id = _first(message, "e:DocumentId")
        named = request.headers.get("docid")
        if named and named != document_id:
            raise EdocFail("2004", "the docId header differs from DocumentId")
        unknown = [organ for organ in recipients if organ not in settings.agencies]
        if unknown:
            raise EdocFail("2003", unknown[0])
        now = clock()
        draft = Stored(
            doc_id="",
            system=caller.system,
            sender=sender,
            sender_name=settings.agencies[sender],
            document_id=document_id,
            code_number=_first(message, "e:Code/e:CodeNumber"),
            code_notation=_first(message, "e:Code/e:CodeNotation"),
            subject=_first(message, "e:Subject"),
            promulgation_date=_first(message, "e:PromulgationInfo/e:PromulgationDate"),
            data=body,
            sent_at=now,
        )
        doc, _ = store.add(draft, recipients, now)
        return _ok(DocId=doc.doc_id)

    async def received(request: Request) -> dict[str, Any]:
        caller = authenticate(request, "edoc")
        _json_object(await _read_capped(request, settings.max_body_bytes))
        entries = [doc.received_entry(caller.organ) for doc in store.received(caller.organ)]
        return _ok(data=entries)

    async def sent(request: Request) -> dict[str, Any]:
        caller = authenticate(request, "edoc")
        _json_object(await _read_capped(request, settings.max_body_bytes))
        return _ok(data=[doc.sent_entry(settings.agencies) for doc in store.sent(caller.organ)])

    def visible(request: Request, caller: _Caller, body: dict[str, Any] | None = None) -> Stored:
        doc = store.visible(doc_id_of(request, body), caller.organ)
        if doc is None:
            raise EdocFail("3001", "no such document for this organ")
        return doc

    async def get(request: Request) -> dict[str, Any]:
        caller = authenticate(request, "edoc")
        body = _json_object(await _read_capped(request, settings.max_body_bytes))
        doc = visible(request, caller, body)
        return _ok(data=base64.b64encode(doc.data).decode("ascii"))

    async def download(request: Request) -> Response:
        caller = authenticate(request, "edoc")
        doc = visible(request, caller)
        return Response(
            doc.data,
            media_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{doc.doc_id}.edxml"'},
        )

    async def update_status(request: Request) -> dict[str, Any]:
        caller = authenticate(request, "status")
        body = _json_object(await _read_capped(request, settings.max_body_bytes))
        code = body.get("Status")
        if not isinstance(code, str) or code not in STATUS_CODES:
            raise EdocFail("3002", f"known codes: {', '.join(sorted(STATUS_CODES))}")
        description = body.get("Description")
        staff = body.get("StaffInfo")
        if description is not None and not isinstance(description, str):
            raise EdocFail("3003", "Description must be text")
        if staff is not None and (
            not isinstance(staff, dict) or not all(isinstance(v, str) for v in staff.values())
        ):
            raise EdocFail("3003", "StaffInfo must be an object of texts")
        doc = visible(request, caller, body)
        now = clock()
        if caller.organ in doc.copies:
            if code not in RECIPIENT_CODES:
                raise EdocFail("3002", f"a recipient cannot set {code}")
            copies = [doc.copies[caller.organ]]
        else:  # the sender: it may only recall
            if code != RECALL:
                raise EdocFail("3002", f"the sender can only set {RECALL} (recall)")
            copies = list(doc.copies.values())
        for copy in copies:
            copy.status, copy.updated_at = code, now
            copy.description, copy.staff = description, staff
        return _ok(data=[])

    async def count(request: Request) -> dict[str, Any]:
        caller = authenticate(request, "edoc")
        waiting = [
            doc for doc in store.received(caller.organ) if doc.copies[caller.organ].status == "01"
        ]
        return _ok(data=len(waiting))

    async def agencies(request: Request) -> dict[str, Any]:
        authenticate(request, "edoc", organ=False)
        listed = [{"OrganId": k, "OrganName": v} for k, v in sorted(settings.agencies.items())]
        return _ok(data=listed)

    async def guarded(request: Request, action: _Action) -> Response:
        try:
            result = await action(request)
        except EdocFail as fail:
            return _fail(fail)
        except Exception:  # noqa: BLE001 - any bug is a 9999 reply, as from a real service
            _log.exception("edoc mock failed")
            return _fail(EdocFail("9999"))
        return result if isinstance(result, Response) else JSONResponse(result)

    routes: list[tuple[str, str, _Action]] = [
        ("POST", "/sendEdoc", send),
        ("POST", "/getReceivedEdocList", received),
        ("POST", "/getSentEdocList", sent),
        ("POST", "/getEdoc", get),
        ("POST", "/updateStatus", update_status),
        ("GET", "/countReceiveEdoc", count),
        ("GET", "/downloadEdoc", download),
        ("POST", "/getAgenciesList", agencies),
    ]
    for method, path, action in routes:
        app.add_api_route(path, _endpoint(guarded, action), methods=[method], name=path[1:])

    @app.get("/__admin/documents")
    async def documents() -> dict[str, Any]:
        """Every accepted document's ids, parties, statuses, size and hash; never content."""
        return {
            "documents": [doc.admin_entry() for doc in store.documents.values()],
            "deliveries": store.deliveries,
        }

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "documents": len(store.documents)}

    # Last, so the fault middleware is the outermost one.
    install_faults(app, env_var=FAULTS_ENV_VAR)
    return app
