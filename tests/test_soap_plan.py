"""The compiled SOAP reply reader (adapters/soap_plan.py) reads what zeep reads, the same way.

Every reply here is the population mock's own, for requests zeep built from the shipped WSDL;
each is read by zeep (``process_reply``) and by the compiled plan, and the two results must be
equal field by field. Then what only the plan does: refusing replies that do not match, without
quoting their values, and handing the constructs it does not read back to zeep.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import zeep
import zeep.helpers
from lxml import etree

from adapters.population import BINDING, SHIPPED_WSDL, _SoapReply
from adapters.soap_plan import (
    ReadWithZeep,
    ReplyMismatch,
    RequestMismatch,
    Unsupported,
    compile_reader,
    compile_writer,
)
from mocks.population import operations, soap
from mocks.population.seed import Citizen, Registry, build_registry

DATA_TIME = "20261121090000"
DL = "http://www.mic.gov.vn/dancu/1.0"


@pytest.fixture(scope="module")
def client() -> zeep.Client:
    return zeep.Client(str(SHIPPED_WSDL))


@pytest.fixture(scope="module")
def registry() -> Registry:
    return build_registry(households=60)


def plain(value: Any) -> Any:
    """A reply, zeep's or the plan's, as plain dicts and lists."""
    if isinstance(value, SimpleNamespace):
        return {k: plain(v) for k, v in vars(value).items()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def reply_for(client: zeep.Client, registry: Registry, name: str, **fields: Any) -> bytes:
    """The mock's reply envelope to ``name`` called with ``fields``, as zeep would send it."""
    request = client.create_message(client.service, name, MaYeuCau="r-1", **fields)
    element = soap.parse_request(etree.tostring(request))
    return soap.envelope(operations.dispatch(name, element, registry, DATA_TIME))


def both(client: zeep.Client, name: str, content: bytes) -> tuple[Any, Any]:
    binding = client.wsdl.bindings[BINDING]
    reply = _SoapReply(httpx.Response(200, content=content, headers={"Content-Type": "text/xml"}))
    by_zeep = zeep.helpers.serialize_object(
        binding.process_reply(client, binding.get(name), reply), dict
    )
    body = etree.fromstring(content).find(f"{{{soap.SOAP_ENV}}}Body")
    assert body is not None
    by_plan = compile_reader(binding.get(name)).read(body[0])
    return plain(by_zeep), plain(by_plan)


def people(registry: Registry) -> Iterator[Citizen]:
    """Every fifth seeded citizen (of 60 households): with and without old id, parents..."""
    yield from registry.citizens[::5]


def test_every_operation_of_the_wsdl_gets_a_reader(client: zeep.Client) -> None:
    binding = client.wsdl.bindings[BINDING]
    for name in binding._operations:
        compile_reader(binding.get(name))  # raises Unsupported if not


def test_lookups_read_as_zeep_reads_them(client: zeep.Client, registry: Registry) -> None:
    seen = []
    for person in people(registry):
        content = reply_for(client, registry, "TraCuuThongTinCongDan", SoDinhDanh=person.id)
        by_zeep, by_plan = both(client, "TraCuuThongTinCongDan", content)
        assert by_plan == by_zeep
        assert by_plan["CongDan"][0]["SoDinhDanh"] == person.id
        seen.append(by_plan["CongDan"][0])
    assert len(seen) > 40
    # the elements that are optional on the wire were both present and absent in the sample
    for optional in ("SoCMND", "Cha", "VoChong", "NguoiDaiDien"):
        assert any(c[optional] is None for c in seen), optional
        assert any(c[optional] for c in seen), optional


