"""Store-and-forward: 202 with a delivery id, the in-process worker, ordering, dead letters,
the delivery API and the operator's CLI (respx upstream, real SQLite store)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx
from fastapi import FastAPI
from typer.testing import CliRunner

from bus.cli import app as cli
from bus.registry import AdapterRegistry
from bus.security.consumers import Consumers
from bus.security.store import SqliteConsumerStore
from bus.settings import Settings
from tests.support import running
from tests.test_dispatch import make

pytestmark = pytest.mark.anyio

CHANGE_URL = "https://parcels.example.test/api/parcels/{}/changes"
CHANGE = "/v1/services/land/parcel.change"


def yaml_with(
    delivery: str = "{attempts: 3, initial_wait: 0.01, max_wait: 0.05, jitter: 0}",
) -> str:
    return f"""\
version: 1
services:
  land:
    adapter: parcels
    upstream:
      base_url: https://parcels.example.test/api
      credentials: {{api_key: PARCELS_API_KEY}}
      health_path: null
    timeout: 2
    retry: none
    circuit_breaker: null
    delivery: {delivery}
"""


async def lgsp(settings: Settings, *args: str) -> Any:
    """Run the CLI on the test's store, in a thread (it runs its own event loop)."""
    env = {"LGSP_STORE_PATH": str(settings.store_path), "COLUMNS": "200"}
    result = await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def router() -> respx.MockRouter:
    return respx.MockRouter(assert_all_called=False)


def fast(settings: Settings) -> Settings:
    return settings.model_copy(update={"delivery_poll_seconds": 0.02})


async def until(client: httpx.AsyncClient, delivery_id: str, *states: str) -> dict[str, Any]:
    """Poll the delivery API until the delivery reaches one of ``states`` (5 s at most)."""
    for _ in range(500):
        view = (await client.get(f"/v1/deliveries/{delivery_id}")).json()["data"]
        if view["state"] in states:
            return dict(view)
        await asyncio.sleep(0.01)
    raise AssertionError(f"{delivery_id} stayed {view['state']}")


def receiver(router: respx.MockRouter, *, fail_first: int = 0, status: int = 503) -> list[Any]:
    """An upstream that de-duplicates by Idempotency-Key; returns the list of applied changes."""
    applied: list[Any] = []
    seen: dict[str, str] = {}
    failures = [fail_first]

    def handle(request: httpx.Request) -> httpx.Response:
        if failures[0] > 0:
            failures[0] -= 1
            return httpx.Response(status)
        key = request.headers["idempotency-key"]
        if key not in seen:
            seen[key] = f"c-{len(seen) + 1}"
            parcel = request.url.path.split("/")[-2]
            applied.append((parcel, json.loads(request.content)["change"], key))
        return httpx.Response(201, json={"id": seen[key]})

    router.post(url__regex=r"https://parcels\.example\.test/api/parcels/.*/changes").mock(
        side_effect=handle
    )
    return applied


def build(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
    text: str | None = None,
) -> FastAPI:
    app, _ = make(example_plugin, fast(settings_for(text or yaml_with())), router)
    return app


async def test_async_operation_answers_202_and_is_delivered(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
) -> None:
    """202 with a delivery id and Location; the worker delivers it with the delivery id as the
    upstream's idempotency key; GET shows it delivered with its result and attempt."""
    applied = receiver(router)
    app = build(example_plugin, settings_for, router)
    async with running(app) as client:
        reply = await client.post(CHANGE, json={"parcel_id": "12-0034", "change": "ODT->TMD"})
        assert reply.status_code == 202
        data = reply.json()["data"]
        delivery_id = data["delivery_id"]
        assert delivery_id.startswith("dlv_")
        assert reply.headers["location"] == f"/v1/deliveries/{delivery_id}" == data["status_url"]
        view = await until(client, delivery_id, "delivered")
    assert applied == [("12-0034", "ODT->TMD", delivery_id)]
    assert view["result"] == {"change_id": "c-1"}
    assert view["request_id"] == reply.headers["x-request-id"]
    assert [a["outcome"] for a in view["attempt_log"]] == ["ok"]


