"""A mock of the national document exchange axis (Trục liên thông văn bản quốc gia).

Plain HTTP with signed headers and edXML files, as shared PLATFORMS.md describes it::

    POST /sendEdoc             body: the .edxml file (application/octet-stream); header
                               hash-file = SHA-256 hex of the body. Reply {"status": "OK",
                               "ErrorCode": "0", "ErrorDesc": "", "DocId": "<uuid>"}
    POST /getReceivedEdocList  the inbox of the ``from`` organ, oldest first: data = [{DocId,
                               DocumentId, From, FromName, CodeNumber, CodeNotation, Subject,
                               PromulgationDate, Status, ReceivedAt}] (no content)
    POST /getSentEdocList      what the ``from`` organ sent: data = [{DocId, DocumentId,
                               CodeNumber, CodeNotation, Subject, PromulgationDate, SentAt,
                               To: [{OrganId, OrganName, Status, Description, UpdatedAt}]}]
    POST /getEdoc              docId header or body {"DocId"}: data = base64 of the .edxml
    POST /updateStatus         messagetype status; body {DocId, Status, Description?,
                               StaffInfo? {Staff, Department, Mobile, Email}}: data = []
    GET  /countReceiveEdoc     data = how many documents in the inbox are still 01 (arrived)
    GET  /downloadEdoc?docId=  the .edxml file itself (application/octet-stream)
    POST /getAgenciesList      data = [{OrganId, OrganName}] (the ``from`` header not needed)
    GET  /__admin/documents    every accepted document's ids, parties, statuses, size and
                               SHA-256, and how many recipient copies were made; no content
    GET  /health               liveness

Headers on every call: ``systemid``, ``timestamp``, ``servicetype: eDoc``, ``messagetype``
(``status`` for /updateStatus, ``edoc`` elsewhere), ``from`` (the organ acting), and where they
apply ``to`` (JSON array of organ ids), ``docId``, ``hash-file``; all signed as
``adapters.edoc.signing`` describes (the mock imports those pure functions from the adapter
package; ``systemid``, ``timestamp``, ``servicetype``, ``messagetype`` and, where an organ acts,
``from`` must be among the signed headers). The timestamp may be epoch milliseconds (13 digits),
epoch seconds (10 digits) or ISO 8601 (without offset: Vietnam time), and must lie within
``timestamp_window`` seconds of the mock's clock.

Who acts for whom (a choice): a system may act for several organs (``organs_of``) and picks
one per call with the ``from`` header: the sender on /sendEdoc (it must equal
``From/OrganId``), the inbox read on the list calls, the reader or updater on the others. The
default system ``lgsp-demo`` (secret ``edoc-demo-secret``) acts for 000.00.00.H12 (UBND tỉnh),
000.00.00.G12 (Sở TN&MT) and 000.00.01.H12 (VP đăng ký đất đai), so a demo sends from one and
reads the inbox of another; 000.00.00.G01 (Bộ TN&MT) is a known agency it does not act for.

/sendEdoc checks, in order: the headers and signature, the body size, ``hash-file``, the file
against ``edxml.xsd`` (``EDXML_XSD``; the first error is named), that ``from``, ``to`` and
``docId`` agree with ``From/OrganId``, ``To/OrganId`` and ``DocumentId``, and that every
recipient is a known agency. The same sender sending the same DocumentId again gets the same
DocId back and nothing is delivered twice (the first file is kept). Each recipient's copy starts
at status 01. A recipient may set 02..06, 15, 16; the sender may set 13 (recall) only, which
marks every copy; codes 07-12 and 14, whose meanings are unknown, are refused like any other.
An organ that neither sent nor received a document gets 3001 for it, as for an unknown one.

Every refusal is ``{"status": "FAIL", "ErrorCode": "<code>", "ErrorDesc": "<summary>:
<particulars>", "data": []}`` with an HTTP status that says who must act (a choice: public
clients show FAIL replies but not their statuses, so the adapter reads the ErrorCode first):

=====  ====  ==================================================================================
code   HTTP  meaning
=====  ====  ==================================================================================
1001   400   a header missing or malformed (systemid, timestamp, servicetype, messagetype,
             from, to, docId, hash-file)
1002   401   systemid not registered
1003   401   bad signature: XroadVnpt-* headers missing, HMAC wrong, a header differing from
             its signed value, or a required header not signed
1004   401   timestamp unreadable or outside the window
1005   403   the system does not act for the ``from`` organ
2001   400   hash-file differs from the SHA-256 of the body
2002   400   the edXML is not well-formed, carries a DOCTYPE, or breaks the XSD
2003   400   a recipient is not a known agency (the first one is named)
2004   400   from / to / docId disagree with the edXML
2005   413   body over ``max_body_bytes``
3001   404   no such document for this organ
3002   400   a status code that is not known, or not one this organ may set
3003   400   a body that is not a JSON object, or DocId given twice, differently
9999   500   the mock failed
=====  ====  ==================================================================================

Fault injection: ``/__admin/faults`` (see ``mocks.faults``); start-up rules from
``LGSP_MOCK_FAULTS_EDOC``, then the shared ``LGSP_MOCK_FAULTS``. Nothing of a document is
logged; the mock logs only its own failures.
"""

from mocks.edoc._app import (
    DEFAULT_AGENCIES,
    EDXML_XSD,
    ERROR_CODES,
    FAULTS_ENV_VAR,
    EdocSettings,
    create_app,
)

__all__ = [
    "DEFAULT_AGENCIES",
    "EDXML_XSD",
    "ERROR_CODES",
    "FAULTS_ENV_VAR",
    "EdocSettings",
    "create_app",
]