def test_households_not_found_and_verdicts_read_as_zeep_reads_them(
    client: zeep.Client, registry: Registry
) -> None:
    person = registry.citizens[3]
    cases = [
        ("CungCapThongTinHoGiaDinh", {"SoDinhDanh": person.id}),
        ("XacMinhThongTinChuHo", {"SoDinhDanh": person.id}),
        ("TraCuuThongTinCongDan", {"SoDinhDanh": "001099999999"}),
        ("XacThucThongTinCongDan", {"SoDinhDanh": person.id}),
        ("XacThucThongTinCongDan", {"SoDinhDanh": "001099999999"}),
        ("XacMinhTinhTrangHonNhan", {"SoDinhDanh": person.id, "TinhTrangHonNhan": "1"}),
    ]
    for name, fields in cases:
        by_zeep, by_plan = both(client, name, reply_for(client, registry, name, **fields))
        assert by_plan == by_zeep, name
    household = both(
        client, *cases[0][:1], reply_for(client, registry, *cases[0][:1], **cases[0][1])
    )[1]
    assert len(household["CongDan"]) == len(registry.members_of(person.id)) > 1
    assert household["SoCongDan"] == len(household["CongDan"])  # xsd:int, converted
    assert (
        both(
            client,
            "XacThucThongTinCongDan",
            reply_for(client, registry, *cases[3][:1], **cases[3][1]),
        )[1]
        is True
    )
    assert (
        both(
            client,
            "XacThucThongTinCongDan",
            reply_for(client, registry, *cases[4][:1], **cases[4][1]),
        )[1]
        is False
    )


def read(client: zeep.Client, name: str, element: etree._Element) -> Any:
    return compile_reader(client.wsdl.bindings[BINDING].get(name)).read(element)


def lookup_element(client: zeep.Client, registry: Registry) -> etree._Element:
    content = reply_for(
        client, registry, "TraCuuThongTinCongDan", SoDinhDanh=registry.citizens[0].id
    )
    body = etree.fromstring(content).find(f"{{{soap.SOAP_ENV}}}Body")
    assert body is not None
    return copy.deepcopy(body[0])


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda c: c.append(etree.Element(f"{{{DL}}}Extra")),
            "unexpected element Extra in CongDan",
        ),
        (lambda c: c.remove(c.find(f"{{{DL}}}GioiTinh")), "CongDan has no GioiTinh"),
        (
            lambda c: c.append(copy.deepcopy(c.find(f"{{{DL}}}QuocTich"))),
            "QuocTich repeated in CongDan",
        ),
        (lambda c: c.append(etree.Element("{urn:other}QuocTich")), "unexpected element QuocTich"),
    ],
)
def test_a_reply_that_does_not_match_is_refused_naming_the_element(
    client: zeep.Client, registry: Registry, damage: Any, message: str
) -> None:
    collection = lookup_element(client, registry)
    damage(collection[0])
    with pytest.raises(ReplyMismatch, match=message) as caught:
        read(client, "TraCuuThongTinCongDan", collection)
    assert registry.citizens[0].id not in str(caught.value)


def test_a_value_its_type_cannot_read_is_refused_without_quoting_it(
    client: zeep.Client, registry: Registry
) -> None:
    collection = lookup_element(client, registry)
    collection.set("SoCongDan", "one-1234567")
    with pytest.raises(ReplyMismatch, match="attribute SoCongDan is not a valid value") as caught:
        read(client, "TraCuuThongTinCongDan", collection)
    assert "1234567" not in str(caught.value)
    verdict = etree.fromstring(f'<dl:KetQuaXacThucResponse xmlns:dl="{DL}"/>')
    etree.SubElement(verdict, f"{{{DL}}}TonTai").text = "yes"
    with pytest.raises(ReplyMismatch, match="TonTai is not a valid value"):
        read(client, "XacThucThongTinCongDan", verdict)  # zeep would read false
    verdict[0].text = " 1 "
    assert read(client, "XacThucThongTinCongDan", verdict) is True
    wrong = etree.fromstring(f'<dl:LoiChiTiet xmlns:dl="{DL}"/>')
    with pytest.raises(ReplyMismatch, match="the reply's body is LoiChiTiet"):
        read(client, "XacThucThongTinCongDan", wrong)


def test_unqualified_children_nil_and_comments_are_read_as_zeep_reads_them(
    client: zeep.Client, registry: Registry
) -> None:
    collection = lookup_element(client, registry)
    citizen = collection[0]
    blood = etree.SubElement(citizen, f"{{{DL}}}NhomMau")
    blood.set("{http://www.w3.org/2001/XMLSchema-instance}nil", "true")
    citizen.insert(0, etree.Comment("a comment"))
    nationality = citizen.find(f"{{{DL}}}QuocTich")
    assert nationality is not None
    nationality.tag = "QuocTich"  # unqualified, as some servers send (zeep's issue #170)
    value = read(client, "TraCuuThongTinCongDan", collection)
    assert value.CongDan[0].NhomMau is None
    assert value.CongDan[0].QuocTich == nationality.text


