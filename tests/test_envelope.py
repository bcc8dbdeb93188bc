"""Every reply is the canonical envelope; every code has its fixed HTTP status."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import date

import pytest

from adapters.base import Adapter, Context, operation
from bus import create_app
from bus.errors import CATALOGUE
from bus.registry import AdapterRegistry
from bus.settings import Settings
from schemas.base import CanonicalModel
from tests.support import SECRET_IN_CRASH, FaultyAdapter, running

pytestmark = pytest.mark.anyio

ENVELOPE_KEYS = {"request_id", "service", "operation", "status", "data", "error"}
ERROR_KEYS = {"code", "message", "field_errors", "retryable", "upstream_code"}

#: The contract callers program against: changing a line here is a breaking change.
EXPECTED = {
    "client.bad_request": (400, False),
    "client.unauthenticated": (401, False),
    "client.forbidden": (403, False),
    "client.unknown_service": (404, False),
    "client.unknown_operation": (404, False),
    "client.not_found": (404, False),
    "client.method_not_allowed": (405, False),
    "client.idempotency_in_progress": (409, True),
    "client.payload_too_large": (413, False),
    "client.idempotency_key_reused": (422, False),
    "client.unsupported_media_type": (415, False),
    "client.rate_limited": (429, True),
    "client.closed_request": (499, False),
    "upstream.rejected": (422, False),
    "upstream.fault": (502, False),
    "upstream.bad_response": (502, False),
    "upstream.unavailable": (503, True),
    "upstream.timeout": (504, True),
    "bus.internal": (500, False),
}

FAULTY_YAML = "version: 1\nservices:\n  faulty: {adapter: faulty, retry: none}\n"


@pytest.fixture
def faulty_registry() -> AdapterRegistry:
    registry = AdapterRegistry()
    registry.register("faulty", FaultyAdapter, "tests")
    return registry


def test_catalogue_is_the_documented_contract() -> None:
    """The catalogue holds exactly the documented codes, each with its fixed status."""
    assert {code: (s.http_status, s.retryable) for code, s in CATALOGUE.items()} == EXPECTED


async def test_success_envelope_shape(settings_for: Callable[..., Settings]) -> None:
    """A successful call answers 200 with data set and error null."""
    app = create_app(settings_for("version: 1\nservices:\n  echo: {adapter: echo}\n"))
    async with running(app) as client:
        reply = await client.post("/v1/services/echo/echo", json={"message": "Xin chào"})
    body = reply.json()
    assert reply.status_code == 200
    assert set(body) == ENVELOPE_KEYS
    assert body["status"] == "ok"
    assert body["error"] is None
    assert body["service"] == "echo"
    assert body["operation"] == "echo"
    assert body["data"]["message"] == "Xin chào"


@pytest.mark.parametrize("code", sorted(EXPECTED))
async def test_each_error_code_reaches_the_caller_as_an_envelope(
    code: str, faulty_registry: AdapterRegistry, settings_for: Callable[..., Settings]
) -> None:
    """An adapter raising any catalogue error yields that code, its status and retryable flag."""
    app = create_app(settings_for(FAULTY_YAML), registry=faulty_registry)
    async with running(app) as client:
        reply = await client.post("/v1/services/faulty/raise", json={"code": code})
    status, retryable = EXPECTED[code]
    body = reply.json()
    assert reply.status_code == status
    assert set(body) == ENVELOPE_KEYS
    assert body["status"] == "error"
    assert body["data"] is None
    assert set(body["error"]) == ERROR_KEYS
    assert body["error"]["code"] == code
    assert body["error"]["retryable"] is retryable
    assert body["request_id"] == reply.headers["x-request-id"]


async def test_retry_after_header_on_retryable_errors(
    faulty_registry: AdapterRegistry, settings_for: Callable[..., Settings]
) -> None:
    """A rate-limited answer carries Retry-After in whole seconds, rounded up."""
    app = create_app(settings_for(FAULTY_YAML), registry=faulty_registry)
    async with running(app) as client:
        reply = await client.post(
            "/v1/services/faulty/raise", json={"code": "client.rate_limited", "retry_after": 2.4}
        )
    assert reply.status_code == 429
    assert reply.headers["retry-after"] == "3"


async def test_crash_is_bus_internal_without_stack_trace(
    faulty_registry: AdapterRegistry,
    settings_for: Callable[..., Settings],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An unexpected exception becomes bus.internal with the request id; the caller sees neither
    the traceback nor the exception's text, which stays in the server log."""
    app = create_app(settings_for(FAULTY_YAML), registry=faulty_registry)
    async with running(app) as client:
        reply = await client.post(
            "/v1/services/faulty/raise",
            json={"code": "crash"},
            headers={"X-Request-ID": "trace-me-0001"},
        )
    assert reply.status_code == 500
    body = reply.json()
    assert body["error"]["code"] == "bus.internal"
    assert body["request_id"] == "trace-me-0001"
    assert "Traceback" not in reply.text
    assert "hunter2" not in reply.text
    assert "RuntimeError" not in reply.text
    server_log = capsys.readouterr().err
    assert "Traceback" in server_log
    assert "trace-me-0001" in server_log
    assert SECRET_IN_CRASH.split("=")[0] in server_log


