"""`lgsp consumers` and `lgsp keys`: the operator's tools for consumers, rights, limits and keys."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from bus.cli import app
from bus.security.credentials import verify_api_secret, verify_client_secret
from bus.security.store import SqliteConsumerStore

runner = CliRunner()

Lgsp = Callable[..., Result]


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "s.db"


@pytest.fixture
def lgsp(store_path: Path) -> Lgsp:
    """Run `lgsp ARGS...` against a fresh store file."""

    def run(*args: str) -> Result:
        return runner.invoke(app, list(args), env={"LGSP_STORE_PATH": str(store_path)})

    return run


def _secret(output: str, label: str) -> str:
    match = re.search(rf"^{label}: (\S+)$", output, re.MULTILINE)
    assert match is not None, output
    return match.group(1)


def _stored_bytes(store_path: Path) -> bytes:
    """Every byte SQLite keeps for the store: the file and any WAL or shared-memory file."""
    return b"".join(p.read_bytes() for p in sorted(store_path.parent.glob(f"{store_path.name}*")))


def _json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _refused(result: Result, *reasons: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for reason in reasons:
        assert reason in result.output


def _stored_secret_hash(store_path: Path, consumer_id: str) -> str | None:
    async def read() -> str | None:
        store = SqliteConsumerStore(store_path)
        try:
            return await store.secret_hash(consumer_id)
        finally:
            await store.close()

    return asyncio.run(read())


@pytest.fixture
def one_stop(lgsp: Lgsp) -> str:
    """A consumer `one-stop` holding two rights; returns its client secret."""
    result = lgsp(
        "consumers", "add", "one-stop", "--name", "Một cửa tỉnh", "--agency", "000.00.00.H01",
        "--grant", "population/citizen.lookup", "--grant", "echo/*",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return _secret(result.stdout, "client secret")


def test_help_lists_the_consumer_and_key_groups() -> None:
    """`lgsp --help` names the consumers and keys groups, each with its commands."""
    assert {"consumers", "keys"} <= set(runner.invoke(app, ["--help"]).output.split())
    consumers = runner.invoke(app, ["consumers", "--help"]).output
    for command in ("add", "list", "show", "suspend", "activate", "grant", "revoke", "limits"):
        assert command in consumers
    assert "rotate-secret" in consumers
    keys = runner.invoke(app, ["keys", "--help"]).output
    for command in ("create", "revoke", "list"):
        assert command in keys


def test_add_prints_the_summary_and_the_secret_once(
    lgsp: Lgsp, store_path: Path, one_stop: str
) -> None:
    """`consumers add` creates an active consumer and prints a working secret with a
    shown-once warning; the store holds only its hash."""
    assert verify_client_secret(one_stop, _stored_secret_hash(store_path, "one-stop"))
    assert one_stop.encode() not in _stored_bytes(store_path)
    shown = _json(lgsp("consumers", "show", "one-stop", "--json"))
    assert shown["status"] == "active"
    assert shown["agency"] == "000.00.00.H01"
    assert shown["rights"] == ["echo/*", "population/citizen.lookup"]


def test_add_output_names_the_consumer_and_warns(lgsp: Lgsp) -> None:
    """The human output of `consumers add` summarises the consumer and says to store the
    secret now."""
    result = lgsp("consumers", "add", "dms", "--name", "Document system", "--rate", "5")
    assert result.exit_code == 0, result.output
    assert "consumer dms (Document system): active" in result.output
    assert "5/s, burst 40" in result.output
    assert "Shown once" in result.output
    assert "Store it now" in result.output
    assert "client id: dms" in result.stdout


def test_add_json_gives_the_consumer_and_its_secret(lgsp: Lgsp, store_path: Path) -> None:
    """`consumers add --json` gives scripts the consumer view and the client secret."""
    added = _json(
        lgsp("consumers", "add", "portal", "--name", "Portal", "--daily-quota", "500", "--json")
    )
    assert added["consumer"]["id"] == "portal"
    assert added["consumer"]["limits"]["daily_quota"] == 500
    assert added["consumer"]["keys"] == []
    assert verify_client_secret(added["client_secret"], _stored_secret_hash(store_path, "portal"))


def test_add_refuses_a_bad_right_with_the_reason(lgsp: Lgsp) -> None:
    """A malformed --grant exits 2 naming the right and the expected form; nothing is created."""
    result = lgsp("consumers", "add", "dms", "--name", "DMS", "--grant", "population")
    _refused(result, "'population' is not a right", "service/operation")
    assert _json(lgsp("consumers", "list", "--json")) == []


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["Bad Id", "--name", "x"], "not a valid consumer id"),
        (["dms", "--name", "  "], "display name"),
        (["dms", "--name", "x", "--rate", "0"], "above 0"),
        (["dms", "--name", "x", "--burst", "0"], "--burst"),
    ],
)
def test_add_refuses_bad_input(lgsp: Lgsp, args: list[str], reason: str) -> None:
    """An invalid id, an empty name, a zero rate or burst exit 2 with the reason."""
    _refused(lgsp("consumers", "add", *args), reason)


def test_add_refuses_a_duplicate_id(lgsp: Lgsp, store_path: Path, one_stop: str) -> None:
    """Adding an id that exists exits 2 and leaves the first consumer and its secret as they
    were."""
    _refused(lgsp("consumers", "add", "one-stop", "--name", "Again"), "already exists")
    assert _json(lgsp("consumers", "show", "one-stop", "--json"))["name"] == "Một cửa tỉnh"
    assert verify_client_secret(one_stop, _stored_secret_hash(store_path, "one-stop"))


def test_list_shows_a_table_without_secrets(lgsp: Lgsp, one_stop: str) -> None:
    """`consumers list` shows id, name, agency, status, rights count and limits, no secret."""
    lgsp("consumers", "add", "dms", "--name", "DMS")
    result = lgsp("consumers", "list")
    assert result.exit_code == 0, result.output
    assert "Consumers (2)" in result.output
    row = next(line for line in result.output.splitlines() if "one-stop" in line)
    assert "Một cửa tỉnh" in row
    assert "active" in row
    assert " 2 " in row
    assert "20/s" in row
    assert one_stop not in result.output


def test_list_json_is_machine_readable(lgsp: Lgsp, one_stop: str) -> None:
    """`consumers list --json` gives every consumer's fields and no secret or hash."""
    listed = _json(lgsp("consumers", "list", "--json"))
    assert listed == [
        {
            "id": "one-stop",
            "name": "Một cửa tỉnh",
            "agency": "000.00.00.H01",
            "status": "active",
            "rights": ["echo/*", "population/citizen.lookup"],
            "limits": {"rate_per_second": 20.0, "burst": 40, "daily_quota": None, "quotas": {}},
            "created_at": listed[0]["created_at"],
        }
    ]
    assert "scrypt" not in json.dumps(listed)


