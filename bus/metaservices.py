"""Metaservices in the spirit of X-Road's ``listMethods``: what can be called, and in what shape.

- ``GET /v1/services`` lists services and their operations;
- ``GET /v1/services/{service}`` adds each operation's input and output JSON Schema;
- ``/openapi.json`` describes every operation as its own path, with the real pydantic models,
  so ``/docs`` shows each operation's request body rather than a generic one.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from bus.errors import CATALOGUE
from bus.gateway import Gateway, ServiceRuntime
from bus.security import Consumer
from schemas.envelope import Envelope

__all__ = ["build_openapi", "describe_service", "list_services"]


def _summary(svc: ServiceRuntime) -> dict[str, Any]:
    return {
        "name": svc.name,
        "adapter": svc.entry.name,
        "package": svc.entry.package,
        "description": svc.description,
        "operations": [
            {
                "name": spec.name,
                "description": spec.description,
                "idempotent": spec.idempotent,
                "mode": svc.mode_of(spec.name),
            }
            for spec in svc.operations.values()
        ],
    }


def list_services(gw: Gateway, consumer: Consumer) -> list[dict[str, Any]]:
    """The services and operations ``consumer`` may call, and only those."""
    out = []
    for svc in gw.services.values():
        summary = _summary(svc)
        summary["operations"] = [
            op for op in summary["operations"] if consumer.may_call(svc.name, op["name"])
        ]
        if summary["operations"]:
            out.append(summary)
    return out


def describe_service(svc: ServiceRuntime) -> dict[str, Any]:
    out = _summary(svc)
    out["operations"] = [
        {
            "name": spec.name,
            "description": spec.description,
            "idempotent": spec.idempotent,
            "mode": svc.mode_of(spec.name),
            "ordered_by": spec.order_by,
            "path": f"/v1/services/{svc.name}/{spec.name}",
            "input_schema": spec.input_model.model_json_schema(mode="validation"),
            "output_schema": spec.output_model.model_json_schema(mode="serialization"),
        }
        for spec in svc.operations.values()
    ]
    return out


def build_openapi(app: FastAPI, gw: Gateway) -> dict[str, Any]:
    """The OpenAPI document of the bus's own routes plus one path per configured operation."""
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    # FastAPI documents its own 422 validation reply; the bus answers 400 with the envelope.
    for operations in doc.get("paths", {}).values():
        for op in operations.values():
            if op.get("responses", {}).pop("422", None) is not None:
                op["responses"]["400"] = {
                    "description": "client.bad_request envelope",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}}
                    },
                }
    for unused in ("HTTPValidationError", "ValidationError"):
        doc.get("components", {}).get("schemas", {}).pop(unused, None)
    models: list[tuple[type[BaseModel], Any]] = [(Envelope, "serialization")]
    for svc in gw.services.values():
        for spec in svc.operations.values():
            models += [(spec.input_model, "validation"), (spec.output_model, "serialization")]
    refs, defs = models_json_schema(
        list(dict.fromkeys(models)), ref_template="#/components/schemas/{model}"
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(defs.get("$defs", {}))
    envelope_ref = refs[(Envelope, "serialization")]
    errors = sorted({spec.http_status for spec in CATALOGUE.values()})
    for svc in gw.services.values():
        for spec in svc.operations.values():
            ok = {
                "allOf": [
                    envelope_ref,
                    {"properties": {"data": refs[(spec.output_model, "serialization")]}},
                ]
            }
            responses: dict[str, Any] = {
                "200": {
                    "description": "The operation's output in the canonical envelope.",
                    "content": {"application/json": {"schema": ok}},
                }
            }
            for status in errors:
                codes = [c for c, s in CATALOGUE.items() if s.http_status == status]
                responses[str(status)] = {
                    "description": "Error envelope: " + ", ".join(codes),
                    "content": {"application/json": {"schema": envelope_ref}},
                }
            doc.setdefault("paths", {})[f"/v1/services/{svc.name}/{spec.name}"] = {
                "post": {
                    "tags": [svc.name],
                    "summary": spec.description or spec.name,
                    "operationId": f"{svc.name}__{spec.name}",
                    "parameters": [
                        {
                            "name": "X-Request-ID",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                            "description": "Correlation id, echoed back; generated if absent.",
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": refs[(spec.input_model, "validation")]}
                        },
                    },
                    "responses": responses,
                }
            }
    return doc
