"""A mock of the national population database (CSDLQG về dân cư): a real SOAP 1.1 service.

Document/literal, as the bus's adapter meets it behind NGSP::

    POST /soap                      one request element in soap:Body, SOAPAction
                                    "http://dancuquocgia.bca/<Operation>" (or empty)
    GET  /soap?wsdl                 dancu.wsdl, self-contained, soap:address = the URL asked
                                    (behind NGSP: the NGSP URL, from X-Forwarded-*, see below)
    GET  /soap?xsd=dancu-request    the request schema (the same as inline in the WSDL)
    GET  /soap?xsd=dancu-response   the reply schema
    GET  /health                    liveness and the size of the seeded registry

The WSDL's ``soap:address`` is where a client should post. Behind a proxy that sends
``X-Forwarded-Host`` (NGSP does, with ``X-Forwarded-Proto`` and ``X-Forwarded-Prefix`` =
``/{api}/{version}``) it is ``{proto}://{host}{prefix}/soap``, so that a client following the
WSDL it fetched through NGSP calls through NGSP too; otherwise it is the URL the request came in
on. Of each header only the first value counts (proxies chain them with commas); a proto other
than http/https, a host that is not a bare ``host[:port]`` or a prefix not starting with ``/``
is ignored (proto then falls back to the request's scheme, prefix to none).

Namespaces: requests ``dc`` = ``http://dancuquocgia.bca`` (also the WSDL's target namespace),
replies ``dl`` = ``http://www.mic.gov.vn/dancu/1.0``; ``elementFormDefault="qualified"``.

Operations (request element ``dc:<Operation>`` → the element soap:Body of the reply holds):

- ``TraCuuThongTinCongDan`` → ``dl:CongdanCollection`` (attributes ``SoCongDan``, ``GhiChu``,
  ``ThoiDiemDuLieu``) holding 0..1 ``dl:CongDan``; not found is ``SoCongDan="0"``,
  ``GhiChu="Không tìm thấy thông tin công dân"``. No per-operation wrapper: the Body holds
  the collection itself (PLATFORMS.md "Body/CongdanCollection"), one global element that the
  three collection operations' WSDL output messages share.
- ``XacThucThongTinCongDan`` → ``dl:KetQuaXacThucResponse/dl:TonTai`` (boolean): the person
  exists and every given fact (HoVaTen, NgayThangNamSinh, GioiTinh, SoCMND) matches.
- ``XacMinhThongTinChuHo`` → ``dl:CongdanCollection``: the head.
- ``CungCapThongTinHoGiaDinh`` → ``dl:CongdanCollection``: every member, the head first.
- ``XacMinhThongTinNoiOHienTai`` (claim ``NoiOHienTai{MaTinhThanh, MaQuanHuyen, MaPhuongXa,
  ChiTiet?, QuocGia?}``) and ``XacMinhTinhTrangHonNhan`` (claim ``TinhTrangHonNhan``) →
  ``dl:KetQuaXacThucResponse/dl:TonTai``.

``dl:CongDan`` children, in order: SoDinhDanh, SoCMND?, HoVaTen{Ho, ChuDem?, Ten}, GioiTinh
(1 Nam, 2 Nữ), DanToc, TonGiao, TinhTrangHonNhan (1 chưa kết hôn, 2 đã kết hôn, 3 ly hôn,
4 góa), NhomMau?, NgayThangNamSinh{NgayThangNam?, Nam}, NoiDangKyKhaiSinh, QueQuan, ThuongTru,
NoiOHienTai (each {MaTinhThanh, MaQuanHuyen, MaPhuongXa, ChiTiet, QuocGia}), QuocTich,
Cha?, Me?, VoChong?, NguoiDaiDien? (each {HoVaTen, QuocTich, SoDinhDanh, SoCMND?}),
ChuHo{QuanHe, SoDinhDanh, SoCMND?, HoVaTen}, SoSoHoKhau. QuanHe codes (a guess):
CH01 chủ hộ, CH02 vợ/chồng, CH03 con, CH04 bố/mẹ, CH05 anh/chị/em, CH06 cháu, CH99 khác.

Faults: HTTP 500, ``soap:Fault`` with ``detail/dl:LoiChiTiet{dl:MaLoi, dl:MoTaLoi}``; every one
is ``soap:Client`` except ``DC-500-SERVER``:

==================  =========================================================================
DC-400-SIZE         body over ``max_body_bytes``
DC-400-XML          not well-formed XML (an empty body included)
DC-400-DTD          a DOCTYPE or entity declaration (XXE, billion laughs): refused unread
DC-400-SOAP         not a SOAP 1.1 envelope with exactly one element in soap:Body
DC-400-OP           an element that is not one of the six operations
DC-400-ACTION       a non-empty SOAPAction naming another operation than the body
DC-400-MAYEUCAU     MaYeuCau missing or empty
DC-400-KEY          neither SoDinhDanh nor SoCMND
DC-400-ID           SoDinhDanh not 12 ASCII digits, or SoCMND not 9
DC-400-DATE         NgayThangNamSinh not {NgayThangNam yyyyMMdd (a real date) | Nam yyyy}
DC-400-SCHEMA       anything else against dancu-request.xsd (unqualified, unknown, misplaced or
                    missing elements)
DC-500-SERVER       the mock failed (soap:Server)
==================  =========================================================================

Fault injection: ``/__admin/faults`` (see ``mocks.faults``); start-up rules from
``LGSP_MOCK_FAULTS_POPULATION``, then the shared ``LGSP_MOCK_FAULTS``.

Pick a seeded citizen with ``app.state.registry`` (a ``seed.Registry``): ``registry.citizens``
in a stable order, ``registry.by_id``, ``registry.by_cmnd``, ``registry.households``,
``registry.head_of(id)``, ``registry.members_of(id)``.
"""

