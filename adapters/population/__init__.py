"""The national population database (CSDLQG về dân cư), SOAP 1.1 through NGSP, with zeep.

Operations offered to consumers (canonical models in ``schemas/citizen.py``):

- ``citizen.lookup``    -> ``TraCuuThongTinCongDan``
- ``citizen.verify``    -> ``XacThucThongTinCongDan`` (once with every fact; on a mismatch, once
  per fact, concurrently, to say which fields differ: the database only answers true/false)
- ``household.members`` -> ``CungCapThongTinHoGiaDinh``

How it talks: the WSDL is loaded ONCE at start-up — from NGSP (``{base}{service_path}?wsdl``)
or, when that is unreachable, from the copy shipped in this package — and parsed by zeep in a
worker thread. Calls go through :class:`SharedClientTransport`, a zeep ``AsyncTransport`` on the
bus's shared httpx client; the bearer token of the province's NGSP consumer is added by a zeep
plugin, cached and refreshed by :class:`bus.upstream_auth.TokenProvider`, and a 401 is retried
once with a fresh token. The transport adds to the exchange record the keyed digests (HMAC-SHA256
under the bus's digest key) and sizes of the exact bytes of each SOAP request and reply.

Errors: a SOAP Fault is ``upstream.fault`` carrying the fault code and the database's error code
(MaLoi); 429/502/503/504 are ``upstream.unavailable`` (``Retry-After`` kept); a reply zeep cannot
read is ``upstream.bad_response``. An empty ``CongdanCollection`` is a normal answer
(``found: false``), not an error.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx
import zeep
import zeep.exceptions
import zeep.plugins
import zeep.proxy
import zeep.transports
from lxml import etree
from pydantic import BaseModel, ConfigDict, Field

from adapters.base import (
    Adapter,
    BusError,
    Context,
    Resources,
    TokenProvider,
    UpstreamBadResponse,
    UpstreamFault,
    UpstreamRejected,
    operation,
    raise_for_upstream_status,
)
from adapters.population.mapping import (
    citizen_from_wire,
    fact_fields,
    relation_from_wire,
    request_fields,
)
from adapters.soap_plan import (
    ReadWithZeep,
    ReplyMismatch,
    Unsupported,
    compile_reader,
    compile_writer,
)
from schemas.citizen import (
    CitizenLookup,
    CitizenLookupResult,
    CitizenVerification,
    HouseholdMember,
    HouseholdQuery,
    HouseholdResult,
    VerificationResult,
)

__all__ = ["PopulationAdapter", "PopulationOptions", "SharedClientTransport"]

SHIPPED_WSDL = Path(__file__).parent / "wsdl" / "dancu.wsdl"
REQUEST_NS = "http://dancuquocgia.bca"
BINDING = f"{{{REQUEST_NS}}}DanCuSoapBinding"
_P = TypeVar("_P")  # a compiled plan (adapters/soap_plan.py)

_bearer: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "lgsp_ngsp_bearer", default=None
)
#: Where the transport appends the digests of the current call's raw SOAP messages.
_exchanges: contextvars.ContextVar[list[dict[str, Any]] | None] = contextvars.ContextVar(
    "lgsp_soap_exchanges", default=None
)


class PopulationOptions(BaseModel):
    """The ``options:`` of a population service in bus.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token_path: str = Field(default="/token", description="NGSP token endpoint path.")
    service_path: str = Field(
        default="/dancu/1.0/soap", description="Path of the population SOAP service on NGSP."
    )
    wsdl_url: str | None = Field(
        default=None, description="Where to load the WSDL; default: the service path + ?wsdl."
    )
    agency_code: str = Field(default="", description="MaDonVi sent with every request.")
    integration_code: str = Field(default="", description="MaTichHop sent with every request.")
    account: str = Field(default="", description="TaiKhoan sent with every request.")
    refresh_margin: float = Field(default=60.0, ge=0, description="Renew the token this early.")


class _TokenRefused(Exception):
    """NGSP answered 401 to a SOAP call: the token must be renewed and the call sent again."""


class _BearerPlugin(zeep.plugins.Plugin):
    """Adds the NGSP bearer token of the current call to the HTTP headers."""

    def egress(
        self, envelope: Any, http_headers: dict[str, str], operation: Any, binding_options: Any
    ) -> tuple[Any, dict[str, str]]:
        token = _bearer.get()
        if token is not None:
            http_headers["Authorization"] = f"Bearer {token}"
        return envelope, http_headers


