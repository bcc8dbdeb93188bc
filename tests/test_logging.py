"""Logs keep personal numbers and secrets out, and errors escaping the app still get an envelope."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from bus import create_app
from bus.logging import Redactor
from bus.settings import Settings
from tests.support import running

pytestmark = pytest.mark.anyio


def test_redactor_masks_ids_phones_and_secrets() -> None:
    """12- and 9-digit ids, phone numbers and secret-named keys never reach the log line."""
    event = {
        "event": "lookup of 001203004567 by 0912345678",
        "old_id": 123456789,
        "client_secret": "s3cr3t",
        "nested": {"Authorization": "Bearer abc", "note": "cmnd 012345678"},
        "list": ["84912345678"],
        "count": 42,
    }
    out = Redactor()(None, "info", event)
    text = json.dumps(out)
    for needle in ("001203004567", "0912345678", "123456789", "s3cr3t", "Bearer abc", "012345678"):
        assert needle not in text, needle
    assert out["count"] == 42
    assert out["client_secret"] == "[redacted]"


async def test_error_escaping_a_route_is_an_envelope(
    settings_for: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    """An exception outside the pipeline (a bug in any route) is bus.internal with the request
    id and no traceback; the log keeps the trace, with the personal number redacted."""

    async def broken() -> None:
        raise ValueError("internal detail 001203004567")

    app = create_app(settings_for("version: 1\n"))
    app.add_api_route("/x", broken)
    async with running(app) as client:
        reply = await client.get("/x", headers={"X-Request-ID": "escape-0001"})
    assert reply.status_code == 500
    body = reply.json()
    assert body["error"]["code"] == "bus.internal"
    assert body["request_id"] == "escape-0001"
    assert reply.headers["x-request-id"] == "escape-0001"
    assert "internal detail" not in reply.text
    assert "Traceback" not in reply.text
    log = capsys.readouterr().err
    assert "ValueError" in log
    assert "escape-0001" in log
    assert "001203004567" not in log


def test_redactor_keeps_correlation_fields_and_masks_objects() -> None:
    """request_id is never masked (it must stay searchable), while digits inside objects,
    bytes, grouped numbers and secret-like keys are."""

    class Citizen:
        def __repr__(self) -> str:
            return "Citizen(id_number='001203004567')"

        __str__ = __repr__

    event = {
        "event": "call",
        "request_id": "001203004567",
        "citizen": Citizen(),
        "raw": b"<SoDinhDanh>001203004567</SoDinhDanh>",
        "spaced": "phone 0912 345 678 or +84 912 345 678, id 001 203 004 567",
        "consumer_key": "ck-live-1",
        "session": "sess-1",
    }
    out = Redactor()(None, "info", dict(event))
    assert out["request_id"] == "001203004567"
    text = json.dumps({k: v for k, v in out.items() if k != "request_id"})
    for needle in ("001203004567", "0912 345 678", "912 345 678", "001 203 004 567"):
        assert needle not in text, needle
    assert out["consumer_key"] == "[redacted]"
    assert out["session"] == "[redacted]"


def test_redactor_keeps_the_exchange_record_id_searchable() -> None:
    """A record id is a UUID the bus makes; its hex may hold a run of digits that looks like a
    phone number, which must not be masked: the access line is how an operator finds it."""
    record_id = "01a1ffc6-4eca-7d12-8345-678912c4f516"
    out = Redactor()(None, "info", {"event": "exchange", "record_id": record_id, "seq": 123456789})
    assert out["record_id"] == record_id
    assert out["seq"] == 123456789
    assert Redactor()(None, "info", {"other_id": record_id})["other_id"] != record_id
