"""The province's NGSP token: cached, shared, refreshed before expiry, retried once on 401."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import httpx
import pytest
import respx

from bus.errors import UpstreamBadResponse, UpstreamRejected, UpstreamUnavailable
from bus.upstream_auth import TokenProvider
from tests.support import StepClock

pytestmark = pytest.mark.anyio

TOKEN_URL = "https://ngsp.example.test/token"
API_URL = "https://ngsp.example.test/dancu/1.0/soap"


def token_reply(value: str, expires_in: int = 3600) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "access_token": value,
            "scope": "am_application_scope default",
            "token_type": "Bearer",
            "expires_in": expires_in,
        },
    )


@pytest.fixture
def router() -> respx.MockRouter:
    return respx.MockRouter(assert_all_called=False)


@pytest.fixture
async def http(router: respx.MockRouter) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(router.async_handler)) as client:
        yield client


def provider(http: httpx.AsyncClient, clock: StepClock, margin: float = 60) -> TokenProvider:
    return TokenProvider(http, TOKEN_URL, "key", "secret", clock, refresh_margin=margin)


async def test_one_token_for_a_hundred_concurrent_calls(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    """100 concurrent callers with no token yet cause exactly one token request (single flight),
    sent as client credentials with HTTP Basic."""

    async def slow_token(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.01)  # let every caller arrive while the refresh is in flight
        return token_reply("t-1")

    route = router.post(TOKEN_URL).mock(side_effect=slow_token)
    tokens = provider(http, StepClock())
    values = await asyncio.gather(*(tokens.token() for _ in range(100)))
    assert set(values) == {"t-1"}
    assert route.call_count == 1
    request = route.calls.last.request
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"key:secret").decode()
    assert request.content == b"grant_type=client_credentials"


async def test_token_is_refreshed_before_expiry(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    """The token is reused until `refresh_margin` before it expires, then renewed."""
    route = router.post(TOKEN_URL).mock(side_effect=[token_reply("t-1", 600), token_reply("t-2")])
    clock = StepClock()
    tokens = provider(http, clock, margin=60)
    assert await tokens.token() == "t-1"
    clock.t += 539  # 61 s before expiry: still fresh
    assert await tokens.token() == "t-1"
    clock.t += 2  # 59 s before expiry: inside the margin
    assert await tokens.token() == "t-2"
    assert route.call_count == 2


async def test_short_lived_token_refreshes_at_half_life(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    """A token living less than twice the margin is renewed at half its life."""
    router.post(TOKEN_URL).mock(side_effect=[token_reply("t-1", 20), token_reply("t-2", 20)])
    clock = StepClock()
    tokens = provider(http, clock, margin=60)
    assert await tokens.token() == "t-1"
    clock.t += 9
    assert await tokens.token() == "t-1"
    clock.t += 2
    assert await tokens.token() == "t-2"


async def test_401_then_retry_with_a_fresh_token(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    """A 401 from the API drops the token, fetches a new one and repeats the call once."""
    router.post(TOKEN_URL).mock(side_effect=[token_reply("old"), token_reply("new")])
    api = router.post(API_URL).mock(side_effect=[httpx.Response(401), httpx.Response(200)])
    tokens = provider(http, StepClock())

    async def send(token: str) -> httpx.Response:
        return await http.post(API_URL, headers={"Authorization": f"Bearer {token}"})

    reply = await tokens.call(send)
    assert reply.status_code == 200
    assert api.call_count == 2
    assert [c.request.headers["authorization"] for c in api.calls] == ["Bearer old", "Bearer new"]


async def test_401_is_retried_only_once(router: respx.MockRouter, http: httpx.AsyncClient) -> None:
    """A second 401 is returned to the caller, not retried in a loop."""
    router.post(TOKEN_URL).mock(side_effect=[token_reply("a"), token_reply("b")])
    api = router.post(API_URL).respond(401)
    tokens = provider(http, StepClock())
    reply = await tokens.call(
        lambda t: http.post(API_URL, headers={"Authorization": f"Bearer {t}"})
    )
    assert reply.status_code == 401
    assert api.call_count == 2
    assert tokens.requests == 2


async def test_refused_credentials_are_upstream_rejected(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    """invalid_client from the token endpoint is upstream.rejected, with no secret in it."""
    router.post(TOKEN_URL).respond(401, json={"error": "invalid_client"})
    with pytest.raises(UpstreamRejected) as caught:
        await provider(http, StepClock()).token()
    assert "secret" not in caught.value.message.replace("client credentials", "")


async def test_throttled_token_endpoint_keeps_retry_after(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    """A 429 from NGSP is upstream.unavailable carrying the Retry-After seconds."""
    router.post(TOKEN_URL).respond(429, headers={"Retry-After": "7"})
    with pytest.raises(UpstreamUnavailable) as caught:
        await provider(http, StepClock()).token()
    assert caught.value.retry_after == 7


async def test_api_429_passes_retry_after(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    """A 429 on the API itself is returned with its Retry-After for the caller to translate
    (not a token problem): the bearer was sent, and the token is kept."""
    router.post(TOKEN_URL).mock(return_value=token_reply("t-1"))
    api = router.post(API_URL).respond(429, headers={"Retry-After": "3"})
    tokens = provider(http, StepClock())
    reply = await tokens.call(
        lambda t: http.post(API_URL, headers={"Authorization": f"Bearer {t}"})
    )
    assert reply.status_code == 429
    assert reply.headers["retry-after"] == "3"
    assert api.calls.last.request.headers["authorization"] == "Bearer t-1"
    assert tokens.requests == 1


async def test_a_failed_refresh_is_shared_and_respects_retry_after(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    """100 concurrent callers facing a throttled token endpoint cost it ONE request, all get
    the error, and nobody asks again before Retry-After has passed."""

    async def throttled(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.01)
        return httpx.Response(503, headers={"Retry-After": "30"})

    route = router.post(TOKEN_URL).mock(side_effect=throttled)
    clock = StepClock()
    tokens = provider(http, clock)
    results = await asyncio.gather(*(tokens.token() for _ in range(100)), return_exceptions=True)
    assert all(isinstance(r, UpstreamUnavailable) for r in results)
    assert route.call_count == 1
    # One failure of the platform: the caller that asked carries it, the 99 that joined carry
    # an echo, which a circuit breaker does not count again.
    assert sum(not r.echo for r in results if isinstance(r, UpstreamUnavailable)) == 1
    clock.t += 10
    with pytest.raises(UpstreamUnavailable) as caught:
        await tokens.token()
    assert caught.value.retry_after == pytest.approx(20)
    assert route.call_count == 1
    route.mock(side_effect=None, return_value=token_reply("t-late"))
    clock.t += 21
    assert await tokens.token() == "t-late"
    assert route.call_count == 2


async def test_a_caller_giving_up_does_not_cancel_the_refresh(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    """One waiter cancelled by its deadline leaves the shared refresh running for the others."""

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.05)
        return token_reply("t-1")

    route = router.post(TOKEN_URL).mock(side_effect=slow)
    tokens = provider(http, StepClock())
    impatient = asyncio.ensure_future(asyncio.wait_for(tokens.token(), timeout=0.01))
    patient = asyncio.ensure_future(tokens.token())
    with pytest.raises(TimeoutError):
        await impatient
    assert await patient == "t-1"
    assert route.call_count == 1


@pytest.mark.parametrize(
    "body",
    [
        {"access_token": None, "expires_in": 3600},
        {"access_token": "", "expires_in": 3600},
        {"access_token": "t", "expires_in": "NaN"},
        {"access_token": "t", "expires_in": -5},
        ["not", "an", "object"],
    ],
)
async def test_unusable_token_replies_are_bad_responses(
    body: object, router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    """A token reply without a usable token or lifetime is upstream.bad_response."""
    router.post(TOKEN_URL).respond(200, json=body)
    with pytest.raises(UpstreamBadResponse):
        await provider(http, StepClock()).token()


async def test_an_endless_lifetime_is_capped(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    """expires_in: 1e12 does not keep a token for ever: a day at most."""
    route = router.post(TOKEN_URL).mock(
        side_effect=[token_reply("t-1", 10**12), token_reply("t-2")]
    )
    clock = StepClock()
    tokens = provider(http, clock)
    assert await tokens.token() == "t-1"
    clock.t += 86_400
    assert await tokens.token() == "t-2"
    assert route.call_count == 2