async def test_wrong_output_is_upstream_bad_response(
    faulty_registry: AdapterRegistry, settings_for: Callable[..., Settings]
) -> None:
    """An adapter result that does not match the output model is upstream.bad_response."""
    app = create_app(settings_for(FAULTY_YAML), registry=faulty_registry)
    async with running(app) as client:
        reply = await client.post("/v1/services/faulty/wrong-output", json={})
    assert reply.status_code == 502
    assert reply.json()["error"]["code"] == "upstream.bad_response"


async def test_unknown_service_and_operation(settings_for: Callable[..., Settings]) -> None:
    """Unknown service and unknown operation have their own codes and name what was asked."""
    app = create_app(settings_for("version: 1\nservices:\n  echo: {adapter: echo}\n"))
    async with running(app) as client:
        no_service = await client.post("/v1/services/tax/echo", json={})
        no_operation = await client.post("/v1/services/echo/shout", json={})
    assert no_service.status_code == 404
    assert no_service.json()["error"]["code"] == "client.unknown_service"
    assert "'tax'" in no_service.json()["error"]["message"]
    assert no_operation.status_code == 404
    assert no_operation.json()["error"]["code"] == "client.unknown_operation"
    assert "'shout'" in no_operation.json()["error"]["message"]
    assert no_operation.json()["service"] == "echo"


async def test_validation_errors_name_each_field(settings_for: Callable[..., Settings]) -> None:
    """Each refused field gets its own field_errors entry naming it and the reason."""
    app = create_app(settings_for("version: 1\nservices:\n  echo: {adapter: echo}\n"))
    async with running(app) as client:
        reply = await client.post("/v1/services/echo/echo", json={"message": "", "loud": True})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["code"] == "client.bad_request"
    by_field = {f["field"]: f for f in error["field_errors"]}
    assert set(by_field) == {"message", "loud"}
    assert by_field["message"]["type"] == "string_too_short"
    assert "at least 1 character" in by_field["message"]["reason"]
    assert by_field["loud"]["type"] == "extra_forbidden"


async def test_malformed_json_names_the_body(settings_for: Callable[..., Settings]) -> None:
    """A body that is not JSON is client.bad_request about the field ``body``."""
    app = create_app(settings_for("version: 1\nservices:\n  echo: {adapter: echo}\n"))
    async with running(app) as client:
        reply = await client.post(
            "/v1/services/echo/echo",
            content=b'{"message": ',
            headers={"content-type": "application/json"},
        )
    assert reply.status_code == 400
    [field_error] = reply.json()["error"]["field_errors"]
    assert field_error["field"] == "body"
    assert field_error["type"] == "json_invalid"


async def test_validation_error_does_not_echo_the_value(
    settings_for: Callable[..., Settings],
) -> None:
    """The refused value (possibly a personal id) is not repeated in the error."""
    app = create_app(settings_for("version: 1\nservices:\n  echo: {adapter: echo}\n"))
    async with running(app) as client:
        reply = await client.post("/v1/services/echo/echo", json={"message": "x" * 1001})
    assert reply.status_code == 400
    assert "xxxx" not in reply.text


async def test_payload_too_large_before_reading(settings_for: Callable[..., Settings]) -> None:
    """A body over LGSP_MAX_BODY_BYTES is refused with client.payload_too_large."""
    app = create_app(
        settings_for("version: 1\nservices:\n  echo: {adapter: echo}\n", max_body_bytes=64)
    )
    async with running(app) as client:
        reply = await client.post("/v1/services/echo/echo", json={"message": "a" * 100})
    assert reply.status_code == 413
    assert reply.json()["error"]["code"] == "client.payload_too_large"


async def test_unknown_route_and_wrong_method_are_envelopes(
    settings_for: Callable[..., Settings],
) -> None:
    """Routes the bus does not have, and wrong methods, still answer in the envelope."""
    app = create_app(settings_for("version: 1\n"))
    async with running(app) as client:
        missing = await client.get("/v2/whatever")
        wrong = await client.get("/v1/services/echo/echo")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "client.not_found"
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "client.method_not_allowed"
    assert set(wrong.json()) == ENVELOPE_KEYS