def test_show_lists_fields_rights_and_keys_never_hashes(
    lgsp: Lgsp, store_path: Path, one_stop: str
) -> None:
    """`consumers show` prints every field, each right and each key with id and dates, and
    neither the secret nor any hash."""
    key = _secret(lgsp("keys", "create", "one-stop").stdout, "API key")
    key_id = key.split("_")[1]
    result = lgsp("consumers", "show", "one-stop")
    assert result.exit_code == 0, result.output
    for text in ("one-stop", "Một cửa tỉnh", "000.00.00.H01", "active", "20/s, burst 40"):
        assert text in result.output
    assert "population/citizen.lookup" in result.output
    assert "echo/*" in result.output
    assert key_id in result.output
    assert "API keys (1)" in result.output
    secret_hash = _stored_secret_hash(store_path, "one-stop")
    assert secret_hash is not None
    for secret in (one_stop, key, key.split("_", 2)[2], secret_hash, "scrypt"):
        assert secret not in result.output


def test_show_json_marks_a_revoked_key(lgsp: Lgsp, one_stop: str) -> None:
    """`consumers show --json` lists keys with their status and revocation time, no key."""
    key = _secret(lgsp("keys", "create", "one-stop").stdout, "API key")
    key_id = key.split("_")[1]
    assert lgsp("keys", "revoke", key_id).exit_code == 0
    shown = _json(lgsp("consumers", "show", "one-stop", "--json"))
    (listed,) = shown["keys"]
    assert listed["key_id"] == key_id
    assert listed["status"] == "revoked"
    assert listed["revoked_at"]
    assert set(listed) == {"key_id", "consumer_id", "status", "created_at", "revoked_at"}
    assert key.split("_", 2)[2] not in json.dumps(shown)


