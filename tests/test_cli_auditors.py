"""`lgsp auditors`: the operator's tools for the auditors who read the exchange log."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from typer.testing import CliRunner, Result

from bus import create_app
from bus.audit.auditors import parse_audit_key
from bus.audit.log import open_audit
from bus.audit.store import Auditor
from bus.cli import app
from bus.security.credentials import hash_api_secret
from bus.settings import Settings
from tests.support import running

runner = CliRunner()

Lgsp = Callable[..., Result]


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "s.db"


@pytest.fixture
def lgsp(store_path: Path) -> Lgsp:
    """Run `lgsp ARGS...` against a fresh store (the exchange log beside it)."""

    def run(*args: str) -> Result:
        return runner.invoke(app, list(args), env={"LGSP_STORE_PATH": str(store_path)})

    return run


def _key(output: str) -> str:
    match = re.search(r"^auditor key: (\S+)$", output, re.MULTILINE)
    assert match is not None, output
    return match.group(1)


def _json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _refused(result: Result, *reasons: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for reason in reasons:
        assert reason in result.output


def _stored(store_path: Path, auditor_id: str) -> Auditor | None:
    async def read() -> Auditor | None:
        store, _ = open_audit(Settings(store_path=store_path))
        try:
            return await store.get_auditor(auditor_id)
        finally:
            await store.close()

    return asyncio.run(read())


def _log_bytes(store_path: Path) -> bytes:
    """Every byte SQLite keeps for the exchange log: the file, its WAL and shared memory."""
    audit = Settings(store_path=store_path).audit_file()
    return b"".join(p.read_bytes() for p in sorted(audit.parent.glob(f"{audit.name}*")))


def test_help_lists_the_auditor_commands() -> None:
    assert "auditors" in runner.invoke(app, ["--help"]).output.split()
    text = runner.invoke(app, ["auditors", "--help"]).output
    for command in ("add", "list", "grant-bodies", "revoke-bodies", "suspend", "activate"):
        assert command in text


def test_add_prints_the_key_once_and_keeps_only_its_hash(
    lgsp: Lgsp, store_path: Path, sensitive: Callable[[str], str]
) -> None:
    """`auditors add` prints a well-formed key and a shown-once warning; the log keeps its
    key id and the SHA-256 of its secret, never the key."""
    result = lgsp("auditors", "add", "inspector", "--name", "Thanh tra tỉnh")
    assert result.exit_code == 0, result.output
    key = sensitive(_key(result.stdout))
    assert "auditor inspector (Thanh tra tỉnh): active, may not read bodies" in result.output
    assert "Shown once" in result.output
    parsed = parse_audit_key(key)
    assert parsed is not None
    key_id, secret = parsed
    stored = _stored(store_path, "inspector")
    assert stored is not None
    assert stored.key_hash == f"{key_id}:{hash_api_secret(secret)}"
    assert (stored.active, stored.can_read_bodies) == (True, False)
    assert secret.encode() not in _log_bytes(store_path)


def test_add_json_and_bodies(lgsp: Lgsp, sensitive: Callable[[str], str]) -> None:
    data = _json(lgsp("auditors", "add", "reader", "--name", "Reader", "--bodies", "--json"))
    key = sensitive(data["auditor_key"])
    parsed = parse_audit_key(key)
    assert parsed is not None
    assert data["auditor"] == {
        "id": "reader",
        "name": "Reader",
        "status": "active",
        "can_read_bodies": True,
        "key_id": parsed[0],
        "created_at": data["auditor"]["created_at"],
    }
    assert data["auditor"]["created_at"]


def test_list_shows_every_auditor_and_never_a_key(lgsp: Lgsp) -> None:
    lgsp("auditors", "add", "inspector", "--name", "Inspector")
    lgsp("auditors", "add", "reader", "--name", "Reader", "--bodies")
    listed = _json(lgsp("auditors", "list", "--json"))
    assert [(a["id"], a["status"], a["can_read_bodies"]) for a in listed] == [
        ("inspector", "active", False),
        ("reader", "active", True),
    ]
    assert all("key_hash" not in a and "auditor_key" not in a for a in listed)
    table = lgsp("auditors", "list")
    assert table.exit_code == 0, table.output
    assert "Auditors (2)" in table.output
    assert "inspector" in table.output
    assert "reader" in table.output
    assert "lgspaudit_" not in table.output


def test_grant_revoke_suspend_activate(lgsp: Lgsp) -> None:
    lgsp("auditors", "add", "inspector", "--name", "Inspector")

    def state() -> tuple[str, bool]:
        (one,) = _json(lgsp("auditors", "list", "--json"))
        return one["status"], one["can_read_bodies"]

    result = lgsp("auditors", "grant-bodies", "inspector")
    assert result.exit_code == 0, result.output
    assert "may read bodies" in result.output
    assert state() == ("active", True)
    assert lgsp("auditors", "suspend", "inspector").exit_code == 0
    assert state() == ("suspended", True)
    assert lgsp("auditors", "revoke-bodies", "inspector").exit_code == 0
    assert state() == ("suspended", False)
    result = lgsp("auditors", "activate", "inspector")
    assert "inspector (Inspector): active, may not read bodies" in result.output
    assert state() == ("active", False)


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("grant-bodies", "nobody"), "no auditor with id 'nobody'"),
        (("suspend", "nobody"), "no auditor with id 'nobody'"),
        (("add", "Bad Id", "--name", "X"), "not a valid auditor id"),
        (("add", "unknown", "--name", "X"), "reserved"),
        (("add", "inspector", "--name", "  "), "display name"),
    ],
)
def test_refusals_exit_2_with_the_reason(lgsp: Lgsp, args: tuple[str, ...], reason: str) -> None:
    _refused(lgsp("auditors", *args), reason)


def test_a_duplicate_id_is_refused(lgsp: Lgsp) -> None:
    assert lgsp("auditors", "add", "inspector", "--name", "One").exit_code == 0
    _refused(lgsp("auditors", "add", "inspector", "--name", "Two"), "already")


@pytest.mark.anyio
async def test_the_key_printed_opens_the_audit_api(
    lgsp: Lgsp,
    store_path: Path,
    settings_for: Callable[..., Settings],
    sensitive: Callable[[str], str],
) -> None:
    """A key made with the CLI reads the log of a gateway on the same store; suspended with
    the CLI, it is refused."""
    # The commands run their own event loop: in a thread, beside the test's.
    added = await anyio.to_thread.run_sync(lgsp, "auditors", "add", "inspector", "--name", "I")
    key = sensitive(_key(added.stdout))
    settings = settings_for(
        "version: 1\nservices:\n  echo: {adapter: echo}\n",
        auth="required",
        store_path=store_path,
    )
    headers = {"Authorization": f"Bearer {key}"}
    async with running(create_app(settings)) as client:
        assert (await client.get("/v1/audit/exchanges", headers=headers)).status_code == 200
        suspended = await anyio.to_thread.run_sync(lgsp, "auditors", "suspend", "inspector")
        assert suspended.exit_code == 0, suspended.output
        assert (await client.get("/v1/audit/exchanges", headers=headers)).status_code == 401