async def test_retries_then_delivers_and_keeps_order_per_parcel(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
) -> None:
    """The first attempts fail; every message still arrives once, and the changes of one parcel
    arrive in the order they were queued."""
    applied = receiver(router, fail_first=2)
    app = build(example_plugin, settings_for, router)
    sent: list[tuple[str, str]] = []
    async with running(app) as client:
        ids = []
        for i in range(5):
            for parcel in ("12-0001", "12-0002"):
                change = f"step {i}"
                reply = await client.post(CHANGE, json={"parcel_id": parcel, "change": change})
                ids.append(reply.json()["data"]["delivery_id"])
                sent.append((parcel, change))
        views = [await until(client, i, "delivered") for i in ids]
    assert sorted((p, c) for p, c, _ in applied) == sorted(sent)
    for parcel in ("12-0001", "12-0002"):
        order = [c for p, c, _ in applied if p == parcel]
        assert order == [f"step {i}" for i in range(5)]
    assert sum(v["attempts"] for v in views) == 10 + 2


async def test_last_attempt_moves_to_dead_letters_and_the_cli_replays_it(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
) -> None:
    """An upstream down for three attempts: the delivery is dead with each attempt's error;
    `lgsp deliveries replay-dead` queues it again and it is delivered."""
    applied = receiver(router, fail_first=3)
    settings = settings_for(yaml_with())
    app = build(example_plugin, lambda _: settings, router)
    async with running(app) as client:
        reply = await client.post(CHANGE, json={"parcel_id": "12-0034", "change": "x"})
        delivery_id = reply.json()["data"]["delivery_id"]
        dead = await until(client, delivery_id, "dead")
        assert dead["attempts"] == 3
        assert dead["last_error"]["code"] == "upstream.unavailable"
        assert [a["outcome"] for a in dead["attempt_log"]] == ["error"] * 3
        listed = await lgsp(settings, "deliveries", "list", "--state", "dead", "--json")
        assert [d["delivery_id"] for d in json.loads(listed.output)["deliveries"]] == [delivery_id]
        replayed = await lgsp(settings, "deliveries", "replay-dead")
        assert "1 dead delivery queued again" in replayed.output
        app.state.gateway.deliveries_waiting.set()
        done = await until(client, delivery_id, "delivered")
    assert done["attempts"] == 4
    assert len(applied) == 1


async def test_rejected_message_is_dead_at_once(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
) -> None:
    """An upstream refusal (400) cannot be fixed by retrying: dead after one attempt."""
    receiver(router, fail_first=10, status=400)
    app = build(example_plugin, settings_for, router)
    async with running(app) as client:
        reply = await client.post(CHANGE, json={"parcel_id": "12-0034", "change": "x"})
        dead = await until(client, reply.json()["data"]["delivery_id"], "dead")
    assert dead["attempts"] == 1
    assert dead["last_error"]["code"] == "upstream.rejected"


async def test_dead_head_blocks_its_parcel_until_discarded(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
) -> None:
    """A dead message holds back the later messages of the same parcel (never out of order);
    other parcels flow; discarding the dead one lets the parcel's next message go."""
    applied = receiver(router, fail_first=1, status=400)
    settings = settings_for(yaml_with())
    app = build(example_plugin, lambda _: settings, router)
    async with running(app) as client:
        first = (await client.post(CHANGE, json={"parcel_id": "12-0001", "change": "a"})).json()
        await until(client, first["data"]["delivery_id"], "dead")
        second = (await client.post(CHANGE, json={"parcel_id": "12-0001", "change": "b"})).json()
        other = (await client.post(CHANGE, json={"parcel_id": "12-0002", "change": "c"})).json()
        await until(client, other["data"]["delivery_id"], "delivered")
        held = (
            await client.get(
                second["status_url"]
                if "status_url" in second
                else f"/v1/deliveries/{second['data']['delivery_id']}"
            )
        ).json()
        assert held["data"]["state"] == "queued"
        await lgsp(settings, "deliveries", "discard", first["data"]["delivery_id"])
        app.state.gateway.deliveries_waiting.set()
        await until(client, second["data"]["delivery_id"], "delivered")
    assert [(p, c) for p, c, _ in applied] == [("12-0002", "c"), ("12-0001", "b")]


