"""End to end against the live mocks: consumer -> bus -> NGSP mock -> population mock and back,
over real loopback HTTP, on the bus's default transport."""

from __future__ import annotations

import hashlib
import hmac
import json
import unicodedata
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from lxml import etree
from pydantic import SecretStr

from bus import create_app
from bus.audit import MemoryRecorder
from bus.settings import Settings
from mocks.population import operations, soap
from mocks.population.seed import Registry, build_registry
from mocks.stack import DEMO_CONSUMER_KEY, DEMO_CONSUMER_SECRET, MockStack
from tests.support import running

pytestmark = [pytest.mark.anyio, pytest.mark.live]

DL = "http://www.mic.gov.vn/dancu/1.0"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
ENV = {"NGSP_CONSUMER_KEY": DEMO_CONSUMER_KEY, "NGSP_CONSUMER_SECRET": DEMO_CONSUMER_SECRET}


@pytest.fixture
def registry(stack: MockStack, sensitive: Callable[[str], str]) -> Registry:
    """The seeded citizens; the first hundred ids and names, which the tests send through the
    bus, are registered as never to be logged in clear."""
    seeded: Registry = stack.apps["population"].state.registry
    for person in seeded.citizens[:100]:
        sensitive(person.id)
        sensitive(person.name.full)
    sensitive(DEMO_CONSUMER_SECRET)
    return seeded


def bus_yaml(stack: MockStack) -> str:
    return f"""\
version: 1
services:
  population:
    adapter: population
    upstream:
      base_url: {stack.urls["ngsp"]}
      credentials: {{consumer_key: NGSP_CONSUMER_KEY, consumer_secret: NGSP_CONSUMER_SECRET}}
    timeout: 10
    retry: none
"""


@pytest.fixture
def make_bus(stack: MockStack, settings_for: Callable[..., Settings]) -> Callable[..., Any]:
    def make(**kwargs: Any) -> Any:
        return create_app(settings_for(bus_yaml(stack)), environ=ENV, **kwargs)

    return make


