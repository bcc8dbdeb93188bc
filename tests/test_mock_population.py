"""The population mock is a faithful SOAP 1.1 service: seeded data, every operation over raw
HTTP and through zeep on the WSDL it serves (directly and through NGSP), faults with stable
codes, and no foothold for hostile XML."""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
import unicodedata
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import zeep
import zeep.exceptions
import zeep.proxy
import zeep.transports
from fastapi import FastAPI
from lxml import etree

from mocks.ngsp import NgspSettings
from mocks.ngsp import create_app as create_ngsp
from mocks.population import PopulationSettings, create_app, soap
from mocks.population.seed import QUAN_HE, Citizen, Registry, build_registry
from mocks.population.soap import DC, DL, SOAP_ENV, WSDL_DIR
from mocks.stack import DEMO_CONSUMER_KEY, DEMO_CONSUMER_SECRET, MockStack

pytestmark = pytest.mark.anyio

BASE_URL = "http://population.test"
BINDING = f"{{{DC}}}DanCuSoapBinding"
RESPONSE_SCHEMA = etree.XMLSchema(etree.parse(str(WSDL_DIR / "dancu-response.xsd")))
ID_PROVINCES = {"001", "079", "048", "031", "092", "026", "036", "038", "040"}

Fields = Mapping[str, "str | Mapping[str, str]"]


# -- helpers -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return create_app()


@pytest.fixture(scope="module")
def registry(app: FastAPI) -> Registry:
    registry: Registry = app.state.registry
    return registry


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE_URL) as client:
        yield client


def soap_request(operation: str, fields: Fields) -> bytes:
    """A SOAP 1.1 request for ``operation`` with ``fields`` in the order given."""
    root = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV, "dc": DC})
    element = etree.SubElement(
        etree.SubElement(root, f"{{{SOAP_ENV}}}Body"), f"{{{DC}}}{operation}"
    )
    for name, value in fields.items():
        child = etree.SubElement(element, f"{{{DC}}}{name}")
        if isinstance(value, str):
            child.text = value
        else:
            for sub_name, sub_value in value.items():
                etree.SubElement(child, f"{{{DC}}}{sub_name}").text = sub_value
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


async def call(
    client: httpx.AsyncClient, operation: str, fields: Fields
) -> tuple[int, etree._Element]:
    """POST one operation; the HTTP status and the element inside soap:Body."""
    reply = await client.post(
        "/soap",
        content=soap_request(operation, {"MaYeuCau": "req-0001", **fields}),
        headers={"SOAPAction": f'"{DC}/{operation}"', "Content-Type": "text/xml; charset=utf-8"},
    )
    return reply.status_code, body_of(reply.content)


def body_of(content: bytes) -> etree._Element:
    root = etree.fromstring(content)
    assert root.tag == f"{{{SOAP_ENV}}}Envelope"
    body = root.find(f"{{{SOAP_ENV}}}Body")
    assert body is not None
    (payload,) = body
    return payload


def collection(payload: etree._Element) -> etree._Element:
    """The reply, which must be dl:CongdanCollection itself (soap:Body/CongdanCollection)."""
    RESPONSE_SCHEMA.assertValid(payload)
    assert payload.tag == f"{{{DL}}}CongdanCollection"
    return payload


def ids_in(found: etree._Element) -> list[str]:
    return [str(e.findtext(f"{{{DL}}}SoDinhDanh")) for e in found.iterfind(f"{{{DL}}}CongDan")]


def verdict(payload: etree._Element) -> bool:
    RESPONSE_SCHEMA.assertValid(payload)
    assert payload.tag == f"{{{DL}}}KetQuaXacThucResponse"
    return payload.findtext(f"{{{DL}}}TonTai") == "true"


def fault_of(status: int, payload: etree._Element) -> tuple[str, str | None]:
    """The faultcode and MaLoi of a fault reply (HTTP 500 is part of the check)."""
    assert status == 500
    assert payload.tag == f"{{{SOAP_ENV}}}Fault"
    detail = payload.find(f"detail/{{{DL}}}LoiChiTiet")
    assert detail is not None
    RESPONSE_SCHEMA.assertValid(detail)
    return str(payload.findtext("faultcode")), detail.findtext(f"{{{DL}}}MaLoi")


def birth(person: Citizen) -> dict[str, str]:
    if person.birth_date_known:
        return {"NgayThangNam": person.birth_date.strftime("%Y%m%d")}
    return {"Nam": str(person.birth_date.year)}


def pick(registry: Registry, **wanted: object) -> Citizen:
    """The first seeded citizen whose attributes have the wanted values."""
    return next(c for c in registry.citizens if all(getattr(c, k) == v for k, v in wanted.items()))


def with_cmnd(registry: Registry) -> Citizen:
    return next(c for c in registry.citizens if c.cmnd)


RELATIVES = {
    "Cha": "father_id",
    "Me": "mother_id",
    "VoChong": "spouse_id",
    "NguoiDaiDien": "representative_id",
}


def big_household(registry: Registry) -> list[Citizen]:
    """A household of four or more whose records fill every kind of relative between them."""
    for household in registry.households:
        members = [registry.by_id[m] for m in household.member_ids]
        if len(members) >= 4 and all(
            any(getattr(m, attribute) for m in members) for attribute in RELATIVES.values()
        ):
            return members
    raise AssertionError("no such household in the seed")


# -- seed data ---------------------------------------------------------------------------------


def test_seed_is_deterministic() -> None:
    """The same seed gives the same citizens in the same order; another seed gives others."""
    first, again, other = build_registry(7, 60), build_registry(7, 60), build_registry(8, 60)
    assert first.citizens[:20] == again.citizens[:20]
    assert [c.id for c in first.citizens] == [c.id for c in again.citizens]
    assert [c.id for c in first.citizens[:20]] != [c.id for c in other.citizens[:20]]