async def test_idempotency_key_on_async_operation_returns_the_same_delivery(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
) -> None:
    """The caller's retry of a queued message with its key does not queue it twice."""
    applied = receiver(router)
    app = build(example_plugin, settings_for, router)
    headers = {"Idempotency-Key": "dossier-42-status-4"}
    body = {"parcel_id": "12-0034", "change": "x"}
    async with running(app) as client:
        first = await client.post(CHANGE, json=body, headers=headers)
        again = await client.post(CHANGE, json=body, headers=headers)
        await until(client, first.json()["data"]["delivery_id"], "delivered")
    assert again.status_code == 202
    assert again.json()["data"] == first.json()["data"]
    assert again.headers["location"] == first.headers["location"]
    assert len(applied) == 1


async def test_unknown_delivery_is_a_404_envelope(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
) -> None:
    app = build(example_plugin, settings_for, router)
    async with running(app) as client:
        reply = await client.get("/v1/deliveries/dlv_000000000000000000000000")
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "client.not_found"


async def test_shutdown_gives_in_flight_deliveries_back(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
) -> None:
    """A delivery still in flight when the grace period ends goes back to the queue, not lost,
    and no attempt is counted against it."""
    arrived = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        arrived.set()
        await asyncio.sleep(30)
        return httpx.Response(201, json={"id": "never"})

    router.post(url__regex=r".*/changes").mock(side_effect=hang)
    settings = fast(settings_for(yaml_with())).model_copy(update={"grace_seconds": 0.05})
    app, _ = make(example_plugin, settings, router)
    async with running(app) as client:
        reply = await client.post(CHANGE, json={"parcel_id": "12-0034", "change": "x"})
        await arrived.wait()
    delivery_id = reply.json()["data"]["delivery_id"]
    result = await lgsp(settings, "deliveries", "show", delivery_id, "--json")
    shown = json.loads(result.output)
    assert shown["state"] == "queued"
    assert shown["attempts"] == 0


async def test_a_consumer_sees_only_its_own_deliveries(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
    sensitive: Callable[[str], str],
) -> None:
    """With required auth, another consumer's delivery id is a 404 (its existence is not
    confirmed); keys are per consumer, so the same Idempotency-Key of two consumers is two
    deliveries; a call without credentials is 401."""
    receiver(router)
    settings = fast(settings_for(yaml_with(), auth="required"))
    app, _ = make(example_plugin, settings, router)
    store = SqliteConsumerStore(settings.store_path)
    consumers = Consumers(store)
    keys = {}
    for cid in ("one-stop-shop", "land-office"):
        await consumers.create(cid, cid, rights=["land/*"])
        keys[cid] = sensitive((await consumers.create_key(cid))[0])
    await store.close()
    body = {"parcel_id": "12-0034", "change": "x"}
    async with running(app) as client:

        async def post(cid: str) -> str:
            headers = {"X-API-Key": keys[cid], "Idempotency-Key": "same-key"}
            reply = await client.post(CHANGE, json=body, headers=headers)
            assert reply.status_code == 202, reply.text
            return str(reply.json()["data"]["delivery_id"])

        mine, theirs = await post("one-stop-shop"), await post("land-office")
        assert mine != theirs
        own = await client.get(
            f"/v1/deliveries/{mine}", headers={"X-API-Key": keys["one-stop-shop"]}
        )
        other = await client.get(
            f"/v1/deliveries/{theirs}", headers={"X-API-Key": keys["one-stop-shop"]}
        )
        anonymous = await client.get(f"/v1/deliveries/{mine}")
    assert own.status_code == 200
    assert own.json()["data"]["delivery_id"] == mine
    assert other.status_code == 404
    assert other.json()["error"]["code"] == "client.not_found"
    assert anonymous.status_code == 401


