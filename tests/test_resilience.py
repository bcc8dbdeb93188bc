"""Circuit breaker, bulkhead and Idempotency-Key through the real call route (respx upstream)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable

import httpx
import pytest
import respx

from bus.registry import AdapterRegistry
from bus.settings import Settings
from tests.support import StepClock, running
from tests.test_dispatch import URL, Sleeps, make

pytestmark = pytest.mark.anyio

GET = "/v1/services/land/parcel.get"
REGISTER = "/v1/services/land/parcel.register"
CHANGE = {"parcel_id": "12-0034", "change": "ODT -> TMD"}


def yaml_with(extra: str = "", retry: str = "none", timeout: float = 5) -> str:
    return f"""\
version: 1
retry_policies:
  quick: {{attempts: 3, initial_wait: 0.01, max_wait: 0.02, jitter: 0}}
services:
  land:
    adapter: parcels
    upstream:
      base_url: https://parcels.example.test/api
      credentials: {{api_key: PARCELS_API_KEY}}
      health_path: null
    timeout: {timeout}
    retry: {retry}
{extra}"""


BREAKER = (
    "    circuit_breaker: {failure_rate: 0.5, window: 10, minimum_calls: 4, open_seconds: 5}\n"
)


@pytest.fixture
def router() -> respx.MockRouter:
    return respx.MockRouter(assert_all_called=False)


async def test_breaker_opens_fails_fast_probes_and_closes(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
) -> None:
    """Four 503s open the circuit; then calls fail at once with zero upstream calls; after
    open_seconds one probe goes through, succeeds, and the circuit closes."""
    route = router.get(URL).mock(
        side_effect=[httpx.Response(503)] * 4 + [httpx.Response(200, json=PARCEL)] * 3
    )
    clock = StepClock()
    app, recorder = make(example_plugin, settings_for(yaml_with(BREAKER)), router, clock=clock)
    body = {"parcel_id": "12-0034"}
    async with running(app) as client:
        for _ in range(4):
            reply = await client.post(GET, json=body)
            assert reply.json()["error"]["code"] == "upstream.unavailable"
        assert route.call_count == 4
        ready = (await client.get("/readyz")).json()
        assert ready["upstreams"]["land"]["circuit"]["state"] == "open"
        assert ready["status"] == "degraded"

        for _ in range(3):  # open: refused at once, no upstream call
            fast = await client.post(GET, json=body)
            assert fast.status_code == 503
            assert fast.json()["error"]["code"] == "upstream.unavailable"
            assert "circuit" in fast.json()["error"]["message"]
            assert fast.headers["retry-after"] == "5"
        assert route.call_count == 4
        assert recorder.exchanges[-1].attempts == 0

        clock.t += 5  # half-open: one probe passes
        probe = await client.post(GET, json=body)
        assert probe.status_code == 200
        assert route.call_count == 5
        ready = (await client.get("/readyz")).json()
        assert ready["upstreams"]["land"]["circuit"]["state"] == "closed"
        assert ready["upstreams"]["land"]["circuit"]["opened_total"] == 1
        assert (await client.post(GET, json=body)).status_code == 200
        assert route.call_count == 6


async def test_open_circuit_ends_retries_at_once(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
) -> None:
    """A retrying call stops as soon as its failures open the circuit, instead of hammering."""
    route = router.get(URL).respond(503)
    breaker = BREAKER.replace("minimum_calls: 4", "minimum_calls: 2")
    sleeps = Sleeps()
    app, recorder = make(
        example_plugin,
        settings_for(yaml_with(breaker, retry="quick")),
        router,
        clock=StepClock(),
        sleep=sleeps,
    )
    async with running(app) as client:
        reply = await client.post(GET, json={"parcel_id": "12-0034"})
    assert reply.json()["error"]["code"] == "upstream.unavailable"
    assert route.call_count == 2  # the third attempt of "quick" met the open circuit
    assert recorder.exchanges[-1].attempts == 2


async def test_client_errors_do_not_open_the_circuit(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
) -> None:
    """A platform that answers 404 is up: refusals never open its circuit."""
    route = router.get(URL).respond(404)
    app, _ = make(example_plugin, settings_for(yaml_with(BREAKER)), router, clock=StepClock())
    async with running(app) as client:
        for _ in range(6):
            reply = await client.post(GET, json={"parcel_id": "12-0034"})
            assert reply.json()["error"]["code"] == "upstream.rejected"
        ready = (await client.get("/readyz")).json()
    assert route.call_count == 6
    assert ready["upstreams"]["land"]["circuit"]["state"] == "closed"


async def test_bulkhead_sheds_calls_beyond_its_cap(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
) -> None:
    """With max_in_flight 2 and a stuck upstream, a third concurrent call is refused at once
    with a clear upstream.unavailable; the two in flight complete."""
    release, both_in = asyncio.Event(), asyncio.Event()
    arrived: list[httpx.Request] = []

    async def stuck(request: httpx.Request) -> httpx.Response:
        arrived.append(request)
        if len(arrived) == 2:
            both_in.set()
        await release.wait()
        return httpx.Response(200, json=PARCEL)

    route = router.get(URL).mock(side_effect=stuck)
    app, _ = make(example_plugin, settings_for(yaml_with("    max_in_flight: 2\n")), router)
    body = {"parcel_id": "12-0034"}
    async with running(app) as client:
        first = asyncio.create_task(client.post(GET, json=body))
        second = asyncio.create_task(client.post(GET, json=body))
        await both_in.wait()
        shed = await client.post(GET, json=body)
        ready = (await client.get("/readyz")).json()
        release.set()
        done = await asyncio.gather(first, second)
    assert shed.status_code == 503
    assert shed.json()["error"]["code"] == "upstream.unavailable"
    assert "in flight" in shed.json()["error"]["message"]
    assert route.call_count == 2
    assert [r.status_code for r in done] == [200, 200]
    assert ready["upstreams"]["land"]["bulkhead"] == {
        "in_flight": 2,
        "max_in_flight": 2,
        "rejected_total": 1,
    }


PARCEL = {"id": "12-0034", "area": 512, "use": "ODT"}
CHANGES = URL + "/changes"


async def test_same_key_same_body_replays_without_calling_upstream(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
) -> None:
    """The second call with the key gets the first reply, marked replayed; one upstream call."""
    route = router.post(CHANGES).respond(201, json={"id": "c-1"})
    app, recorder = make(example_plugin, settings_for(yaml_with()), router)
    headers = {"Idempotency-Key": "order-7781"}
    async with running(app) as client:
        first = await client.post(REGISTER, json=CHANGE, headers=headers)
        again = await client.post(REGISTER, json=dict(reversed(CHANGE.items())), headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()  # the same envelope, original request id included
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert route.call_count == 1
    assert route.calls.last.request.headers["idempotency-key"] == "order-7781"
    assert recorder.exchanges[-1].replayed is True
    assert recorder.exchanges[-1].attempts == 0


async def test_same_key_other_body_is_refused(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
) -> None:
    """Reusing a key for another request is client.idempotency_key_reused (422), not a call."""
    route = router.post(CHANGES).respond(201, json={"id": "c-1"})
    app, _ = make(example_plugin, settings_for(yaml_with()), router)
    headers = {"Idempotency-Key": "order-7781"}
    async with running(app) as client:
        await client.post(REGISTER, json=CHANGE, headers=headers)
        other = await client.post(
            REGISTER, json={**CHANGE, "change": "something else"}, headers=headers
        )
    assert other.status_code == 422
    error = other.json()["error"]
    assert error["code"] == "client.idempotency_key_reused"
    assert error["retryable"] is False
    assert other.json()["request_id"] == other.headers["x-request-id"]
    assert route.call_count == 1


async def test_bad_key_names_the_header(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
) -> None:
    """A key with a space is a 400 naming Idempotency-Key; nothing is called."""
    route = router.post(CHANGES).respond(201, json={"id": "c-1"})
    app, _ = make(example_plugin, settings_for(yaml_with()), router)
    async with running(app) as client:
        reply = await client.post(REGISTER, json=CHANGE, headers={"Idempotency-Key": "a b"})
    assert reply.status_code == 400
    assert reply.json()["error"]["field_errors"][0]["field"] == "Idempotency-Key"
    assert route.call_count == 0


async def test_write_with_key_is_retried_and_without_key_is_not(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
) -> None:
    """A write whose upstream honours the key is retried on 503 only when a key is sent."""
    route = router.post(CHANGES).mock(
        side_effect=[httpx.Response(503), httpx.Response(201, json={"id": "c-9"})]
        + [httpx.Response(503)] * 3
    )
    app, recorder = make(
        example_plugin, settings_for(yaml_with(retry="quick")), router, sleep=Sleeps()
    )
    async with running(app) as client:
        keyed = await client.post(REGISTER, json=CHANGE, headers={"Idempotency-Key": "k-1"})
        assert keyed.status_code == 200
        assert keyed.json()["data"] == {"change_id": "c-9"}
        assert recorder.exchanges[-1].attempts == 2
        bare = await client.post(REGISTER, json=CHANGE)
    assert bare.json()["error"]["code"] == "upstream.unavailable"
    assert route.call_count == 3  # 2 for the keyed call, 1 for the bare one
    keys = [c.request.headers.get("idempotency-key") for c in route.calls]
    assert keys == ["k-1", "k-1", None]


async def test_retryable_failure_frees_the_key(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
) -> None:
    """A 503 is not stored under the key: the caller's retry with the same key is served."""
    route = router.post(CHANGES).mock(
        side_effect=[httpx.Response(503), httpx.Response(201, json={"id": "c-2"})]
    )
    app, _ = make(example_plugin, settings_for(yaml_with()), router)
    headers = {"Idempotency-Key": "k-2"}
    async with running(app) as client:
        first = await client.post(REGISTER, json=CHANGE, headers=headers)
        second = await client.post(REGISTER, json=CHANGE, headers=headers)
    assert first.status_code == 503
    assert second.status_code == 200
    assert route.call_count == 2