def test_building_the_default_registry_is_fast() -> None:
    """1200 households (a few thousand citizens) are drawn well under a second."""
    started = time.monotonic()
    registry = build_registry(2026, 1200)
    assert time.monotonic() - started < 1.0
    assert 2500 < len(registry.citizens) < 8000


def test_personal_ids_are_valid_and_unique(registry: Registry) -> None:
    """Every id is 12 digits whose province, gender/century digit and year agree with the
    person; old ids are 9 digits, held only by people born before 2000; none repeats."""
    for c in registry.citizens:
        assert re.fullmatch(r"[0-9]{12}", c.id)
        assert c.id[:3] in ID_PROVINCES
        century = (c.birth_date.year // 100 - 19) * 2
        assert int(c.id[3]) == century + (0 if c.gender == "1" else 1)
        assert c.id[4:6] == f"{c.birth_date.year % 100:02d}"
        if c.cmnd is not None:
            assert re.fullmatch(r"[0-9]{9}", c.cmnd)
            assert c.birth_date.year < 2000
    assert len(registry.by_id) == len(registry.citizens)
    assert len(registry.by_cmnd) == sum(1 for c in registry.citizens if c.cmnd)
    older = [c for c in registry.citizens if c.birth_date.year < 2000]
    assert 0.35 < sum(1 for c in older if c.cmnd) / len(older) < 0.65


def test_names_are_nfc_vietnamese(registry: Registry) -> None:
    """Names carry their diacritics and are NFC, the form the bus sends."""
    for c in registry.citizens:
        assert unicodedata.is_normalized("NFC", c.name.full)
        assert c.name.full == " ".join(p for p in (c.name.family, c.name.middle, c.name.given) if p)
    families = {c.name.family for c in registry.citizens}
    assert {"Nguyễn", "Trần", "Lê", "Đặng", "Võ"} <= families
    assert any(not c.name.full.isascii() for c in registry.citizens[:10])
    assert any(not c.birth_date_known for c in registry.citizens), "some have only a birth year"


def test_household_structure(registry: Registry) -> None:
    """Each household has 1-7 members, one head (CH01) listed first; spouses are married to
    each other; children name household parents who are 20-45 years older and carry their
    father's family name."""
    assert len(registry.households) == 1200
    for household in registry.households:
        members = [registry.by_id[m] for m in household.member_ids]
        assert 1 <= len(members) <= 7
        assert [m.relation for m in members].count("CH01") == 1
        assert members[0].relation == "CH01"
        assert registry.head_of(members[-1].id) is members[0]
        assert registry.members_of(members[-1].id) == members
        for m in members:
            assert m.relation in QUAN_HE
            assert m.household_book == household.book
            if m.spouse_id is not None:
                spouse = registry.by_id[m.spouse_id]
                assert spouse.spouse_id == m.id
                assert m.marital_status == spouse.marital_status == "2"
                assert spouse.gender != m.gender
            for parent_id in (m.father_id, m.mother_id):
                if parent_id is not None:
                    assert parent_id in household.member_ids
                    gap = m.birth_date.year - registry.by_id[parent_id].birth_date.year
                    assert 20 <= gap <= 45
            if m.father_id is not None and m.relation in ("CH03", "CH06"):
                assert m.name.family == registry.by_id[m.father_id].name.family
    relations = {c.relation for c in registry.citizens}
    assert {"CH01", "CH02", "CH03", "CH04", "CH06"} <= relations


# -- every operation over raw SOAP -------------------------------------------------------------


async def test_lookup_finds_the_citizen(client: httpx.AsyncClient, registry: Registry) -> None:
    """TraCuuThongTinCongDan by id, name and birth date answers one valid CongDan."""
    person = big_household(registry)[1]
    status, payload = await call(
        client,
        "TraCuuThongTinCongDan",
        {"SoDinhDanh": person.id, "HoVaTen": person.name.full, "NgayThangNamSinh": birth(person)},
    )
    assert status == 200
    found = collection(payload)
    assert found.get("SoCongDan") == "1"
    assert found.get("ThoiDiemDuLieu") == "20261101000000"
    assert ids_in(found) == [person.id]
    citizen = found[0]
    assert citizen.findtext(f"{{{DL}}}HoVaTen/{{{DL}}}Ten") == person.name.given
    assert citizen.findtext(f"{{{DL}}}ChuHo/{{{DL}}}QuanHe") == person.relation
    head = registry.head_of(person.id)
    assert head is not None
    assert citizen.findtext(f"{{{DL}}}ChuHo/{{{DL}}}SoDinhDanh") == head.id
    assert citizen.findtext(f"{{{DL}}}SoSoHoKhau") == person.household_book


async def test_lookup_by_old_id_card(client: httpx.AsyncClient, registry: Registry) -> None:
    """TraCuuThongTinCongDan also finds a citizen by the 9-digit SoCMND alone."""
    person = with_cmnd(registry)
    status, payload = await call(client, "TraCuuThongTinCongDan", {"SoCMND": str(person.cmnd)})
    assert status == 200
    assert ids_in(collection(payload)) == [person.id]


@pytest.mark.parametrize("wrong", ["id", "name", "birth"])
async def test_lookup_not_found_is_an_empty_collection(
    client: httpx.AsyncClient, registry: Registry, wrong: str
) -> None:
    """An unknown id, or a name or birth date that does not match, answers SoCongDan="0"."""
    person = registry.citizens[0]
    fields: dict[str, str | Mapping[str, str]] = {
        "SoDinhDanh": "001099000000" if wrong == "id" else person.id,
        "HoVaTen": person.name.full + (" X" if wrong == "name" else ""),
        "NgayThangNamSinh": {"Nam": "1899"} if wrong == "birth" else birth(person),
    }
    status, payload = await call(client, "TraCuuThongTinCongDan", fields)
    assert status == 200
    found = collection(payload)
    assert (found.get("SoCongDan"), found.get("GhiChu")) == (
        "0",
        "Không tìm thấy thông tin công dân",
    )
    assert len(found) == 0


async def test_verify_true_when_every_fact_matches(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    """XacThucThongTinCongDan is true when id, old id, name, birth date and gender all match."""
    person = with_cmnd(registry)
    status, payload = await call(
        client,
        "XacThucThongTinCongDan",
        {
            "SoDinhDanh": person.id,
            "SoCMND": str(person.cmnd),
            "HoVaTen": person.name.full,
            "NgayThangNamSinh": {"Nam": str(person.birth_date.year)},
            "GioiTinh": person.gender,
        },
    )
    assert status == 200
    assert verdict(payload) is True


@pytest.mark.parametrize("wrong", ["id", "gender", "name", "day", "cmnd"])
async def test_verify_false_when_one_fact_differs(
    client: httpx.AsyncClient, registry: Registry, wrong: str
) -> None:
    """XacThucThongTinCongDan is false for an unknown id or any one fact that differs."""
    person = pick(registry, birth_date_known=True, relation="CH01", gender="1")
    other = next(c for c in registry.citizens if c.cmnd and c is not person)
    day_before = person.birth_date - timedelta(days=1)
    fields: dict[str, str | Mapping[str, str]] = {
        "SoDinhDanh": "001099000000" if wrong == "id" else person.id,
        "HoVaTen": person.name.full,
        "NgayThangNamSinh": birth(person),
        "GioiTinh": person.gender,
    }
    if wrong == "cmnd":
        fields = {"SoDinhDanh": person.id, "SoCMND": str(other.cmnd)}
    elif wrong == "name":  # the same letters, decomposed: names are compared as sent
        fields["HoVaTen"] = unicodedata.normalize("NFD", person.name.full)
    elif wrong == "day":
        fields["NgayThangNamSinh"] = {"NgayThangNam": day_before.strftime("%Y%m%d")}
    elif wrong == "gender":
        fields["GioiTinh"] = "2"
    status, payload = await call(client, "XacThucThongTinCongDan", fields)
    assert status == 200
    assert verdict(payload) is False


async def test_verify_year_only_citizen(client: httpx.AsyncClient, registry: Registry) -> None:
    """A citizen known only by birth year matches the year but never a full date."""
    person = pick(registry, birth_date_known=False)
    year = {"SoDinhDanh": person.id, "NgayThangNamSinh": {"Nam": str(person.birth_date.year)}}
    day = {
        "SoDinhDanh": person.id,
        "NgayThangNamSinh": {"NgayThangNam": person.birth_date.strftime("%Y%m%d")},
    }
    assert verdict((await call(client, "XacThucThongTinCongDan", year))[1]) is True
    assert verdict((await call(client, "XacThucThongTinCongDan", day))[1]) is False
    _, payload = await call(client, "TraCuuThongTinCongDan", {"SoDinhDanh": person.id})
    birth_element = collection(payload)[0].find(f"{{{DL}}}NgayThangNamSinh")
    assert birth_element is not None
    assert [etree.QName(e).localname for e in birth_element] == ["Nam"]


async def test_head_of_household(client: httpx.AsyncClient, registry: Registry) -> None:
    """XacMinhThongTinChuHo for any member answers the head; for an unknown id, nothing."""
    members = big_household(registry)
    status, payload = await call(client, "XacMinhThongTinChuHo", {"SoDinhDanh": members[-1].id})
    assert status == 200
    head = collection(payload)
    assert ids_in(head) == [members[0].id]
    assert head[0].findtext(f"{{{DL}}}ChuHo/{{{DL}}}QuanHe") == "CH01"
    _, payload = await call(client, "XacMinhThongTinChuHo", {"SoDinhDanh": "001099000000"})
    assert collection(payload).get("SoCongDan") == "0"


async def test_household_members(client: httpx.AsyncClient, registry: Registry) -> None:
    """CungCapThongTinHoGiaDinh for any member answers every member, the head first, each
    naming the head, their relation to them, and their parents, spouse and representative."""
    members = big_household(registry)
    status, payload = await call(client, "CungCapThongTinHoGiaDinh", {"SoDinhDanh": members[2].id})
    assert status == 200
    found = collection(payload)
    assert found.get("SoCongDan") == str(len(members))
    assert ids_in(found) == [m.id for m in members]
    for element, member in zip(found, members, strict=True):
        assert element.findtext(f"{{{DL}}}ChuHo/{{{DL}}}SoDinhDanh") == members[0].id
        assert element.findtext(f"{{{DL}}}ChuHo/{{{DL}}}QuanHe") == member.relation
        for tag, attribute in RELATIVES.items():
            relative_id = getattr(member, attribute)
            assert element.findtext(f"{{{DL}}}{tag}/{{{DL}}}SoDinhDanh") == relative_id
            if relative_id is not None:
                relative = registry.by_id[relative_id]
                assert element.findtext(f"{{{DL}}}{tag}/{{{DL}}}HoVaTen") == relative.name.full


async def test_current_residence(client: httpx.AsyncClient, registry: Registry) -> None:
    """XacMinhThongTinNoiOHienTai is true for the person's address and false for another ward."""
    person = registry.citizens[3]
    address = person.current
    claim = {
        "MaTinhThanh": address.province,
        "MaQuanHuyen": address.district,
        "MaPhuongXa": address.ward,
        "ChiTiet": address.detail,
    }
    right = {"SoDinhDanh": person.id, "NoiOHienTai": claim}
    wrong = {"SoDinhDanh": person.id, "NoiOHienTai": {**claim, "MaPhuongXa": "99999"}}
    assert verdict((await call(client, "XacMinhThongTinNoiOHienTai", right))[1]) is True
    assert verdict((await call(client, "XacMinhThongTinNoiOHienTai", wrong))[1]) is False


async def test_marital_status(client: httpx.AsyncClient, registry: Registry) -> None:
    """XacMinhTinhTrangHonNhan is true for the recorded status only."""
    person = pick(registry, marital_status="2")
    for code in "1234":
        fields = {"SoDinhDanh": person.id, "TinhTrangHonNhan": code}
        assert verdict((await call(client, "XacMinhTinhTrangHonNhan", fields))[1]) is (code == "2")


# -- the shape of replies --------------------------------------------------------------------

COLLECTION_OPERATIONS = (
    "TraCuuThongTinCongDan",
    "XacMinhThongTinChuHo",
    "CungCapThongTinHoGiaDinh",
)
VERIFY_OPERATIONS = (
    "XacThucThongTinCongDan",
    "XacMinhThongTinNoiOHienTai",
    "XacMinhTinhTrangHonNhan",
)


@pytest.mark.parametrize("operation", COLLECTION_OPERATIONS)
async def test_collection_is_the_body_element(
    client: httpx.AsyncClient, registry: Registry, operation: str
) -> None:
    """soap:Body holds dl:CongdanCollection itself, with no per-operation wrapper around it."""
    reply = await client.post(
        "/soap",
        content=soap_request(operation, {"MaYeuCau": "1", "SoDinhDanh": registry.citizens[0].id}),
    )
    body = etree.fromstring(reply.content).find(f"{{{SOAP_ENV}}}Body")
    assert body is not None
    assert [child.tag for child in body] == [f"{{{DL}}}CongdanCollection"]


def test_wsdl_outputs_name_the_reply_elements() -> None:
    """The WSDL's output parts are dl:CongdanCollection for the three collection operations and
    dl:KetQuaXacThucResponse for the three verifications, and no wrapper element is declared."""
    wsdl = etree.parse(str(WSDL_DIR / "dancu.wsdl"))
    ns = {"wsdl": "http://schemas.xmlsoap.org/wsdl/", "xsd": "http://www.w3.org/2001/XMLSchema"}
    outputs = {
        op.get("name"): str(op.find("wsdl:output", ns).get("message")).removeprefix("dc:")
        for op in wsdl.iterfind("wsdl:portType/wsdl:operation", ns)
    }
    parts = {
        m.get("name"): m.find("wsdl:part", ns).get("element")
        for m in wsdl.iterfind("wsdl:message", ns)
    }
    assert {op: parts[message] for op, message in outputs.items()} == {
        **dict.fromkeys(COLLECTION_OPERATIONS, "dl:CongdanCollection"),
        **dict.fromkeys(VERIFY_OPERATIONS, "dl:KetQuaXacThucResponse"),
    }
    declared = {e.get("name") for e in wsdl.iterfind(".//xsd:schema/xsd:element", ns)}
    assert not {f"{op}Response" for op in COLLECTION_OPERATIONS} & declared


# -- zeep, a real SOAP client ------------------------------------------------------------------


def _refuse(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"zeep must load the WSDL the mock served, from disk, not {request.url}")


async def served_wsdl(client: httpx.AsyncClient, url: str, tmp_path: Path) -> tuple[str, bytes]:
    """GET ``url`` (a ``?wsdl``) through ``client``; a file zeep can load, and the bytes."""
    reply = await client.get(url)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/xml")
    path = tmp_path / "served.wsdl"
    path.write_bytes(reply.content)
    return str(path), reply.content


@asynccontextmanager
async def zeep_proxy(
    wsdl: str, http: httpx.AsyncClient
) -> AsyncIterator[zeep.proxy.AsyncServiceProxy]:
    """An async zeep proxy on ``wsdl`` that posts through ``http`` to the WSDL's soap:address."""
    with httpx.Client(transport=httpx.MockTransport(_refuse)) as wsdl_client:
        transport = zeep.transports.AsyncTransport(client=http, wsdl_client=wsdl_client)
        client = zeep.AsyncClient(wsdl=wsdl, transport=transport)
        try:
            # Not client.create_service(): on zeep 4.3 it returns a sync proxy even for an
            # AsyncClient (python-zeep issues #1168, #1288), so build the async proxy directly.
            port = client.wsdl.services["DanCuService"].ports["DanCuPort"]
            address = port.binding_options["address"]
            binding = client.wsdl.bindings[BINDING]
            yield zeep.proxy.AsyncServiceProxy(client, binding, address=address)
        finally:
            await transport.aclose()


@pytest.fixture
async def zeep_service(
    app: FastAPI, client: httpx.AsyncClient, tmp_path: Path
) -> AsyncIterator[zeep.proxy.AsyncServiceProxy]:
    """zeep on the WSDL the mock serves at /soap?wsdl, posting to the address it names."""
    wsdl, _ = await served_wsdl(client, "/soap?wsdl", tmp_path)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app))
    async with zeep_proxy(wsdl, http) as service:
        assert service._binding_options["address"] == f"{BASE_URL}/soap"
        yield service