from __future__ import annotations

import copy
import logging
import re
from collections import deque
from typing import Any

from fastapi import FastAPI, Request, Response
from lxml import etree
from pydantic import BaseModel, ConfigDict, Field

from mocks.faults import install_faults
from mocks.population import operations, soap
from mocks.population.seed import Registry, build_registry

__all__ = ["FAULTS_ENV_VAR", "PopulationSettings", "Registry", "create_app"]

_log = logging.getLogger(__name__)

_XML = "text/xml; charset=utf-8"
_XSDS = {"dancu-request": "dancu-request.xsd", "dancu-response": "dancu-response.xsd"}
_WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
#: Start-up fault rules for this mock alone, tried before the shared ``LGSP_MOCK_FAULTS``.
FAULTS_ENV_VAR = "LGSP_MOCK_FAULTS_POPULATION"


class PopulationSettings(BaseModel):
    """How the mock seeds its data and how much it reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 2026
    households: int = Field(default=1200, ge=1)  # gives a few thousand citizens
    data_time: str = Field(default="20261101000000", pattern=r"^[0-9]{14}$")  # ThoiDiemDuLieu
    max_body_bytes: int = Field(default=65536, ge=1)


def create_app(settings: PopulationSettings | None = None) -> FastAPI:
    """The mock as an ASGI app; the seeded data is ``app.state.registry``."""
    settings = settings or PopulationSettings()
    registry = build_registry(settings.seed, settings.households)
    wsdl = etree.fromstring(soap.contract_file("dancu.wsdl"), etree.XMLParser(no_network=True))
    xsds = {name: soap.contract_file(file) for name, file in _XSDS.items()}

    app = FastAPI(
        title="Mock: CSDLQG về dân cư (SOAP 1.1)",
        description="The national population database as the bus meets it. See /soap?wsdl.",
        version="1.0",
    )
    app.state.registry = registry
    access_log: deque[dict[str, str | None]] = deque(maxlen=1000)
    app.state.access_log = access_log
    app.state.settings = settings

    @app.get("/soap", response_class=Response)
    async def describe(request: Request) -> Response:
        """The WSDL (``?wsdl``) or one of its schemas (``?xsd=dancu-request|dancu-response``)."""
        if "wsdl" in request.query_params:
            return Response(_wsdl_for(wsdl, _soap_location(request)), media_type=_XML)
        xsd = xsds.get(request.query_params.get("xsd", ""))
        if xsd is not None:
            return Response(xsd, media_type=_XML)
        return Response(
            "Dùng ?wsdl, ?xsd=dancu-request hoặc ?xsd=dancu-response\n",
            status_code=404,
            media_type="text/plain; charset=utf-8",
        )

    async def call(request: Request) -> Response:
        """The SOAP 1.1 endpoint of every operation."""
        try:
            body = await _read_capped(request, settings.max_body_bytes)
            element = soap.parse_request(body)
            name = operations.operation_name(element)
            _check_action(request.headers.get("soapaction"), name)
            access_log.append(operations.access_entry(name, element))
            reply = operations.dispatch(name, element, registry, settings.data_time)
        except soap.SoapFault as fault:
            return _fault(fault)
        except Exception:  # noqa: BLE001 - any bug is a soap:Server fault, as from a real service
            _log.exception("population mock failed")
            return _fault(soap.SoapFault("DC-500-SERVER"))
        return Response(soap.envelope(reply), media_type=_XML)

    # A plain Starlette route, as NGSP's proxy: the endpoint reads its body itself.
    app.add_route("/soap", call, methods=["POST"])

    @app.get("/__admin/access-log")
    async def access() -> list[dict[str, str | None]]:
        """Who asked, as the platform's own access log keeps it: the last 1,000 requests'
        operation, MaYeuCau and MaCanBo (the officer), oldest first; never a citizen's data."""
        return list(access_log)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness, with the size of the seeded registry."""
        return {
            "status": "ok",
            "citizens": len(registry.citizens),
            "households": len(registry.households),
            "data_time": settings.data_time,
        }

    # Fault injection, off until rules are set (LGSP_MOCK_FAULTS_POPULATION, LGSP_MOCK_FAULTS).
    install_faults(app, env_var=FAULTS_ENV_VAR)
    return app


def _fault(fault: soap.SoapFault) -> Response:
    return Response(soap.fault_envelope(fault), status_code=500, media_type=_XML)


async def _read_capped(request: Request, limit: int) -> bytes:
    """The body, or a ``DC-400-SIZE`` fault as soon as it is known to exceed ``limit``."""
    too_big = soap.SoapFault("DC-400-SIZE", f"Tối đa {limit} byte")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_big
    return bytes(body)


def _check_action(header: str | None, name: str) -> None:
    action = (header or "").strip().strip('"')
    if action and action != f"{soap.DC}/{name}":
        raise soap.SoapFault(
            "DC-400-ACTION", f"SOAPAction {action!r} không khớp thao tác {soap.DC}/{name}"
        )


_FORWARDED_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")
_FORWARDED_PREFIX = re.compile(r"(/[A-Za-z0-9._~%!$&'()*+,;=:@\-]+)*/?")


def _forwarded(request: Request, name: str) -> str:
    """The first value of an ``X-Forwarded-*`` header, or ``""``."""
    return request.headers.get(name, "").split(",", 1)[0].strip()


def _soap_location(request: Request) -> str:
    """Where clients should post: the proxy's URL when one forwarded the request, else ours."""
    host = _forwarded(request, "x-forwarded-host")
    if not _FORWARDED_HOST.fullmatch(host):
        return str(request.url.replace(query=""))
    proto = _forwarded(request, "x-forwarded-proto").lower()
    if proto not in ("http", "https"):
        proto = request.url.scheme
    prefix = _forwarded(request, "x-forwarded-prefix")
    if not _FORWARDED_PREFIX.fullmatch(prefix):
        prefix = ""
    return f"{proto}://{host}{prefix.rstrip('/')}{request.url.path}"


def _wsdl_for(template: etree._Element, location: str) -> bytes:
    """The WSDL with every ``soap:address`` pointing at ``location``."""
    wsdl = copy.deepcopy(template)
    for address in wsdl.iter(f"{{{_WSDL_SOAP}}}address"):
        address.set("location", location)
    return etree.tostring(wsdl, xml_declaration=True, encoding="UTF-8")
