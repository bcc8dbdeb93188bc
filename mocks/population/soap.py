"""SOAP 1.1 plumbing of the population mock: hardened parsing, envelopes, faults, contract files.

Parsing refuses before it trusts: the body must be at most ``max_body_bytes`` (checked by the
app while reading) and carry no DOCTYPE or entity declaration (looked for in the raw bytes as
ASCII, UTF-16 and UTF-32, then again in what the parser saw, for any other encoding); it is
parsed by an lxml parser that resolves no entity, loads no DTD, reaches no network, keeps no
comment or processing instruction and refuses huge trees. An XXE or billion-laughs request is
answered with a ``DC-400-DTD`` fault without any file being read or any entity expanded.

A fault is a SOAP 1.1 ``soap:Fault`` sent with HTTP 500::

    <soap:Fault>
      <faultcode>soap:Client</faultcode>            (soap:Server for the mock's own failures)
      <faultstring>Thiếu mã yêu cầu (MaYeuCau)</faultstring>
      <detail><dl:LoiChiTiet><dl:MaLoi>DC-400-MAYEUCAU</dl:MaLoi><dl:MoTaLoi>…</dl:MoTaLoi>
      </dl:LoiChiTiet></detail>
    </soap:Fault>

``FAULTS`` lists every ``MaLoi`` with its ``faultstring``; ``MoTaLoi`` adds the particulars.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from lxml import etree

__all__ = [
    "DC",
    "DL",
    "FAULTS",
    "SOAP_ENV",
    "WSDL_DIR",
    "SoapFault",
    "contract_file",
    "envelope",
    "fault_envelope",
    "hardened_parser",
    "parse_request",
    "request_schema",
]

SOAP_ENV: Final = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENV: Final = "http://www.w3.org/2003/05/soap-envelope"
DC: Final = "http://dancuquocgia.bca"  # requests, and the WSDL's target namespace
DL: Final = "http://www.mic.gov.vn/dancu/1.0"  # replies and fault details

FAULTS: Final[dict[str, str]] = {
    "DC-400-SIZE": "Yêu cầu vượt quá kích thước cho phép",
    "DC-400-XML": "Yêu cầu không phải XML hợp lệ",
    "DC-400-DTD": "Không chấp nhận DOCTYPE hoặc khai báo thực thể (DTD/ENTITY)",
    "DC-400-SOAP": "Yêu cầu không phải phong bì SOAP 1.1",
    "DC-400-OP": "Thao tác không được hỗ trợ",
    "DC-400-ACTION": "SOAPAction không khớp với thao tác trong Body",
    "DC-400-MAYEUCAU": "Thiếu mã yêu cầu (MaYeuCau)",
    "DC-400-KEY": "Cần SoDinhDanh hoặc SoCMND",
    "DC-400-ID": "SoDinhDanh phải gồm 12 chữ số, SoCMND 9 chữ số",
    "DC-400-DATE": "NgayThangNamSinh không hợp lệ (NgayThangNam yyyyMMdd hoặc Nam yyyy)",
    "DC-400-SCHEMA": "Yêu cầu không đúng lược đồ (dancu-request.xsd)",
    "DC-500-SERVER": "Lỗi hệ thống",
}

WSDL_DIR: Final = Path(__file__).parent / "wsdl"
_CONTRACT_FILES: Final = ("dancu.wsdl", "dancu-request.xsd", "dancu-response.xsd")


class SoapFault(Exception):
    """A request refused with a SOAP fault; ``code`` is a key of ``FAULTS``."""

    def __init__(self, code: str, detail: str = "") -> None:
        assert code in FAULTS, code
        self.code = code
        self.faultstring = FAULTS[code]
        self.detail = detail or self.faultstring
        self.faultcode = "soap:Server" if code.startswith("DC-5") else "soap:Client"
        super().__init__(f"{code}: {self.detail}")


def hardened_parser() -> etree.XMLParser:
    """An lxml parser that expands no entity, loads no DTD and reaches no network."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


_PARSER: Final = hardened_parser()

# "<!DOCTYPE" and "<!ENTITY" in every encoding an XML parser detects without being told.
_DECLARATIONS: Final = frozenset(
    marker.encode(encoding)
    for marker in ("<!DOCTYPE", "<!ENTITY")
    for encoding in ("ascii", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
)


def contract_file(name: str) -> bytes:
    """The bytes of a shipped contract file: ``dancu.wsdl`` or one of the two XSDs."""
    if name not in _CONTRACT_FILES:
        raise KeyError(name)
    return (WSDL_DIR / name).read_bytes()


def request_schema() -> etree.XMLSchema:
    """The request XSD, compiled (it imports and includes nothing)."""
    document = etree.fromstring(contract_file("dancu-request.xsd"), hardened_parser())
    return etree.XMLSchema(document)


def parse_request(body: bytes) -> etree._Element:
    """The one element inside ``soap:Body``, or a ``SoapFault`` saying why not."""
    if any(marker in body for marker in _DECLARATIONS):
        raise SoapFault("DC-400-DTD")
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise SoapFault("DC-400-XML", f"{FAULTS['DC-400-XML']}: {exc.msg}") from None
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.externalDTD is not None or docinfo.doctype:
        raise SoapFault("DC-400-DTD")
    if root.tag == f"{{{SOAP12_ENV}}}Envelope":
        raise SoapFault("DC-400-SOAP", "Phong bì SOAP 1.2 không được hỗ trợ; hãy dùng SOAP 1.1")
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise SoapFault("DC-400-SOAP", f"Phần tử gốc phải là {{{SOAP_ENV}}}Envelope")
    bodies = root.findall(f"{{{SOAP_ENV}}}Body")
    if len(bodies) != 1:
        raise SoapFault("DC-400-SOAP", "Phong bì phải có đúng một soap:Body")
    payload = [child for child in bodies[0] if isinstance(child.tag, str)]
    if len(payload) != 1:
        raise SoapFault("DC-400-SOAP", "soap:Body phải chứa đúng một phần tử yêu cầu")
    return payload[0]


def envelope(payload: etree._Element) -> bytes:
    """A SOAP 1.1 envelope around one reply element."""
    root = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV})
    etree.SubElement(root, f"{{{SOAP_ENV}}}Body").append(payload)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def fault_envelope(fault: SoapFault) -> bytes:
    """A SOAP 1.1 envelope holding ``fault`` with its ``dl:LoiChiTiet`` detail."""
    element = etree.Element(f"{{{SOAP_ENV}}}Fault", nsmap={"soap": SOAP_ENV})
    etree.SubElement(element, "faultcode").text = fault.faultcode
    etree.SubElement(element, "faultstring").text = fault.faultstring
    detail = etree.SubElement(element, "detail")
    loi = etree.SubElement(detail, f"{{{DL}}}LoiChiTiet", nsmap={"dl": DL})
    etree.SubElement(loi, f"{{{DL}}}MaLoi").text = fault.code
    etree.SubElement(loi, f"{{{DL}}}MoTaLoi").text = fault.detail
    return envelope(element)