async def test_zeep_calls_every_operation(
    zeep_service: zeep.proxy.AsyncServiceProxy, registry: Registry
) -> None:
    """zeep, loading only the WSDL the mock serves, calls all six operations and gets typed
    results."""
    members = big_household(registry)
    person = members[1]
    common = {"MaYeuCau": "zeep-1", "MaDVC": "1.000001", "MaCanBo": "cb01", "MaDonVi": "000.00"}

    found = await zeep_service.TraCuuThongTinCongDan(
        **common, SoDinhDanh=person.id, HoVaTen=person.name.full, NgayThangNamSinh=birth(person)
    )
    assert isinstance(found.SoCongDan, int)
    assert (found.SoCongDan, found.GhiChu, found.ThoiDiemDuLieu) == (
        1,
        "Thành công",
        "20261101000000",
    )
    (citizen,) = found.CongDan
    assert (citizen.SoDinhDanh, citizen.HoVaTen.Ten) == (person.id, person.name.given)
    assert citizen.NgayThangNamSinh.Nam == str(person.birth_date.year)
    assert citizen.ChuHo.SoDinhDanh == members[0].id
    assert citizen.ChuHo.QuanHe == person.relation
    assert citizen.NoiOHienTai.MaPhuongXa == person.current.ward

    missing = await zeep_service.TraCuuThongTinCongDan(**common, SoDinhDanh="001099000000")
    assert (missing.SoCongDan, missing.CongDan) == (0, [])

    exists = await zeep_service.XacThucThongTinCongDan(
        **common, SoDinhDanh=person.id, HoVaTen=person.name.full, GioiTinh=person.gender
    )
    assert exists is True
    wrong = await zeep_service.XacThucThongTinCongDan(**common, SoDinhDanh=person.id, HoVaTen="X")
    assert wrong is False

    head = await zeep_service.XacMinhThongTinChuHo(**common, SoDinhDanh=person.id)
    assert head.SoCongDan == 1
    assert [(c.SoDinhDanh, c.ChuHo.QuanHe) for c in head.CongDan] == [(members[0].id, "CH01")]

    household = await zeep_service.CungCapThongTinHoGiaDinh(**common, SoDinhDanh=person.id)
    assert household.SoCongDan == len(members)
    assert [c.SoDinhDanh for c in household.CongDan] == [m.id for m in members]

    address = person.current
    claim = {
        "MaTinhThanh": address.province,
        "MaQuanHuyen": address.district,
        "MaPhuongXa": address.ward,
    }
    lives_there = await zeep_service.XacMinhThongTinNoiOHienTai(
        **common, SoDinhDanh=person.id, NoiOHienTai=claim
    )
    assert lives_there is True
    elsewhere = await zeep_service.XacMinhThongTinNoiOHienTai(
        **common, SoDinhDanh=person.id, NoiOHienTai={**claim, "MaPhuongXa": "99999"}
    )
    assert elsewhere is False

    married = await zeep_service.XacMinhTinhTrangHonNhan(
        **common, SoDinhDanh=person.id, TinhTrangHonNhan=person.marital_status
    )
    assert married is True
    other = "1" if person.marital_status != "1" else "2"
    not_married = await zeep_service.XacMinhTinhTrangHonNhan(
        **common, SoDinhDanh=person.id, TinhTrangHonNhan=other
    )
    assert not_married is False