class _SoapReply:
    """A SOAP reply as zeep's ``process_reply`` reads it. The encoding, which httpx derives
    from the headers on every call and zeep reads only for a multipart reply, when asked."""

    __slots__ = ("_response", "content", "headers", "status_code")

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.content = response.content
        self.status_code = response.status_code
        self.headers = response.headers

    @property
    def encoding(self) -> str | None:
        return self._response.encoding


class SharedClientTransport(zeep.transports.AsyncTransport):
    """zeep's async transport on the bus's shared httpx client.

    zeep's own ``AsyncTransport.__init__`` would create clients and overwrite the given client's
    headers, so it is not called. Documents (the WSDL) are served from memory: they were fetched
    once at start-up. HTTP statuses that are not SOAP answers become catalogue errors here,
    where the headers (``Retry-After``) are still at hand.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        documents: Mapping[str, bytes],
        timeout: httpx.Timeout,
        digest: Callable[[bytes], str],
    ) -> None:
        self.client = http
        self._digest = digest
        self.cache = None
        self.load_timeout = timeout.read
        self.operation_timeout = timeout.read
        self.logger = logging.getLogger("zeep.transports")
        self._close_session = False
        self._documents = dict(documents)
        self._timeout = timeout

    def load(self, url: str) -> bytes:
        try:
            return self._documents[url]
        except KeyError:
            raise zeep.exceptions.TransportError(f"document not preloaded: {url}") from None

    async def aclose(self) -> None:
        """The shared client belongs to the bus, which closes it."""

    def new_response(self, response: httpx.Response) -> _SoapReply:
        """What zeep reads of a reply. zeep's own conversion also builds the reply's cookie jar,
        some 5% of a SOAP call here, which nothing reads (one client serves every consumer)."""
        return _SoapReply(response)

    async def post(self, address: str, message: bytes, headers: dict[str, str]) -> httpx.Response:
        response = await self.client.post(
            address, content=message, headers=headers, timeout=self._timeout
        )
        exchanges = _exchanges.get()
        if exchanges is not None:  # the exact bytes on the wire, keyed: never the content
            exchanges.append(
                {
                    "soap_action": headers.get("SOAPAction", "").strip('"'),
                    "request_hmac": self._digest(message),
                    "request_bytes": len(message),
                    "reply_hmac": self._digest(response.content),
                    "reply_bytes": len(response.content),
                    "http_status": response.status_code,
                }
            )
        status = response.status_code
        if status == 401:
            raise _TokenRefused
        media = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if status in (429, 502, 503, 504) or (status >= 400 and not media.endswith("xml")):
            raise_for_upstream_status(response)  # not a SOAP answer: NGSP or an outage spoke
        return response


def _fault_error(exc: zeep.exceptions.Fault) -> UpstreamFault:
    code = str(exc.code or "")
    error_code = None
    if exc.detail is not None:
        node = exc.detail.find(".//{*}MaLoi")
        error_code = node.text if node is not None else None
    who = "the request" if code.endswith("Client") else "the database"
    return UpstreamFault(
        f"the population database answered with a SOAP fault ({code or 'no code'}"
        f"{', ' + error_code if error_code else ''}): {who} was refused",
        detail={"fault_code": code, "error_code": error_code},
    )


class PopulationAdapter(Adapter):
    description = "National population database (CSDLQG về dân cư), SOAP through NGSP"
    Options = PopulationOptions

    options: PopulationOptions

    async def start(self, resources: Resources) -> None:
        upstream = resources.upstream
        assert upstream is not None  # requires_upstream is True
        creds = resources.credentials
        self._log = resources.log
        self.tokens = TokenProvider(
            resources.http,
            upstream.base_url + self.options.token_path,
            creds["consumer_key"],
            creds["consumer_secret"],
            resources.clock,
            refresh_margin=self.options.refresh_margin,
            timeout=upstream.timeout,
        )
        self.address = upstream.base_url + self.options.service_path
        wsdl_url = self.options.wsdl_url or self.address + "?wsdl"
        document = await self._fetch_wsdl(resources.http, wsdl_url)
        transport = SharedClientTransport(
            resources.http, {wsdl_url: document}, upstream.http_timeout, resources.digest
        )
        # raw_response: where zeep sends a request (an operation without a compiled writer,
        # adapters/soap_plan.py), it hands back the reply for _read_reply to read
        settings = zeep.Settings(
            forbid_dtd=True, forbid_entities=True, forbid_external=True, raw_response=True
        )

        def build() -> Any:
            client = zeep.AsyncClient(
                wsdl_url,
                transport=transport,
                settings=settings,
                plugins=[_BearerPlugin()],
            )
            binding = client.wsdl.bindings[BINDING]
            # AsyncClient.create_service() returns a synchronous proxy in zeep 4.3 (its issues
            # #1168, #1288); the async proxy must be built directly.
            proxy = zeep.proxy.AsyncServiceProxy(client, binding, address=self.address)
            return client, binding, proxy

        # WSDL parsing is CPU work: off the loop
        self._client, self._binding, self.service = await asyncio.to_thread(build)
        self._transport = transport
        self._writers = _compiled(self._binding, compile_writer)
        self._readers = _compiled(self._binding, compile_reader)

    async def _fetch_wsdl(self, http: httpx.AsyncClient, url: str) -> bytes:
        """The live WSDL from NGSP, or the shipped copy if NGSP cannot give it now."""
        try:
            response = await self.tokens.call(
                lambda token: http.get(url, headers={"Authorization": f"Bearer {token}"})
            )
            response.raise_for_status()
            etree.fromstring(response.content, etree.XMLParser(resolve_entities=False))
        except (httpx.HTTPError, BusError, etree.XMLSyntaxError) as exc:  # use the shipped copy
            self._log.warning(
                "WSDL not loaded from the platform; using the shipped copy",
                url=url,
                error=type(exc).__name__,
            )
            return SHIPPED_WSDL.read_bytes()
        return response.content

    async def _call(self, name: str, fields: dict[str, Any]) -> Any:
        """One SOAP operation with the NGSP token, retried once with a fresh token on a 401."""
        writer = self._writers.get(name)
        for attempt in (1, 2):
            token = await self.tokens.token()
            try:
                if writer is not None:
                    headers = {**writer.headers, "Authorization": f"Bearer {token}"}
                    sent = await self._transport.post(
                        self.address, writer.envelope(fields), headers
                    )
                    reply = self._transport.new_response(sent)
                else:
                    _bearer.set(token)
                    reply = await getattr(self.service, name)(**fields)
                return self._read_reply(name, reply)
            except _TokenRefused:
                self.tokens.invalidate(token)
                if attempt == 2:
                    raise UpstreamRejected(
                        "NGSP refused a freshly issued token for the population service"
                    ) from None
            except zeep.exceptions.Fault as exc:
                raise _fault_error(exc) from exc
            # zeep's messages quote the raw reply (names, ids): the cause is not chained.
            except (
                zeep.exceptions.TransportError,
                zeep.exceptions.XMLSyntaxError,
                zeep.exceptions.DTDForbidden,
                zeep.exceptions.EntitiesForbidden,
            ):
                raise UpstreamBadResponse(
                    f"the population database's reply to {name} could not be read"
                ) from None
            except (zeep.exceptions.ValidationError, zeep.exceptions.XMLParseError, ReplyMismatch):
                raise UpstreamBadResponse(
                    f"the population database's reply to {name} does not match its WSDL"
                ) from None
        raise AssertionError("unreachable")

    def _read_reply(self, name: str, reply: _SoapReply) -> Any:
        """A successful reply read by the operation's compiled plan; anything else (a fault, an
        HTTP error, a DOCTYPE, a construct the plan does not read) by zeep, as before."""
        reader = self._readers.get(name)
        if reader is not None and reply.status_code == 200:
            try:
                return reader.read_envelope(reply.content)
            except ReadWithZeep:
                pass  # zeep reads this one, or names what is wrong with it
        return self._binding.process_reply(self._client, self._binding.get(name), reply)

    def _common(self, ctx: Context) -> dict[str, Any]:
        return {
            "MaYeuCau": ctx.request_id,
            "MaCanBo": ctx.end_user,
            "MaDonVi": self.options.agency_code or None,
            "MaTichHop": self.options.integration_code or None,
            "TaiKhoan": self.options.account or None,
        }

    async def _traced(self, ctx: Context, name: str, fields: dict[str, Any]) -> Any:
        """``_call``, with the digests of its raw SOAP messages added to the exchange record.
        (Each task of a fan-out gets its own list: contextvars are copied per task.)"""
        exchanges: list[dict[str, Any]] = []
        _exchanges.set(exchanges)
        try:
            return await self._call(name, fields)
        finally:
            ctx.upstream_exchanges.extend(exchanges)

    @operation("citizen.lookup", input=CitizenLookup, output=CitizenLookupResult)
    async def lookup(self, query: CitizenLookup, ctx: Context) -> CitizenLookupResult:
        """Look a citizen up by personal id (optionally confirmed by name and birth date)."""
        fields = {**self._common(ctx), **request_fields(query), "MaDVC": query.service_code}
        reply = await self._traced(ctx, "TraCuuThongTinCongDan", fields)
        collection = _collection(reply)
        people = list(getattr(collection, "CongDan", None) or [])
        if not people:
            return CitizenLookupResult(
                found=False,
                data_as_of=getattr(collection, "ThoiDiemDuLieu", None),
                note=getattr(collection, "GhiChu", None) or "no citizen matches",
            )
        return CitizenLookupResult(
            found=True,
            citizen=citizen_from_wire(people[0]),
            data_as_of=getattr(collection, "ThoiDiemDuLieu", None),
            note=getattr(collection, "GhiChu", None),
        )

    @operation("citizen.verify", input=CitizenVerification, output=VerificationResult)
    async def verify(self, facts: CitizenVerification, ctx: Context) -> VerificationResult:
        """Check given facts against the database: match, or which fields differ."""
        base = {**self._common(ctx), "SoDinhDanh": facts.personal_id}
        per_fact = fact_fields(facts)
        every = {**base, **{k: v for wire in per_fact.values() for k, v in wire.items()}}
        if await self._exists(ctx, every):
            return VerificationResult(match=True)
        if not per_fact:  # only the id was given, and it is unknown
            return VerificationResult(match=False, mismatched_fields=["personal_id"])
        # The database says only true/false: ask about the id alone and once per fact,
        # concurrently, to name the culprits.
        names = list(per_fact)
        known, *answers = await asyncio.gather(
            self._exists(ctx, base),
            *(self._exists(ctx, {**base, **per_fact[name]}) for name in names),
        )
        if not known:
            return VerificationResult(match=False, mismatched_fields=["personal_id"])
        wrong = [name for name, ok in zip(names, answers, strict=True) if not ok]
        return VerificationResult(match=False, mismatched_fields=wrong or sorted(per_fact))

    async def _exists(self, ctx: Context, fields: dict[str, Any]) -> bool:
        reply = await self._traced(ctx, "XacThucThongTinCongDan", fields)
        return bool(getattr(reply, "TonTai", reply))

    @operation("household.members", input=HouseholdQuery, output=HouseholdResult)
    async def household(self, query: HouseholdQuery, ctx: Context) -> HouseholdResult:
        """Every member of the household of a citizen, head first, with relations."""
        fields = {**self._common(ctx), "SoDinhDanh": query.personal_id}
        reply = await self._traced(ctx, "CungCapThongTinHoGiaDinh", fields)
        people = list(getattr(_collection(reply), "CongDan", None) or [])
        if not people:
            return HouseholdResult(found=False)
        members = [
            HouseholdMember(relation=relation_from_wire(p), citizen=citizen_from_wire(p))
            for p in people
        ]
        head = next((m.citizen for m in members if m.relation == "head"), None)
        return HouseholdResult(
            found=True,
            household_book=members[0].citizen.household_book,
            head=head,
            members=members,
        )


def _compiled(binding: Any, compile_plan: Callable[[Any], _P]) -> dict[str, _P]:
    """The plan of every operation a plan covers (all of this WSDL's); zeep does the rest."""
    plans = {}
    for name, soap_operation in binding._operations.items():  # zeep keeps no public list
        try:
            plans[name] = compile_plan(soap_operation)
        except Unsupported:
            continue
    return plans


def _collection(reply: Any) -> Any:
    """The CongdanCollection of a reply, whether zeep unwrapped the response element or not."""
    return getattr(reply, "CongdanCollection", reply)