def test_xsi_type_is_left_to_zeep(client: zeep.Client, registry: Registry) -> None:
    collection = lookup_element(client, registry)
    collection[0].set("{http://www.w3.org/2001/XMLSchema-instance}type", "dl:CongDan")
    with pytest.raises(ReadWithZeep):
        read(client, "TraCuuThongTinCongDan", collection)


def test_constructs_the_plan_does_not_read_are_refused_at_compile_time(
    client: zeep.Client,
) -> None:
    """The request types use a choice (NgayThangNamSinh) and an extension (YeuCauXacThuc):
    a plan is refused for them, so zeep would read such replies."""
    binding = client.wsdl.bindings[BINDING]
    lookup = binding.get("TraCuuThongTinCongDan")
    verify = binding.get("XacThucThongTinCongDan")
    for request_side in (lookup, verify):
        as_output = SimpleNamespace(name="x", output=request_side.input)
        with pytest.raises(Unsupported):
            compile_reader(as_output)


def zeep_request(client: zeep.Client, name: str, fields: dict[str, Any]) -> tuple[bytes, Any]:
    binding = client.wsdl.bindings[BINDING]
    envelope, headers = binding._create(name, (), fields, client=client)  # what zeep sends
    return etree.tostring(envelope, xml_declaration=True, encoding="utf-8"), headers


def request_cases(registry: Registry) -> Iterator[tuple[str, dict[str, Any]]]:
    """Requests as the population adapter builds them, with every optional element both given
    and absent, both options of the birth choice, and an address."""
    common = {"MaYeuCau": "req-1", "MaCanBo": None, "MaDonVi": "000.00.00.H00"}
    for person in registry.citizens[:30]:
        birth = (
            {"NgayThangNam": person.birth_date.strftime("%Y%m%d")}
            if person.birth_date_known
            else {"Nam": str(person.birth_date.year)}
        )
        yield "TraCuuThongTinCongDan", {**common, "SoDinhDanh": person.id, "MaDVC": None}
        yield (
            "TraCuuThongTinCongDan",
            {
                **common,
                "MaCanBo": "cb-7",
                "TaiKhoan": "acct",
                "MaTichHop": "tich-hop",
                "SoCMND": person.cmnd,
                "HoVaTen": person.name.full,
                "NgayThangNamSinh": birth,
                "MaDVC": "1.000123",
            },
        )
        yield "XacThucThongTinCongDan", {**common, "SoDinhDanh": person.id, "GioiTinh": "1"}
        yield "CungCapThongTinHoGiaDinh", {**common, "SoDinhDanh": person.id}
        yield "XacMinhThongTinChuHo", {**common, "SoDinhDanh": person.id, "HoVaTen": "Lê Văn"}
    yield (
        "XacMinhThongTinNoiOHienTai",
        {
            **common,
            "SoDinhDanh": "001099000001",
            "NoiOHienTai": {"MaTinhThanh": "01", "MaQuanHuyen": "001", "MaPhuongXa": "00001"},
        },
    )
    yield "XacMinhTinhTrangHonNhan", {**common, "MaYeuCau": "", "TinhTrangHonNhan": "2"}


def test_requests_are_written_byte_for_byte_as_zeep_writes_them(
    client: zeep.Client, registry: Registry
) -> None:
    binding = client.wsdl.bindings[BINDING]
    checked = set()
    for name, fields in request_cases(registry):
        writer = compile_writer(binding.get(name))
        expected, headers = zeep_request(client, name, fields)
        assert writer.envelope(fields) == expected, name
        assert writer.headers == headers
        checked.add(name)
    assert checked == set(binding._operations)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"MaYeuCau": "r", "Extra": "x"}, "has no element Extra"),
        ({"SoDinhDanh": "001099000001"}, "misses MaYeuCau"),
        (
            {"MaYeuCau": "r", "NgayThangNamSinh": {"NgayThangNam": "19900101", "Nam": "1990"}},
            "takes exactly one of",
        ),
        ({"MaYeuCau": "r", "NgayThangNamSinh": "1990"}, "takes a mapping of its elements"),
    ],
)
def test_fields_that_do_not_fit_the_input_are_refused_by_name(
    client: zeep.Client, fields: dict[str, Any], message: str
) -> None:
    writer = compile_writer(client.wsdl.bindings[BINDING].get("TraCuuThongTinCongDan"))
    with pytest.raises(RequestMismatch, match=message):
        writer.envelope(fields)