async def test_zeep_sees_faults(zeep_service: zeep.proxy.AsyncServiceProxy) -> None:
    """A refused request reaches zeep as a Fault whose detail carries the MaLoi."""
    with pytest.raises(zeep.exceptions.Fault) as raised:
        await zeep_service.TraCuuThongTinCongDan(MaYeuCau="z", SoDinhDanh="12345")
    assert raised.value.code == "soap:Client"
    assert raised.value.detail.findtext(f"{{{DL}}}LoiChiTiet/{{{DL}}}MaLoi") == "DC-400-ID"


def soap_address(wsdl: bytes) -> str:
    (address,) = etree.fromstring(wsdl).iter("{http://schemas.xmlsoap.org/wsdl/soap/}address")
    return str(address.get("location"))


async def test_served_wsdl_loads_in_zeep_with_the_request_host(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """GET /soap?wsdl answers a WSDL zeep loads, whose address is the host the request used."""
    reply = await client.get("/soap?wsdl", headers={"Host": "ngsp.example.test:8443"})
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/xml")
    path = tmp_path / "served.wsdl"
    path.write_bytes(reply.content)
    loaded = zeep.Client(wsdl=str(path))
    port = loaded.wsdl.services["DanCuService"].ports["DanCuPort"]
    assert port.binding_options["address"] == "http://ngsp.example.test:8443/soap"
    assert set(port.binding.all()) == {*COLLECTION_OPERATIONS, *VERIFY_OPERATIONS}
    shipped = (WSDL_DIR / "dancu.wsdl").read_text(encoding="utf-8")
    assert 'location="http://localhost/soap"' in shipped


@pytest.mark.parametrize(
    ("headers", "address"),
    [
        (
            {
                "X-Forwarded-Host": "ngsp.example.test:8243",
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Prefix": "/dancu/1.0",
            },
            "https://ngsp.example.test:8243/dancu/1.0/soap",
        ),
        (
            {"X-Forwarded-Host": "a.test, b.test", "X-Forwarded-Prefix": "/dancu/1.0/"},
            "http://a.test/dancu/1.0/soap",
        ),
        ({"X-Forwarded-Host": "ngsp.test"}, "http://ngsp.test/soap"),
        (
            {"X-Forwarded-Host": "ngsp.test", "X-Forwarded-Proto": "javascript"},
            "http://ngsp.test/soap",
        ),
        (
            {"X-Forwarded-Host": "ngsp.test", "X-Forwarded-Prefix": 'x"><evil'},
            "http://ngsp.test/soap",
        ),
        ({"X-Forwarded-Host": "evil.test/path?q"}, f"{BASE_URL}/soap"),
        ({"X-Forwarded-Proto": "https", "X-Forwarded-Prefix": "/dancu/1.0"}, f"{BASE_URL}/soap"),
    ],
    ids=[
        "all-three",
        "first-of-a-list",
        "host-only",
        "bad-proto",
        "bad-prefix",
        "bad-host",
        "no-host",
    ],
)
async def test_wsdl_address_follows_forwarded_headers(
    client: httpx.AsyncClient, headers: dict[str, str], address: str
) -> None:
    """With X-Forwarded-Host the WSDL's address is {proto}://{host}{prefix}/soap; values that
    are not a scheme, a bare host or a path are ignored; without a host it is the request URL."""
    reply = await client.get("/soap?wsdl", headers=headers)
    assert soap_address(reply.content) == address


@asynccontextmanager
async def population_behind_ngsp(
    app: FastAPI, base_url: str
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An NGSP mock whose dancu backend is ``app`` in process, and a client that calls NGSP."""
    ngsp = create_ngsp(
        NgspSettings(consumers={"key": "secret"}, backends={"dancu": "http://population.backend"}),
        transport=httpx.ASGITransport(app),
    )
    async with (
        ngsp.router.lifespan_context(ngsp),
        httpx.AsyncClient(transport=httpx.ASGITransport(ngsp), base_url=base_url) as client,
    ):
        token = await client.post(
            "/token", data={"grant_type": "client_credentials"}, auth=("key", "secret")
        )
        client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        yield ngsp, client


async def test_wsdl_through_ngsp_names_ngsp_and_zeep_follows_it(
    app: FastAPI, registry: Registry, tmp_path: Path
) -> None:
    """The WSDL fetched through NGSP names NGSP's /dancu/1.0/soap, not the backend, and zeep
    following that address reaches the mock through NGSP."""
    gateway = "https://ngsp.example.test:8243"
    async with population_behind_ngsp(app, gateway) as (ngsp, client):
        wsdl, content = await served_wsdl(client, "/dancu/1.0/soap?wsdl", tmp_path)
        assert soap_address(content) == f"{gateway}/dancu/1.0/soap"
        authorization = client.headers["Authorization"]

        async def add_token(request: httpx.Request) -> None:  # zeep replaces default headers
            request.headers["Authorization"] = authorization

        # zeep posts to NGSP only, with the bearer token; the backend is out of its reach.
        through_ngsp = httpx.AsyncClient(
            transport=httpx.ASGITransport(ngsp), event_hooks={"request": [add_token]}
        )
        async with zeep_proxy(wsdl, through_ngsp) as service:
            person = registry.citizens[0]
            found = await service.TraCuuThongTinCongDan(MaYeuCau="ngsp-1", SoDinhDanh=person.id)
        stats = (await client.get("/__admin/stats")).json()
    assert [c.SoDinhDanh for c in found.CongDan] == [person.id]
    assert stats["requests"] == {"key": 2}  # the WSDL and the call, both through NGSP


@pytest.mark.live
def test_wsdl_through_the_mock_stack_names_ngsp() -> None:
    """Over real HTTP in MockStack, the WSDL fetched at {ngsp}/dancu/1.0/soap?wsdl names
    {ngsp}/dancu/1.0/soap, while fetched from the backend directly it names the backend."""
    with MockStack(population=PopulationSettings(households=3)) as stack:
        ngsp = stack.urls["ngsp"]
        token = httpx.post(
            f"{ngsp}/token",
            data={"grant_type": "client_credentials"},
            auth=(DEMO_CONSUMER_KEY, DEMO_CONSUMER_SECRET),
        ).json()["access_token"]
        through = httpx.get(
            f"{ngsp}/dancu/1.0/soap?wsdl", headers={"Authorization": f"Bearer {token}"}
        )
        direct = httpx.get(f"{stack.urls['population']}/soap?wsdl")
    assert soap_address(through.content) == f"{ngsp}/dancu/1.0/soap"
    assert soap_address(direct.content) == f"{stack.urls['population']}/soap"


def _shape(element: etree._Element) -> tuple[object, ...]:
    children = tuple(_shape(c) for c in element if isinstance(c.tag, str))
    return (element.tag, sorted(element.attrib.items()), (element.text or "").strip(), children)


@pytest.mark.parametrize("name", ["dancu-request", "dancu-response"])
async def test_served_xsds_are_the_inline_schemas(client: httpx.AsyncClient, name: str) -> None:
    """?xsd=dancu-request|dancu-response answers the shipped XSD, identical to the WSDL's inline
    schema of the same namespace."""
    reply = await client.get(f"/soap?xsd={name}")
    assert reply.status_code == 200
    assert reply.content == (WSDL_DIR / f"{name}.xsd").read_bytes()
    xsd = etree.fromstring(reply.content)
    wsdl = etree.parse(str(WSDL_DIR / "dancu.wsdl"))
    (inline,) = [
        s
        for s in wsdl.iter("{http://www.w3.org/2001/XMLSchema}schema")
        if s.get("targetNamespace") == xsd.get("targetNamespace")
    ]
    assert _shape(inline) == _shape(xsd)


async def test_unknown_document_and_health(client: httpx.AsyncClient) -> None:
    """GET /soap without ?wsdl or a known ?xsd is a 404; /health reports the registry size."""
    assert (await client.get("/soap?xsd=other")).status_code == 404
    health = (await client.get("/health")).json()
    assert health["status"] == "ok"
    assert health["households"] == 1200


def _rules(path: str, status: int) -> str:
    return json.dumps([{"path": path, "error_rate": 1, "error_statuses": [status]}])


async def test_start_up_faults_of_this_mock_come_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """LGSP_MOCK_FAULTS_POPULATION rules apply ahead of the shared LGSP_MOCK_FAULTS ones, and
    the NGSP mock's own variable does not reach this mock."""
    monkeypatch.setenv("LGSP_MOCK_FAULTS_POPULATION", _rules("/health", 418))
    monkeypatch.setenv("LGSP_MOCK_FAULTS", _rules("*", 503))
    monkeypatch.setenv("LGSP_MOCK_FAULTS_NGSP", _rules("*", 502))
    app = create_app(PopulationSettings(households=3))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE_URL) as client:
        health = await client.get("/health")
        wsdl = await client.get("/soap?wsdl")
        rules = (await client.get("/__admin/faults")).json()["rules"]
    assert (health.status_code, wsdl.status_code) == (418, 503)
    assert [(r["path"], r["error_statuses"]) for r in rules] == [("/health", [418]), ("*", [503])]


def test_bad_start_up_faults_of_this_mock_stop_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rules in LGSP_MOCK_FAULTS_POPULATION that are not valid stop create_app, naming it."""
    monkeypatch.setenv("LGSP_MOCK_FAULTS_POPULATION", '[{"reset_rate": 2}]')
    with pytest.raises(ValueError, match="LGSP_MOCK_FAULTS_POPULATION"):
        create_app(PopulationSettings(households=3))


# -- faults ------------------------------------------------------------------------------------

ENVELOPE = (
    f'<soap:Envelope xmlns:soap="{SOAP_ENV}" xmlns:dc="{DC}">'
    "<soap:Body>{}</soap:Body></soap:Envelope>"
)
VALID_ID = "001090123456"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param(b"<soap:Envelope><unclosed>", "DC-400-XML", id="malformed"),
        pytest.param(b"", "DC-400-XML", id="empty"),
        pytest.param(b"<hello/>", "DC-400-SOAP", id="not-an-envelope"),
        pytest.param(
            b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body/></e:Envelope>',
            "DC-400-SOAP",
            id="soap-1.2",
        ),
        pytest.param(ENVELOPE.format(""), "DC-400-SOAP", id="empty-body"),
        pytest.param(
            ENVELOPE.format("<dc:XoaCongDan><dc:MaYeuCau>1</dc:MaYeuCau></dc:XoaCongDan>"),
            "DC-400-OP",
            id="unknown-operation",
        ),
        pytest.param(
            ENVELOPE.format(
                f'<TraCuuThongTinCongDan xmlns="http://example.test"><SoDinhDanh>{VALID_ID}'
                "</SoDinhDanh></TraCuuThongTinCongDan>"
            ),
            "DC-400-OP",
            id="operation-in-another-namespace",
        ),
        pytest.param(
            ENVELOPE.format(
                f"<dc:TraCuuThongTinCongDan><dc:SoDinhDanh>{VALID_ID}</dc:SoDinhDanh>"
                "</dc:TraCuuThongTinCongDan>"
            ),
            "DC-400-MAYEUCAU",
            id="missing-MaYeuCau",
        ),
        pytest.param(
            ENVELOPE.format(
                "<dc:TraCuuThongTinCongDan><dc:MaYeuCau>1</dc:MaYeuCau>"
                "<dc:HoVaTen>Nguyễn Văn An</dc:HoVaTen></dc:TraCuuThongTinCongDan>"
            ),
            "DC-400-KEY",
            id="no-key",
        ),
        pytest.param(
            ENVELOPE.format(
                "<dc:TraCuuThongTinCongDan><dc:MaYeuCau>1</dc:MaYeuCau>"
                "<dc:SoDinhDanh>00109012345</dc:SoDinhDanh></dc:TraCuuThongTinCongDan>"
            ),
            "DC-400-ID",
            id="id-of-11-digits",
        ),
        pytest.param(
            ENVELOPE.format(
                "<dc:XacThucThongTinCongDan><dc:MaYeuCau>1</dc:MaYeuCau>"
                "<dc:SoCMND>12345678X</dc:SoCMND></dc:XacThucThongTinCongDan>"
            ),
            "DC-400-ID",
            id="cmnd-not-digits",
        ),
        pytest.param(
            ENVELOPE.format(
                f"<dc:TraCuuThongTinCongDan><dc:MaYeuCau>1</dc:MaYeuCau><dc:SoDinhDanh>{VALID_ID}"
                "</dc:SoDinhDanh><dc:NgayThangNamSinh><dc:NgayThangNam>19900231</dc:NgayThangNam>"
                "</dc:NgayThangNamSinh></dc:TraCuuThongTinCongDan>"
            ),
            "DC-400-DATE",
            id="no-such-day",
        ),
        pytest.param(
            ENVELOPE.format(
                f"<dc:TraCuuThongTinCongDan><dc:SoDinhDanh>{VALID_ID}</dc:SoDinhDanh>"
                "<dc:MaYeuCau>1</dc:MaYeuCau></dc:TraCuuThongTinCongDan>"
            ),
            "DC-400-SCHEMA",
            id="fields-out-of-order",
        ),
        pytest.param(
            ENVELOPE.format(
                f"<dc:TraCuuThongTinCongDan><MaYeuCau>1</MaYeuCau><SoDinhDanh>{VALID_ID}"
                "</SoDinhDanh></dc:TraCuuThongTinCongDan>"
            ),
            "DC-400-SCHEMA",
            id="unqualified-fields",
        ),
        pytest.param(
            ENVELOPE.format(
                f"<dc:XacMinhTinhTrangHonNhan><dc:MaYeuCau>1</dc:MaYeuCau><dc:SoDinhDanh>{VALID_ID}"
                "</dc:SoDinhDanh></dc:XacMinhTinhTrangHonNhan>"
            ),
            "DC-400-SCHEMA",
            id="claim-missing",
        ),
    ],
)
async def test_bad_requests_are_client_faults(
    client: httpx.AsyncClient, body: str | bytes, code: str
) -> None:
    """Each kind of bad request is an HTTP 500 soap:Client fault with its own MaLoi."""
    content = body.encode() if isinstance(body, str) else body
    reply = await client.post("/soap", content=content)
    assert fault_of(reply.status_code, body_of(reply.content)) == ("soap:Client", code)


async def test_soap_action_must_name_the_body_operation(client: httpx.AsyncClient) -> None:
    """A SOAPAction naming another operation than the body's is refused; an empty one is not."""
    content = soap_request("TraCuuThongTinCongDan", {"MaYeuCau": "1", "SoDinhDanh": VALID_ID})
    wrong = await client.post("/soap", content=content, headers={"SOAPAction": f"{DC}/XoaCongDan"})
    assert fault_of(wrong.status_code, body_of(wrong.content)) == ("soap:Client", "DC-400-ACTION")
    empty = await client.post("/soap", content=content, headers={"SOAPAction": '""'})
    assert empty.status_code == 200


async def test_mock_failure_is_a_server_fault(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A failure inside the mock is a soap:Server fault (DC-500-SERVER) that leaks no detail."""
    from mocks.population import operations

    def broken(*_: object) -> etree._Element:
        raise RuntimeError("internal detail")

    monkeypatch.setitem(operations.OPERATIONS, "TraCuuThongTinCongDan", broken)
    status, payload = await call(client, "TraCuuThongTinCongDan", {"SoDinhDanh": VALID_ID})
    assert fault_of(status, payload) == ("soap:Server", "DC-500-SERVER")
    assert b"internal detail" not in etree.tostring(payload)


# -- hostile XML and size ----------------------------------------------------------------------

SECRET = "s3cr3t-9f4c2e7a-population-mock"


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text(SECRET, encoding="utf-8")
    return path


class BaitServer:
    """A loopback HTTP server that counts every request and answers with the secret."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                body = SECRET.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/x"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture(scope="module")
def bait_server() -> Iterator[BaitServer]:
    server = BaitServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def bait(bait_server: BaitServer) -> BaitServer:
    """The bait server, its count of hits starting from zero."""
    bait_server.hits.clear()
    return bait_server


class RecordingResolver(etree.Resolver):
    """Records every external resource (file, URL, DTD) a parser asks for, resolving none.

    libxml2 opens files and URLs in C, where a spy on ``builtins.open`` or ``os.open`` sees
    nothing; a resolver registered on the parser is asked before any such load."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def resolve(self, system_url: str, public_id: str, context: object) -> None:
        self.urls.append(system_url)


@pytest.fixture
def parser_spy() -> Iterator[RecordingResolver]:
    """A RecordingResolver on the parser the mock's parse_request really uses."""
    spy = RecordingResolver()
    soap._PARSER.resolvers.add(spy)
    try:
        yield spy
    finally:
        soap._PARSER.resolvers.remove(spy)


def _xxe(url: str) -> str:
    return f'<?xml version="1.0"?>\n<!DOCTYPE soap:Envelope [<!ENTITY xxe SYSTEM "{url}">]>' + (
        ENVELOPE.format(
            "<dc:TraCuuThongTinCongDan><dc:MaYeuCau>&xxe;</dc:MaYeuCau>"
            f"<dc:SoDinhDanh>{VALID_ID}</dc:SoDinhDanh></dc:TraCuuThongTinCongDan>"
        )
    )


def _parameter_entity(url: str) -> str:
    return f'<!DOCTYPE x [<!ENTITY % ext SYSTEM "{url}"> %ext;]>' + ENVELOPE.format(
        "<dc:TraCuuThongTinCongDan/>"
    )


# lol0 is "lol"; each next entity is ten of the one before: lol9 would be 10^9 "lol"s.
BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol0 "lol">'
    + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    + "]>"
    + ENVELOPE.format(
        "<dc:TraCuuThongTinCongDan><dc:MaYeuCau>&lol9;</dc:MaYeuCau></dc:TraCuuThongTinCongDan>"
    )
)


def hostile(kind: str, secret_file: Path, bait: BaitServer) -> str:
    return {
        "xxe-file": lambda: _xxe(secret_file.as_uri()),
        "xxe-http": lambda: _xxe(bait.url),
        "parameter-entity-file": lambda: _parameter_entity(secret_file.as_uri()),
        "parameter-entity-http": lambda: _parameter_entity(bait.url),
        "billion-laughs": lambda: BILLION_LAUGHS,
    }[kind]()


@pytest.mark.parametrize("byte_search", ["on", "off"])
@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
@pytest.mark.parametrize(
    "kind",
    ["xxe-file", "xxe-http", "parameter-entity-file", "parameter-entity-http", "billion-laughs"],
)
async def test_hostile_xml_is_refused_quickly_and_unread(
    client: httpx.AsyncClient,
    secret_file: Path,
    bait: BaitServer,
    parser_spy: RecordingResolver,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    encoding: str,
    byte_search: str,
) -> None:
    """XXE and entity-expansion requests get a DC-400-DTD fault within a second, and neither
    the referenced file nor the bait URL is ever asked for, even with the byte search for
    declarations switched off so that the parser meets them."""
    text = hostile(kind, secret_file, bait)
    if encoding == "utf-16":  # a search for the ASCII bytes of "<!DOCTYPE" would miss these
        text = text.replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-16"?>')
    if byte_search == "off":
        monkeypatch.setattr(soap, "_DECLARATIONS", frozenset())
    started = time.monotonic()
    reply = await client.post("/soap", content=text.encode(encoding))
    elapsed = time.monotonic() - started
    assert elapsed < 1.0
    assert parser_spy.urls == []
    assert bait.hits == []
    assert SECRET.encode() not in reply.content
    faultcode, code = fault_of(reply.status_code, body_of(reply.content))
    assert faultcode == "soap:Client"
    if byte_search == "off" and kind == "billion-laughs":
        # libxml2 itself stops the expansion ("maximum entity amplification factor exceeded")
        # before the mock can look at the DTD it parsed: a syntax error, refused all the same.
        assert code in ("DC-400-DTD", "DC-400-XML")
    else:
        assert code == "DC-400-DTD"


def test_the_spies_would_see_a_weak_parser(secret_file: Path, bait: BaitServer) -> None:
    """The detectors work: a parser that loads DTDs and resolves entities asks the recording
    resolver for the file and reads the secret, and a fetch of the bait URL is counted."""
    weak = etree.XMLParser(load_dtd=True, resolve_entities=True)
    spy = RecordingResolver()
    weak.resolvers.add(spy)
    parsed = etree.fromstring(_xxe(secret_file.as_uri()).encode(), weak)
    assert spy.urls == [secret_file.as_uri()]
    assert SECRET.encode() in etree.tostring(parsed)
    assert httpx.get(bait.url).text == SECRET
    assert bait.hits == ["/x"]


async def test_body_over_the_limit_is_refused() -> None:
    """A body over max_body_bytes is a DC-400-SIZE fault, declared or streamed in chunks."""
    app = create_app(PopulationSettings(households=3, max_body_bytes=1024))
    content = soap_request(
        "TraCuuThongTinCongDan", {"MaYeuCau": "x" * 2000, "SoDinhDanh": VALID_ID}
    )

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(content), 256):
            yield content[start : start + 256]

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE_URL) as client:
        declared = await client.post("/soap", content=content)
        streamed = await client.post("/soap", content=chunks())
    for reply in (declared, streamed):
        assert fault_of(reply.status_code, body_of(reply.content)) == ("soap:Client", "DC-400-SIZE")