async def test_a_full_bulkhead_does_not_use_up_delivery_attempts(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
) -> None:
    """While synchronous calls fill the upstream's bulkhead, a delivery waits without counting
    attempts (nothing reached the upstream), then goes through in one attempt."""
    release, reading = asyncio.Event(), asyncio.Event()

    async def stuck(request: httpx.Request) -> httpx.Response:
        reading.set()
        await release.wait()
        return httpx.Response(200, json={"id": "12-0034", "area": 5, "use": "ODT"})

    router.get("https://parcels.example.test/api/parcels/12-0034").mock(side_effect=stuck)
    applied = receiver(router)
    one_at_a_time = yaml_with("{attempts: 2, initial_wait: 0.01, max_wait: 0.05, jitter: 0}")
    app = build(example_plugin, settings_for, router, one_at_a_time + "    max_in_flight: 1\n")
    async with running(app) as client:
        read = asyncio.create_task(
            client.post("/v1/services/land/parcel.get", json={"parcel_id": "12-0034"})
        )
        await reading.wait()
        queued = await client.post(CHANGE, json={"parcel_id": "12-0034", "change": "x"})
        delivery_id = queued.json()["data"]["delivery_id"]
        await asyncio.sleep(0.3)  # the worker meets the full bulkhead, more than twice
        waiting = (await client.get(f"/v1/deliveries/{delivery_id}")).json()["data"]
        release.set()
        assert (await read).status_code == 200
        done = await until(client, delivery_id, "delivered")
    assert waiting["state"] == "queued"
    assert waiting["attempts"] == 0
    assert done["attempts"] == 1
    assert len(applied) == 1


async def test_cli_retry_and_show_a_dead_delivery(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
) -> None:
    """`lgsp deliveries show` names each attempt's error; `retry` gives a dead delivery a fresh
    round of attempts and it is delivered; retrying a delivered one is refused plainly."""
    applied = receiver(router, fail_first=3)
    settings = settings_for(yaml_with())
    app = build(example_plugin, lambda _: settings, router)
    async with running(app) as client:
        reply = await client.post(CHANGE, json={"parcel_id": "12-0034", "change": "x"})
        delivery_id = reply.json()["data"]["delivery_id"]
        await until(client, delivery_id, "dead")
        shown = await lgsp(settings, "deliveries", "show", delivery_id)
        assert "dead" in shown.output
        assert shown.output.count("upstream.unavailable") == 3
        retried = await lgsp(settings, "deliveries", "retry", delivery_id)
        assert "queued" in retried.output
        app.state.gateway.deliveries_waiting.set()
        await until(client, delivery_id, "delivered")
    env = {"LGSP_STORE_PATH": str(settings.store_path)}
    again = await asyncio.to_thread(
        CliRunner().invoke, cli, ["deliveries", "retry", delivery_id], env=env
    )
    assert again.exit_code == 2
    assert "delivered" in again.output
    assert "Traceback" not in again.output
    assert len(applied) == 1


async def test_a_delivery_attempt_is_recorded_on_behalf_of_the_officer(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
) -> None:
    """The officer (X-User-Id) of the call that queued a message is kept with it: the delivery
    attempt's exchange record names the officer, as the queuing call's record does."""
    receiver(router)
    app, recorder = make(example_plugin, fast(settings_for(yaml_with())), router)
    async with running(app) as client:
        reply = await client.post(
            CHANGE,
            json={"parcel_id": "12-0034", "change": "ODT->TMD"},
            headers={"X-User-Id": "canbo.017"},
        )
        await until(client, reply.json()["data"]["delivery_id"], "delivered")
    by_kind = {e.kind: e for e in recorder.exchanges}
    assert by_kind["call"].end_user == by_kind["delivery"].end_user == "canbo.017"
    assert by_kind["delivery"].delivery_id == reply.json()["data"]["delivery_id"]
    assert by_kind["delivery"].attempts == 1
