"""The SOAP plans (adapters/soap_plan.py) against zeep's own per-call work, in one process.

For the population lookup, on the mock's replies for seeded citizens: writing the request
envelope (zeep's ``_create`` and serialisation, then the compiled writer) and reading the reply
(zeep's ``process_reply``, then the compiled reader, XML parsing included). Each side is timed
in interleaved rounds on the same inputs; the ratios are zeep's time over the plan's.

    .venv/bin/python bench/soap_plans.py          # --rounds 5 --calls 2000
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import httpx
import zeep
from lxml import etree
from zeep.wsdl.utils import etree_to_string

from adapters.population import BINDING, SHIPPED_WSDL, _SoapReply
from adapters.soap_plan import compile_reader, compile_writer
from adapters.wire import safe_xml_parser
from mocks.population import operations, soap
from mocks.population.seed import build_registry

NAME = "TraCuuThongTinCongDan"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000, help="calls per side per round")
    args = parser.parse_args()

    client = zeep.Client(str(SHIPPED_WSDL))
    binding = client.wsdl.bindings[BINDING]
    operation = binding.get(NAME)
    writer, reader = compile_writer(operation), compile_reader(operation)
    registry = build_registry(households=100)
    inputs = []
    for person in registry.citizens[:200]:
        fields = {
            "MaYeuCau": "req-1",
            "MaDonVi": "000.00.00.H00",
            "SoDinhDanh": person.id,
            "HoVaTen": person.name.full,
            "NgayThangNamSinh": {"Nam": str(person.birth_date.year)},
        }
        message = etree_to_string(binding._create(NAME, (), fields, client=client)[0])
        element = soap.parse_request(message)
        content = soap.envelope(operations.dispatch(NAME, element, registry, "20261121090000"))
        headers = {"Content-Type": "text/xml; charset=utf-8"}
        inputs.append((fields, _SoapReply(httpx.Response(200, content=content, headers=headers))))
    parser_ = safe_xml_parser()
    body_tag = f"{{{soap.SOAP_ENV}}}Body"

    def zeep_write(fields: dict[str, Any], _reply: Any) -> Any:
        return etree_to_string(binding._create(NAME, (), fields, client=client)[0])

    def plan_write(fields: dict[str, Any], _reply: Any) -> Any:
        return writer.envelope(fields)

    def zeep_read(_fields: Any, reply: _SoapReply) -> Any:
        return binding.process_reply(client, operation, reply)

    def plan_read(_fields: Any, reply: _SoapReply) -> Any:
        body = etree.fromstring(reply.content, parser_).find(body_tag)
        assert body is not None
        return reader.read(body[0])

    sides: dict[str, Callable[[Any, Any], Any]] = {
        "write: zeep": zeep_write,
        "write: plan": plan_write,
        "read: zeep": zeep_read,
        "read: plan": plan_read,
    }
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name, side in sides.items():
            start = time.perf_counter()
            for i in range(args.calls):
                fields, reply = inputs[i % len(inputs)]
                side(fields, reply)
            times[name].append((time.perf_counter() - start) / args.calls * 1e6)
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"{'side':<14}{'µs per call (median of rounds)':>32}")
    for name, value in median.items():
        print(f"{name:<14}{value:>32.1f}")
    for what in ("write", "read"):
        ratio = median[f"{what}: zeep"] / median[f"{what}: plan"]
        print(f"{what}: zeep / plan = {ratio:.1f}x")


if __name__ == "__main__":
    main()