async def test_payload_too_large_without_content_length(
    settings_for: Callable[..., Settings],
) -> None:
    """A chunked body with no Content-Length is cut off as soon as it passes the limit."""
    app = create_app(
        settings_for("version: 1\nservices:\n  echo: {adapter: echo}\n", max_body_bytes=64)
    )

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"x" * 32

    async with running(app) as client:
        reply = await client.post("/v1/services/echo/echo", content=chunks())
    assert reply.status_code == 413
    assert reply.json()["error"]["code"] == "client.payload_too_large"


class Birth(CanonicalModel):
    year: int


class UnionInput(CanonicalModel):
    when: int | str
    born: date | Birth


async def test_union_fields_get_one_entry_each(settings_for: Callable[..., Settings]) -> None:
    """A field typed as a union is one field_errors entry, named as the caller wrote it, not
    one per union member."""
    registry = AdapterRegistry()

    class UnionAdapter(Adapter):
        requires_upstream = False

        @operation("check", input=UnionInput, output=UnionInput)
        async def check(self, request: UnionInput, ctx: Context) -> UnionInput:
            """Echo."""
            return request

    registry.register("union", UnionAdapter, "tests")
    app = create_app(
        settings_for("version: 1\nservices:\n  u: {adapter: union}\n"), registry=registry
    )
    async with running(app) as client:
        reply = await client.post("/v1/services/u/check", json={"when": [1], "born": {"y": 1}})
        missing = await client.post("/v1/services/u/check", json={"when": 1, "born": {}})
    fields = [f["field"] for f in reply.json()["error"]["field_errors"]]
    assert sorted(fields) == ["born", "born.y", "born.year", "when"]
    when = next(f for f in reply.json()["error"]["field_errors"] if f["field"] == "when")
    assert "integer" in when["reason"]
    assert "string" in when["reason"]
    assert [f["field"] for f in missing.json()["error"]["field_errors"]] == ["born", "born.year"]


@pytest.mark.parametrize("value", [1e999, float("inf"), float("nan"), -5])
async def test_unusable_retry_after_never_breaks_the_reply(
    value: float, faulty_registry: AdapterRegistry, settings_for: Callable[..., Settings]
) -> None:
    """An infinite, NaN or negative Retry-After is dropped or clamped, never a crash."""
    app = create_app(settings_for(FAULTY_YAML), registry=faulty_registry)
    async with running(app) as client:
        reply = await client.post(
            "/v1/services/faulty/raise",
            content=json.dumps({"code": "upstream.unavailable", "retry_after": value}),
        )
    assert reply.status_code == 503
    assert reply.headers.get("retry-after") in (None, "1")


async def test_http_niceties(settings_for: Callable[..., Settings]) -> None:
    """HEAD on health routes works; a 405 says what is allowed; a trailing slash is not
    redirected but answered with an envelope."""
    app = create_app(settings_for("version: 1\nservices:\n  echo: {adapter: echo}\n"))
    async with running(app) as client:
        head = await client.head("/healthz")
        ready_head = await client.head("/readyz")
        wrong = await client.delete("/v1/services/echo/echo")
        slash = await client.get("/v1/services/")
    assert head.status_code == 200
    assert ready_head.status_code == 200
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    assert slash.status_code == 404
    assert slash.json()["error"]["code"] == "client.not_found"


async def test_hostile_bodies_get_clear_answers(settings_for: Callable[..., Settings]) -> None:
    """A non-JSON content type is 415; JSON nested 10,000 deep and a 20,000-character string
    are client.bad_request naming where; none of them is a 500."""
    app = create_app(settings_for("version: 1\nservices:\n  echo: {adapter: echo}\n"))
    deep = b'{"message": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    async with running(app) as client:
        form = await client.post("/v1/services/echo/echo", data={"message": "hi"})
        xml = await client.post(
            "/v1/services/echo/echo", content=b"<m/>", headers={"content-type": "text/xml"}
        )
        nested = await client.post(
            "/v1/services/echo/echo", content=deep, headers={"content-type": "application/json"}
        )
        long = await client.post("/v1/services/echo/echo", json={"message": "x" * 20_000})
        vendor = await client.post(
            "/v1/services/echo/echo",
            content=b'{"message": "hi"}',
            headers={"content-type": "application/vnd.lgsp+json; charset=utf-8"},
        )
    assert form.status_code == 415
    assert form.json()["error"]["code"] == "client.unsupported_media_type"
    assert xml.status_code == 415
    assert nested.status_code == 400
    assert nested.json()["error"]["field_errors"][0]["field"] == "body"
    assert long.status_code == 400
    assert long.json()["error"]["field_errors"][0]["field"] == "message"
    assert vendor.status_code == 200