async def call(client: httpx.AsyncClient, operation: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = await client.post(f"/v1/services/population/{operation}", json=body)
    result: dict[str, Any] = reply.json()
    assert reply.headers["x-request-id"] == result["request_id"]
    return result


async def admin(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """A call to a mock's admin route (stats, faults, token expiry)."""
    async with httpx.AsyncClient() as client:
        return await client.request(method, url, **kwargs)


def birth_date_of(person: Any) -> str:
    return person.birth_date.isoformat()


async def test_lookup_returns_the_canonical_citizen(
    make_bus: Callable[..., Any], registry: Registry
) -> None:
    """A lookup by id, name and birth date answers the citizen with English field names."""
    person = next(c for c in registry.citizens if c.birth_date_known and c.cmnd)
    async with running(make_bus()) as client:
        body = await call(
            client,
            "citizen.lookup",
            {
                "personal_id": person.id,
                "full_name": person.name.full,
                "birth_date": birth_date_of(person),
            },
        )
    assert body["status"] == "ok", body
    data = body["data"]
    assert data["found"] is True
    citizen = data["citizen"]
    assert citizen["personal_id"] == person.id
    assert citizen["old_id"] == person.cmnd
    assert citizen["name"]["full"] == person.name.full
    assert citizen["birth"] == {"date": birth_date_of(person), "year": person.birth_date.year}
    assert citizen["gender"] == {"1": "male", "2": "female"}[person.gender]
    assert citizen["permanent_address"]["province_code"]
    assert citizen["household_book"]


async def test_lookup_by_year_only_citizen(
    make_bus: Callable[..., Any], registry: Registry
) -> None:
    """A citizen known only by birth year comes back with date null and the year."""
    person = next(c for c in registry.citizens if not c.birth_date_known)
    async with running(make_bus()) as client:
        body = await call(client, "citizen.lookup", {"personal_id": person.id})
    assert body["data"]["citizen"]["birth"]["date"] is None
    assert body["data"]["citizen"]["birth"]["year"] == person.birth_date.year


async def test_nfd_name_matches_the_nfc_record(
    make_bus: Callable[..., Any], registry: Registry
) -> None:
    """A name sent in NFD with doubled spaces still finds the NFC record (the mock compares
    exactly, so only the bus's normalisation makes this pass)."""
    person = next(
        c
        for c in registry.citizens
        if c.name.full != c.name.full.encode("ascii", "ignore").decode()
    )
    nfd = "  " + unicodedata.normalize("NFD", person.name.full).replace(" ", "  ") + " "
    assert nfd != person.name.full
    async with running(make_bus()) as client:
        body = await call(client, "citizen.lookup", {"personal_id": person.id, "full_name": nfd})
    assert body["data"]["found"] is True


async def test_not_found_is_an_answer_not_an_outage(make_bus: Callable[..., Any]) -> None:
    """An unknown (well-formed) id answers found: false with status ok."""
    async with running(make_bus()) as client:
        body = await call(client, "citizen.lookup", {"personal_id": "001299999999"})
    assert body["status"] == "ok"
    assert body["data"]["found"] is False
    assert body["data"]["citizen"] is None


async def test_bad_id_is_refused_before_any_upstream_call(
    make_bus: Callable[..., Any], stack: MockStack
) -> None:
    """An 11-digit id is client.bad_request naming personal_id, and NGSP sees no request."""
    recorder = MemoryRecorder()
    async with running(make_bus(recorder=recorder)) as client:
        stats_before = (await admin("GET", f"{stack.urls['ngsp']}/__admin/stats")).json()
        body = await call(client, "citizen.lookup", {"personal_id": "00120300456"})
        stats_after = (await admin("GET", f"{stack.urls['ngsp']}/__admin/stats")).json()
    assert body["error"]["code"] == "client.bad_request"
    assert [f["field"] for f in body["error"]["field_errors"]] == ["personal_id", "old_id"]
    assert "exactly 12 digits" in body["error"]["field_errors"][0]["reason"]
    assert recorder.exchanges[-1].attempts == 0
    assert stats_after == stats_before


async def test_verify_match_and_mismatch(make_bus: Callable[..., Any], registry: Registry) -> None:
    """Right facts match; a wrong name is reported as the one mismatched field."""
    person = next(c for c in registry.citizens if c.birth_date_known)
    facts = {
        "personal_id": person.id,
        "full_name": person.name.full,
        "birth_date": birth_date_of(person),
        "gender": {"1": "male", "2": "female"}[person.gender],
    }
    async with running(make_bus()) as client:
        good = await call(client, "citizen.verify", facts)
        bad = await call(client, "citizen.verify", {**facts, "full_name": "Không Phải Tên"})
    assert good["data"] == {"match": True, "mismatched_fields": []}
    assert bad["data"] == {"match": False, "mismatched_fields": ["full_name"]}


async def test_household_members(make_bus: Callable[..., Any], registry: Registry) -> None:
    """Any member's id gives the whole household, head first, with relations as enums."""
    household = next(h for h in registry.households if len(h.member_ids) >= 3)
    async with running(make_bus()) as client:
        body = await call(client, "household.members", {"personal_id": household.member_ids[-1]})
    data = body["data"]
    assert data["found"] is True
    assert [m["citizen"]["personal_id"] for m in data["members"]] == household.member_ids
    assert data["members"][0]["relation"] == "head"
    assert data["head"]["personal_id"] == household.member_ids[0]
    assert {m["relation"] for m in data["members"][1:]} <= {
        "spouse",
        "child",
        "parent",
        "sibling",
        "grandchild",
        "other",
    }


async def test_token_is_fetched_once_for_many_calls(
    make_bus: Callable[..., Any], registry: Registry, stack: MockStack
) -> None:
    """Twenty lookups cost NGSP at most one token (the WSDL fetch at start-up shares it)."""
    before = (await admin("GET", f"{stack.urls['ngsp']}/__admin/stats")).json()
    async with running(make_bus()) as client:
        for person in registry.citizens[:20]:
            assert (await call(client, "citizen.lookup", {"personal_id": person.id}))["data"][
                "found"
            ]
    after = (await admin("GET", f"{stack.urls['ngsp']}/__admin/stats")).json()
    assert after["tokens_issued"] - before["tokens_issued"] == 1


async def test_outage_is_upstream_unavailable(
    make_bus: Callable[..., Any], stack: MockStack
) -> None:
    """With the database answering 503 to everything (fault injection on the population mock),
    a lookup is upstream.unavailable, retryable; the bus started anyway on its shipped WSDL."""
    faults = f"{stack.urls['population']}/__admin/faults"
    rules = {"rules": [{"path": "/soap", "error_rate": 1, "error_statuses": [503]}]}
    assert (await admin("PUT", faults, json=rules)).status_code == 200
    try:
        async with running(make_bus()) as client:
            body = await call(client, "citizen.lookup", {"personal_id": "001203004567"})
    finally:
        await admin("DELETE", faults)
    assert body["error"]["code"] == "upstream.unavailable"
    assert body["error"]["retryable"] is True


async def test_expired_token_is_renewed_once(
    make_bus: Callable[..., Any], registry: Registry, stack: MockStack
) -> None:
    """When NGSP expires every token mid-session, the next call gets a 401, the bus fetches a
    fresh token and the call succeeds."""
    person = registry.citizens[1]
    async with running(make_bus()) as client:
        assert (await call(client, "citizen.lookup", {"personal_id": person.id}))["data"]["found"]
        before = (await admin("GET", f"{stack.urls['ngsp']}/__admin/stats")).json()["tokens_issued"]
        await admin("POST", f"{stack.urls['ngsp']}/__admin/tokens/expire")
        body = await call(client, "citizen.lookup", {"personal_id": person.id})
        after = (await admin("GET", f"{stack.urls['ngsp']}/__admin/stats")).json()["tokens_issued"]
    assert body["data"]["found"] is True
    assert after - before == 1


async def test_ngsp_throttle_is_upstream_unavailable_with_retry_after(
    settings_for: Callable[..., Settings], registry: Registry
) -> None:
    """NGSP's 429 reaches the caller as upstream.unavailable with its Retry-After."""
    from mocks.ngsp import NgspSettings

    with MockStack(ngsp=NgspSettings(throttle_per_minute=2)) as small:
        app = create_app(settings_for(bus_yaml(small)), environ=ENV)
        async with running(app) as client:  # the WSDL fetch at start-up is call 1
            replies = [
                await client.post(
                    "/v1/services/population/citizen.lookup",
                    json={"personal_id": registry.citizens[0].id},
                )
                for _ in range(3)
            ]
    assert replies[0].status_code == 200
    throttled = replies[-1]
    assert throttled.status_code == 503
    assert throttled.json()["error"]["code"] == "upstream.unavailable"
    assert 1 <= int(throttled.headers["retry-after"]) <= 60


FAULT = b"""<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"
               xmlns:dl="http://www.mic.gov.vn/dancu/1.0">
  <soap:Body><soap:Fault><faultcode>soap:Client</faultcode>
    <faultstring>Ngay sinh khong hop le</faultstring>
    <detail><dl:LoiChiTiet><dl:MaLoi>DC-400-DATE</dl:MaLoi>
      <dl:MoTaLoi>Ngay sinh khong hop le</dl:MoTaLoi></dl:LoiChiTiet></detail>
  </soap:Fault></soap:Body></soap:Envelope>"""


async def test_soap_fault_is_upstream_fault_with_its_codes(
    settings_for: Callable[..., Settings],
) -> None:
    """A SOAP Fault from the database is upstream.fault naming soap:Client and its MaLoi."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        if request.method == "GET":
            return httpx.Response(503)  # no live WSDL: the shipped copy is used
        return httpx.Response(500, content=FAULT, headers={"content-type": "text/xml"})

    text = bus_yaml(MockStack(urls={"ngsp": "http://ngsp.test"}))
    app = create_app(settings_for(text), environ=ENV, transport=httpx.MockTransport(handler))
    async with running(app) as client:
        body = await call(client, "citizen.lookup", {"personal_id": "001203004567"})
    assert body["error"]["code"] == "upstream.fault"
    assert "soap:Client" in body["error"]["message"]
    assert "DC-400-DATE" in body["error"]["message"]


async def test_raw_soap_exchange_is_captured_for_the_record(
    make_bus: Callable[..., Any], registry: Registry
) -> None:
    """The exchange record carries a keyed digest and the size of each raw SOAP request and
    reply: a lookup is one pair; a failed verify of two facts is 1 + (id alone + 2 facts)."""
    person = next(c for c in registry.citizens if c.birth_date_known)
    recorder = MemoryRecorder()
    async with running(make_bus(recorder=recorder)) as client:
        await call(client, "citizen.lookup", {"personal_id": person.id})
        await call(
            client,
            "citizen.verify",
            {"personal_id": person.id, "full_name": "Sai Tên", "birth_date": birth_date_of(person)},
        )
    lookup, verify = recorder.exchanges
    [soap] = lookup.upstream_exchanges
    assert soap["soap_action"].endswith("TraCuuThongTinCongDan")
    assert len(soap["request_hmac"]) == 64
    assert soap["reply_bytes"] > soap["request_bytes"] > 0
    assert len(verify.upstream_exchanges) == 4


async def test_digests_are_keyed_hashes_of_the_bytes_on_the_wire(
    settings_for: Callable[..., Settings],
) -> None:
    """The recorded request and reply digests are HMAC-SHA256 under LGSP_DIGEST_KEY of the exact
    bytes sent and received (not a re-serialisation), so they can be checked against a capture
    and cannot be reversed by hashing candidate ids."""
    wire: dict[str, bytes] = {}
    reply = FOUND_REPLY

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        if request.method == "GET":
            return httpx.Response(503)
        wire["request"] = request.content
        return httpx.Response(200, content=reply, headers={"content-type": "text/xml"})

    recorder = MemoryRecorder()
    settings = settings_for(bus_yaml(MockStack(urls={"ngsp": "http://ngsp.test"})))
    settings = settings.model_copy(update={"digest_key": SecretStr("k-digest")})
    app = create_app(
        settings, environ=ENV, transport=httpx.MockTransport(handler), recorder=recorder
    )
    async with running(app) as client:
        body = await call(client, "citizen.lookup", {"personal_id": "001203004567"})
    assert body["data"]["found"] is False
    [soap] = recorder.exchanges[0].upstream_exchanges
    key = b"k-digest"
    assert soap["request_hmac"] == hmac.new(key, wire["request"], hashlib.sha256).hexdigest()
    assert soap["reply_hmac"] == hmac.new(key, reply, hashlib.sha256).hexdigest()
    assert soap["request_bytes"] == len(wire["request"])
    assert hashlib.sha256(wire["request"]).hexdigest() not in repr(recorder.exchanges)


FOUND_REPLY = b"""<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"
               xmlns:dl="http://www.mic.gov.vn/dancu/1.0">
  <soap:Body><dl:CongdanCollection SoCongDan="0" GhiChu="Kh\xc3\xb4ng t\xc3\xacm th\xe1\xba\xa5y"
    ThoiDiemDuLieu="20261101000000"/></soap:Body></soap:Envelope>"""


async def test_verify_of_an_unknown_id_blames_the_id(make_bus: Callable[..., Any]) -> None:
    """Facts about an id the database does not know: the mismatch is the id, not the facts."""
    async with running(make_bus()) as client:
        body = await call(
            client,
            "citizen.verify",
            {"personal_id": "001299999999", "full_name": "Nguyễn Văn A", "gender": "male"},
        )
    assert body["data"] == {"match": False, "mismatched_fields": ["personal_id"]}


async def test_lookup_by_old_id(make_bus: Callable[..., Any], registry: Registry) -> None:
    """The old 9-digit id alone finds the citizen; an 8-digit one is refused with the reason."""
    person = next(c for c in registry.citizens if c.cmnd)
    async with running(make_bus()) as client:
        found = await call(client, "citizen.lookup", {"old_id": person.cmnd})
        bad = await call(client, "citizen.lookup", {"old_id": person.cmnd[:8]})
    assert found["data"]["citizen"]["personal_id"] == person.id
    [error] = bad["error"]["field_errors"]
    assert error["field"] == "old_id"
    assert "exactly 9 digits" in error["reason"]


def soap_upstream(damage: Callable[[etree._Element], None]) -> httpx.MockTransport:
    """NGSP answering with the population mock's own replies to what the bus sent, each passed
    through ``damage`` first; no live WSDL, so the shipped copy is used."""
    small = build_registry(households=20)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        if request.method == "GET":
            return httpx.Response(503)
        element = soap.parse_request(request.content)
        name = operations.operation_name(element)
        reply = operations.dispatch(name, element, small, "20261121090000")
        damage(reply)
        return httpx.Response(
            200, content=soap.envelope(reply), headers={"content-type": "text/xml"}
        )

    return httpx.MockTransport(handler)


def first_seeded_id() -> str:
    return build_registry(households=20).citizens[0].id


async def test_reply_read_by_the_compiled_plan_and_by_zeep_alike(
    settings_for: Callable[..., Settings],
) -> None:
    """The bus reads the database's replies with a plan compiled from the WSDL; a reply with
    xsi:type, which the plan leaves to zeep, gives the same answer."""
    text = bus_yaml(MockStack(urls={"ngsp": "http://ngsp.test"}))

    def typed(reply: etree._Element) -> None:
        reply[0].set(f"{{{XSI}}}type", "dl:CongDan")

    answers = []
    for damage in (lambda reply: None, typed):
        app = create_app(settings_for(text), environ=ENV, transport=soap_upstream(damage))
        async with running(app) as client:
            body = await call(client, "citizen.lookup", {"personal_id": first_seeded_id()})
        assert body["status"] == "ok", body
        answers.append(body["data"])
    assert answers[0]["found"] is True
    assert answers[0] == answers[1]


@pytest.mark.parametrize(
    ("operation", "damage"),
    [
        ("citizen.lookup", lambda reply: etree.SubElement(reply[0], f"{{{DL}}}Extra")),
        ("citizen.lookup", lambda reply: reply.set("SoCongDan", "one")),
        ("citizen.verify", lambda reply: setattr(reply[0], "text", "yes")),
    ],
)
async def test_a_reply_that_does_not_match_the_wsdl_is_a_bad_response(
    settings_for: Callable[..., Settings], operation: str, damage: Callable[..., None]
) -> None:
    """An unexpected element, an int that is not one, a boolean that is neither true nor false
    (zeep would have read it as false, a mismatch): upstream.bad_response, nothing quoted."""
    text = bus_yaml(MockStack(urls={"ngsp": "http://ngsp.test"}))
    app = create_app(settings_for(text), environ=ENV, transport=soap_upstream(damage))
    personal_id = first_seeded_id()
    async with running(app) as client:
        body = await call(client, operation, {"personal_id": personal_id})
    assert body["error"]["code"] == "upstream.bad_response", body
    assert "does not match its WSDL" in body["error"]["message"]
    assert personal_id not in json.dumps(body)


@pytest.mark.parametrize(
    "content",
    [
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "x">]>'
        b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
        b"<soap:Body/></soap:Envelope>",
        b"<soap:Envelope xmlns:soap='http://schemas.xmlsoap.org/soap/envelope/'><soap:Bo",
    ],
    ids=["doctype", "cut-short"],
)
async def test_a_reply_with_a_doctype_or_cut_short_is_a_bad_response(
    settings_for: Callable[..., Settings], content: bytes
) -> None:
    """Left to zeep, which refuses both: upstream.bad_response, not an internal error."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        if request.method == "GET":
            return httpx.Response(503)
        return httpx.Response(200, content=content, headers={"content-type": "text/xml"})

    text = bus_yaml(MockStack(urls={"ngsp": "http://ngsp.test"}))
    app = create_app(settings_for(text), environ=ENV, transport=httpx.MockTransport(handler))
    async with running(app) as client:
        body = await call(client, "citizen.lookup", {"personal_id": first_seeded_id()})
    assert body["error"]["code"] == "upstream.bad_response", body
    assert "could not be read" in body["error"]["message"]
