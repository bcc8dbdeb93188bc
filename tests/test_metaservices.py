"""Metaservices and the OpenAPI document show every operation with its real models."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bus import create_app
from bus.registry import AdapterRegistry
from bus.settings import Settings
from tests.support import running
from tests.test_plugin_entry_point import ENV, PARCELS_YAML

pytestmark = pytest.mark.anyio

YAML = PARCELS_YAML + "  echo:\n    adapter: echo\n    description: Smoke test\n"


async def test_openapi_has_every_operation_input_schema(
    example_plugin: AdapterRegistry, settings_for: Callable[..., Settings]
) -> None:
    """/openapi.json has one path per operation whose request body is the input model."""
    app = create_app(settings_for(YAML), registry=example_plugin, environ=ENV)
    async with running(app) as client:
        doc = (await client.get("/openapi.json")).json()
    components = doc["components"]["schemas"]
    gw = app.state.gateway
    for svc in gw.services.values():
        for spec in svc.operations.values():
            path = doc["paths"][f"/v1/services/{svc.name}/{spec.name}"]["post"]
            ref = path["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            schema = components[ref.rsplit("/", 1)[1]]
            expected = spec.input_model.model_json_schema()
            assert schema["properties"] == expected["properties"], spec.name
            assert schema.get("required") == expected.get("required"), spec.name
            ok = path["responses"]["200"]["content"]["application/json"]["schema"]
            data_ref = ok["allOf"][1]["properties"]["data"]["$ref"]
            assert data_ref.endswith(spec.output_model.__name__)
    assert doc["paths"]["/v1/services/land/parcel.get"]["post"]["tags"] == ["land"]
    parcel_query = components["ParcelQuery"]["properties"]["parcel_id"]
    assert parcel_query["pattern"] == "^[0-9]{2}-[0-9]{4}$"


async def test_catalogue_lists_services_and_operations(
    example_plugin: AdapterRegistry, settings_for: Callable[..., Settings]
) -> None:
    """GET /v1/services names each service, its adapter, package, mode and operations."""
    app = create_app(settings_for(YAML), registry=example_plugin, environ=ENV)
    async with running(app) as client:
        body = (await client.get("/v1/services")).json()
    assert body["status"] == "ok"
    services = {s["name"]: s for s in body["data"]}
    assert set(services) == {"land", "echo"}
    land = services["land"]
    assert land["adapter"] == "parcels"
    assert land["package"] == "lgsp-example-parcels"
    assert land["description"] == "Provincial land parcel registry (example plugin)"
    ops = {o["name"]: o for o in land["operations"]}
    assert ops["parcel.get"] == {
        "name": "parcel.get",
        "description": "Read one land parcel.",
        "idempotent": True,
        "mode": "sync",
    }
    assert ops["parcel.note"]["idempotent"] is False
    assert services["echo"]["description"] == "Smoke test"


async def test_describe_service_gives_json_schemas(
    example_plugin: AdapterRegistry, settings_for: Callable[..., Settings]
) -> None:
    """GET /v1/services/{service} gives each operation's input and output JSON Schema."""
    app = create_app(settings_for(YAML), registry=example_plugin, environ=ENV)
    async with running(app) as client:
        body = (await client.get("/v1/services/land")).json()
        missing = await client.get("/v1/services/nope")
    ops = {o["name"]: o for o in body["data"]["operations"]}
    assert ops["parcel.get"]["input_schema"]["required"] == ["parcel_id"]
    assert set(ops["parcel.get"]["output_schema"]["properties"]) == {
        "parcel_id",
        "area_m2",
        "land_use",
    }
    assert ops["parcel.get"]["path"] == "/v1/services/land/parcel.get"
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "client.unknown_service"


async def test_docs_page_is_served(settings_for: Callable[..., Settings]) -> None:
    """/docs (Swagger UI) is served from the same OpenAPI document."""
    app = create_app(settings_for("version: 1\nservices:\n  echo: {adapter: echo}\n"))
    async with running(app) as client:
        reply = await client.get("/docs")
    assert reply.status_code == 200
    assert "/openapi.json" in reply.text