@pytest.mark.parametrize(
    "command",
    [
        ["consumers", "show", "nobody"],
        ["consumers", "show", "nobody", "--json"],
        ["consumers", "suspend", "nobody"],
        ["consumers", "activate", "nobody"],
        ["consumers", "grant", "nobody", "echo/*"],
        ["consumers", "revoke", "nobody", "echo/*"],
        ["consumers", "limits", "nobody", "--rate", "1"],
        ["consumers", "rotate-secret", "nobody"],
        ["keys", "create", "nobody"],
        ["keys", "list", "nobody"],
    ],
)
def test_unknown_consumer_exits_2(lgsp: Lgsp, command: list[str]) -> None:
    """Every command naming an unknown consumer exits 2 saying so, without a traceback."""
    _refused(lgsp(*command), "no consumer with id 'nobody'")


def test_suspend_and_activate(lgsp: Lgsp, one_stop: str) -> None:
    """`suspend` and `activate` switch the consumer's status and print it."""
    result = lgsp("consumers", "suspend", "one-stop")
    assert result.exit_code == 0, result.output
    assert "suspended" in result.output
    assert _json(lgsp("consumers", "show", "one-stop", "--json"))["status"] == "suspended"
    assert lgsp("consumers", "activate", "one-stop").exit_code == 0
    assert _json(lgsp("consumers", "show", "one-stop", "--json"))["status"] == "active"


def test_grant_and_revoke_several_rights(lgsp: Lgsp, one_stop: str) -> None:
    """`grant` and `revoke` take several rights at once."""
    result = lgsp("consumers", "grant", "one-stop", "tax/invoice.get", "payment/*")
    assert result.exit_code == 0, result.output
    assert "tax/invoice.get" in result.output
    rights = _json(lgsp("consumers", "show", "one-stop", "--json"))["rights"]
    assert rights == ["echo/*", "payment/*", "population/citizen.lookup", "tax/invoice.get"]
    assert lgsp("consumers", "revoke", "one-stop", "echo/*", "payment/*").exit_code == 0
    rights = _json(lgsp("consumers", "show", "one-stop", "--json"))["rights"]
    assert rights == ["population/citizen.lookup", "tax/invoice.get"]


def test_grant_refuses_a_bad_right_and_grants_nothing(lgsp: Lgsp, one_stop: str) -> None:
    """One malformed right among several exits 2 with its reason; none is granted."""
    result = lgsp("consumers", "grant", "one-stop", "tax/invoice.get", "tax invoice")
    _refused(result, "grant[1]", "'tax invoice' is not a right")
    rights = _json(lgsp("consumers", "show", "one-stop", "--json"))["rights"]
    assert rights == ["echo/*", "population/citizen.lookup"]


def test_revoke_refuses_a_right_not_held(lgsp: Lgsp, one_stop: str) -> None:
    """Revoking a right the consumer does not hold exits 2 naming it; nothing is revoked."""
    result = lgsp("consumers", "revoke", "one-stop", "echo/*", "tax/invoice.get")
    _refused(result, "does not hold the right 'tax/invoice.get'")
    rights = _json(lgsp("consumers", "show", "one-stop", "--json"))["rights"]
    assert rights == ["echo/*", "population/citizen.lookup"]