async def test_concurrent_same_key_is_in_progress(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
) -> None:
    """While the first call with a key is served, a second gets 409 with Retry-After."""
    release, arrived = asyncio.Event(), asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        arrived.set()
        await release.wait()
        return httpx.Response(201, json={"id": "c-3"})

    route = router.post(CHANGES).mock(side_effect=slow)
    app, _ = make(example_plugin, settings_for(yaml_with()), router)
    headers = {"Idempotency-Key": "k-3"}
    async with running(app) as client:
        first = asyncio.create_task(client.post(REGISTER, json=CHANGE, headers=headers))
        await arrived.wait()
        second = await client.post(REGISTER, json=CHANGE, headers=headers)
        release.set()
        assert (await first).status_code == 200
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "client.idempotency_in_progress"
    assert int(second.headers["retry-after"]) >= 1
    assert route.call_count == 1


async def test_expired_key_is_purged_and_free_again(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
) -> None:
    """After LGSP_IDEMPOTENCY_TTL the key is purged at start-up and may be used afresh."""
    route = router.post(CHANGES).respond(201, json={"id": "c-4"})
    clock = StepClock()
    settings = settings_for(yaml_with()).model_copy(update={"idempotency_ttl": 60})
    headers = {"Idempotency-Key": "k-4"}
    app, _ = make(example_plugin, settings, router, clock=clock)
    async with running(app) as client:
        assert (await client.post(REGISTER, json=CHANGE, headers=headers)).status_code == 200
    with sqlite3.connect(settings.store_path) as db:
        assert db.execute("SELECT count(*) FROM idempotency_keys").fetchone() == (1,)
    clock.t += 61
    app, _ = make(example_plugin, settings, router, clock=clock)
    async with running(app) as client:
        with sqlite3.connect(settings.store_path) as db:
            assert db.execute("SELECT count(*) FROM idempotency_keys").fetchone() == (0,)
        other = {**CHANGE, "change": "another change"}
        assert (await client.post(REGISTER, json=other, headers=headers)).status_code == 200
    assert route.call_count == 2


async def test_ambiguous_failure_of_a_write_without_upstream_dedup_keeps_the_key(
    example_plugin: AdapterRegistry,
    settings_for: Callable[..., Settings],
    router: respx.MockRouter,
) -> None:
    """parcel.note's upstream does not de-duplicate: after a 503 the write may have been
    applied, so the key keeps that answer and the same key never writes a second time."""
    route = router.post(URL + "/notes").mock(
        side_effect=[httpx.Response(503), httpx.Response(201, json={"id": 7})]
    )
    app, _ = make(example_plugin, settings_for(yaml_with()), router)
    headers = {"Idempotency-Key": "note-1"}
    body = {"parcel_id": "12-0034", "text": "boundary checked"}
    async with running(app) as client:
        first = await client.post("/v1/services/land/parcel.note", json=body, headers=headers)
        again = await client.post("/v1/services/land/parcel.note", json=body, headers=headers)
    assert first.status_code == again.status_code == 503
    assert again.headers["idempotent-replayed"] == "true"
    assert route.call_count == 1
