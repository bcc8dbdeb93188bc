"""Capture level ``full`` through the bus against the live mocks: the exchange log keeps the
bodies, but no personal id and no name in clear anywhere in its files or in the logs; an
auditor holding the keys reads the bodies and finds the exchange by the citizen's id; the
officer on whose behalf the lookup was made reaches the population database as MaCanBo."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from bus import create_app
from bus.audit.log import open_audit
from bus.audit.store import AuditQuery
from bus.settings import Settings
from mocks.population.seed import Registry
from mocks.stack import DEMO_CONSUMER_KEY, DEMO_CONSUMER_SECRET, MockStack
from tests.support import running

pytestmark = [pytest.mark.anyio, pytest.mark.live]

ENV = {"NGSP_CONSUMER_KEY": DEMO_CONSUMER_KEY, "NGSP_CONSUMER_SECRET": DEMO_CONSUMER_SECRET}


def bus_yaml(stack: MockStack) -> str:
    return f"""\
version: 1
services:
  population:
    adapter: population
    audit: full
    upstream:
      base_url: {stack.urls["ngsp"]}
      credentials: {{consumer_key: NGSP_CONSUMER_KEY, consumer_secret: NGSP_CONSUMER_SECRET}}
    timeout: 10
    retry: none
"""


def forms(text: str) -> set[bytes]:
    """Every way a value could sit in a file: UTF-8 in NFC and NFD, and JSON-escaped."""
    found = set()
    for form in ("NFC", "NFD"):
        value = unicodedata.normalize(form, text)
        found |= {value.encode(), json.dumps(value).strip('"').encode()}
    return found


def log_files(settings: Settings) -> list[Path]:
    audit = settings.audit_file()
    return [p for p in audit.parent.iterdir() if p.name.startswith(audit.name)]


async def test_full_capture_keeps_no_personal_data_in_clear(
    stack: MockStack, settings_for: Callable[..., Settings], sensitive: Callable[[str], str]
) -> None:
    seeded: Registry = stack.apps["population"].state.registry
    person = seeded.citizens[3]
    sensitive(person.id)
    sensitive(person.name.full)
    sensitive(DEMO_CONSUMER_SECRET)
    settings = settings_for(bus_yaml(stack))
    async with running(create_app(settings, environ=ENV)) as client:
        reply = await client.post(
            "/v1/services/population/citizen.lookup",
            json={"personal_id": person.id},
            headers={"X-User-Id": "canbo.042"},
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["data"]["citizen"]["name"]["full"] == person.name.full
        request_id = reply.headers["x-request-id"]
        async with httpx.AsyncClient() as plain:
            access = (await plain.get(f"{stack.urls['population']}/__admin/access-log")).json()
    # the officer reached the population database in its own field
    entries = [(e["operation"], e["officer"]) for e in access if e["request_id"] == request_id]
    assert entries == [("TraCuuThongTinCongDan", "canbo.042")]

    files = log_files(settings)
    assert files, "the exchange log wrote no file"
    secrets_ = forms(person.id) | forms(person.name.full) | forms(person.name.given)
    for path in files:
        content = path.read_bytes()
        for value in secrets_:
            assert value not in content, f"{path.name} holds personal data in clear"

    store, keys = open_audit(settings)
    try:
        found = await store.query(AuditQuery(subject=keys.blind(person.id)), limit=10)
        other = await store.query(AuditQuery(subject=keys.blind("001099000000")), limit=10)
    finally:
        await store.close()
    assert other == []
    (record,) = found
    data = record.parsed()
    assert (data["request_id"], data["end_user"], data["capture"]) == (
        request_id,
        "canbo.042",
        "full",
    )
    assert data["upstream_exchanges"], "the raw SOAP exchange is digested in the record"
    plain_body = json.loads(keys.decrypt(data["body"], record.id.encode()))
    assert json.loads(plain_body["request"])["personal_id"] == person.id
    reply_body = json.loads(plain_body["reply"])
    assert reply_body["data"]["citizen"]["name"]["full"] == person.name.full