def test_limits_change_only_what_is_given(lgsp: Lgsp, one_stop: str) -> None:
    """`limits` sets the options given and keeps the rest; =none removes a per-operation
    quota and --no-daily-quota the daily one."""
    result = lgsp(
        "consumers", "limits", "one-stop", "--rate", "2.5", "--daily-quota", "1000",
        "--quota", "population/citizen.lookup=50", "--quota", "echo/echo=0",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "2.5/s" in result.output
    limits = _json(lgsp("consumers", "show", "one-stop", "--json"))["limits"]
    assert limits == {
        "rate_per_second": 2.5,
        "burst": 40,
        "daily_quota": 1000,
        "quotas": {"echo/echo": 0, "population/citizen.lookup": 50},
    }
    result = lgsp(
        "consumers", "limits", "one-stop", "--burst", "5", "--no-daily-quota",
        "--quota", "echo/echo=none",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    limits = _json(lgsp("consumers", "show", "one-stop", "--json"))["limits"]
    assert limits == {
        "rate_per_second": 2.5,
        "burst": 5,
        "daily_quota": None,
        "quotas": {"population/citizen.lookup": 50},
    }


def test_limits_without_options_shows_them(lgsp: Lgsp, one_stop: str) -> None:
    """`limits ID` alone prints the current limits and changes nothing."""
    result = lgsp("consumers", "limits", "one-stop")
    assert result.exit_code == 0, result.output
    assert "20/s, burst 40, no daily quota" in result.output


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--quota", "echo/*=5"], "a quota is per operation"),
        (["--quota", "echo=5"], "'echo' is not a right"),
        (["--quota", "echo/echo=many"], "service/operation=N"),
        (["--rate", "-1"], "above 0"),
        (["--daily-quota", "-1"], "--daily-quota"),
        (["--daily-quota", "5", "--no-daily-quota"], "not both"),
    ],
)
def test_limits_refuses_bad_values(lgsp: Lgsp, one_stop: str, args: list[str], reason: str) -> None:
    """Malformed limits exit 2 with the reason and change nothing."""
    _refused(lgsp("consumers", "limits", "one-stop", *args), reason)
    limits = _json(lgsp("consumers", "show", "one-stop", "--json"))["limits"]
    assert limits == {"rate_per_second": 20.0, "burst": 40, "daily_quota": None, "quotas": {}}


def test_rotate_secret_shows_a_new_secret_once(lgsp: Lgsp, store_path: Path, one_stop: str) -> None:
    """`rotate-secret` prints a new working secret once; the old one stops working and
    neither is in the store file."""
    result = lgsp("consumers", "rotate-secret", "one-stop")
    assert result.exit_code == 0, result.output
    assert "Shown once" in result.output
    new = _secret(result.stdout, "client secret")
    stored = _stored_secret_hash(store_path, "one-stop")
    assert new != one_stop
    assert verify_client_secret(new, stored)
    assert not verify_client_secret(one_stop, stored)
    assert new.encode() not in _stored_bytes(store_path)
    rotated = _json(lgsp("consumers", "rotate-secret", "one-stop", "--json"))
    assert rotated["consumer_id"] == "one-stop"
    assert verify_client_secret(
        rotated["client_secret"], _stored_secret_hash(store_path, "one-stop")
    )
    assert new not in lgsp("consumers", "show", "one-stop", "--json").stdout


def test_keys_create_shows_the_key_once(lgsp: Lgsp, store_path: Path, one_stop: str) -> None:
    """`keys create` prints the full key once with the warning; the store keeps only its
    hash, and `keys list` shows it active without the key."""
    result = lgsp("keys", "create", "one-stop")
    assert result.exit_code == 0, result.output
    assert "Shown once" in result.output
    key = _secret(result.stdout, "API key")
    _, key_id, secret = key.split("_", 2)
    assert key_id in result.output
    stored = _stored_bytes(store_path)
    assert key.encode() not in stored
    assert secret.encode() not in stored

    async def stored_hash() -> str:
        store = SqliteConsumerStore(store_path)
        try:
            record = await store.get_key(key_id)
        finally:
            await store.close()
        assert record is not None
        return record.key_hash

    assert verify_api_secret(secret, asyncio.run(stored_hash()))
    listed = lgsp("keys", "list", "one-stop")
    assert listed.exit_code == 0, listed.output
    assert key_id in listed.output
    assert "active" in listed.output
    assert secret not in listed.output


def test_keys_create_json(lgsp: Lgsp, one_stop: str) -> None:
    """`keys create --json` gives the key's view and the full key."""
    created = _json(lgsp("keys", "create", "one-stop", "--json"))
    assert created["api_key"].startswith(f"lgsp_{created['key']['key_id']}_")
    assert created["key"]["status"] == "active"
    assert created["key"]["consumer_id"] == "one-stop"


def test_keys_revoke_marks_the_key_revoked(lgsp: Lgsp, one_stop: str) -> None:
    """`keys revoke` revokes the key; `keys list` shows it revoked with the time, and a second
    revoke exits 2."""
    key_id = _json(lgsp("keys", "create", "one-stop", "--json"))["key"]["key_id"]
    other = _json(lgsp("keys", "create", "one-stop", "--json"))["key"]["key_id"]
    result = lgsp("keys", "revoke", key_id)
    assert result.exit_code == 0, result.output
    assert f"API key {key_id} of one-stop revoked" in result.output
    keys = {k["key_id"]: k for k in _json(lgsp("keys", "list", "one-stop", "--json"))}
    assert keys[key_id]["status"] == "revoked"
    assert keys[key_id]["revoked_at"]
    assert keys[other]["status"] == "active"
    table = lgsp("keys", "list", "one-stop").output
    assert "revoked" in next(line for line in table.splitlines() if key_id in line)
    _refused(lgsp("keys", "revoke", key_id), "already revoked")


def test_keys_revoke_unknown_key_exits_2(lgsp: Lgsp) -> None:
    """Revoking a key id that does not exist exits 2 saying so."""
    _refused(lgsp("keys", "revoke", "000000000000"), "no API key with id '000000000000'")


@pytest.mark.parametrize("kind", ["directory", "not-sqlite"])
def test_unusable_store_path_exits_2(tmp_path: Path, kind: str) -> None:
    """A store path that is a directory or not an SQLite file exits 2 naming the path, without
    a traceback."""
    path = tmp_path
    if kind == "not-sqlite":
        path = tmp_path / "junk.db"
        path.write_bytes(b"not a database " * 400)
    result = runner.invoke(app, ["consumers", "list"], env={"LGSP_STORE_PATH": str(path)})
    _refused(result, "cannot use the store", str(path))


def test_webhook_set_show_rotate_and_remove(lgsp: Lgsp, store_path: Path) -> None:
    """Setting a webhook prints its signing secret; showing it hides the secret; a new URL keeps
    the secret unless --rotate-secret; bad URLs and unknown consumers are refused plainly."""
    assert lgsp("consumers", "add", "motcua", "--name", "One-stop-shop").exit_code == 0
    first = lgsp("consumers", "webhook", "motcua", "http://127.0.0.1:9/events")
    assert first.exit_code == 0, first.output
    secret = _secret(first.stdout, "signing secret")
    assert secret.startswith("whsec_")
    shown = _json(lgsp("consumers", "webhook", "motcua", "--json"))
    assert shown["url"] == "http://127.0.0.1:9/events"
    assert "secret" not in shown
    moved = _json(lgsp("consumers", "webhook", "motcua", "https://motcua.example/hook", "--json"))
    assert moved["secret"] == secret
    rotated = _json(
        lgsp(
            "consumers",
            "webhook",
            "motcua",
            "https://motcua.example/hook",
            "--rotate-secret",
            "--json",
        )
    )
    assert rotated["secret"] != secret
    _refused(lgsp("consumers", "webhook", "motcua", "ftp://motcua.example"), "http(s) URL")
    _refused(lgsp("consumers", "webhook", "nobody", "http://a.example/h"), "no consumer")
    assert lgsp("consumers", "webhook", "motcua", "--remove").exit_code == 0
    _refused(lgsp("consumers", "webhook", "motcua"), "has no webhook")
