"""The NGSP mock as a consumer meets it: the client-credentials token endpoint, bearer checks
with expiry on a stepped clock, per-consumer throttling, forwarding to the backends, and the
gateway faults when a backend fails, the X-Forwarded-* headers backends get, per-mock start-up
fault rules, and the MockStack that runs the mocks together."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from mocks.ngsp import NgspSettings, create_app
from mocks.ngsp import _app as ngsp_app
from mocks.population import PopulationSettings
from mocks.stack import DEMO_CONSUMER_KEY, DEMO_CONSUMER_SECRET, MockStack
from tests.support import running

pytestmark = pytest.mark.anyio

KEY, SECRET = "lgsp-demo-key", "lgsp-demo-secret"
OTHER_KEY, OTHER_SECRET = "other-province", "other-secret"
SETTINGS = NgspSettings(
    consumers={KEY: SECRET, OTHER_KEY: OTHER_SECRET},
    backends={"dancu": "http://dancu.backend/base/"},
)
PERSONAL_ID = "001099012345"
PERSONAL_NAME = "Nguyen Van An"  # ASCII, so it would appear as is in a logged JSON body


class SteppedClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def echo_backend() -> FastAPI:
    """A national service that answers with what it received."""
    app = FastAPI()

    @app.get("/base/busy")
    async def busy() -> Response:
        return Response(
            "<soap:Fault>busy</soap:Fault>",
            status_code=503,
            media_type="text/xml; charset=utf-8",
            headers={"Retry-After": "7", "X-Internal": "not passed back"},
        )

    @app.get("/base/set-cookie")
    async def set_cookie() -> Response:
        reply = Response("ok")
        reply.set_cookie("backend-session", "abc")
        return reply

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def echo(request: Request, path: str) -> JSONResponse:
        return JSONResponse(
            {
                "method": request.method,
                "path": request.url.path,
                "query": request.url.query,
                "body": (await request.body()).decode(),
                "headers": dict(request.headers),
            }
        )

    return app


@asynccontextmanager
async def ngsp(
    settings: NgspSettings = SETTINGS,
    clock: SteppedClock | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[httpx.AsyncClient]:
    """The mock with its lifespan running, backed by ``echo_backend`` unless told otherwise."""
    app = create_app(
        settings,
        clock=clock or SteppedClock(),
        transport=transport or httpx.ASGITransport(echo_backend()),
    )
    async with running(app) as client:
        yield client


async def token_for(client: httpx.AsyncClient, key: str = KEY, secret: str = SECRET) -> str:
    reply = await client.post(
        "/token", data={"grant_type": "client_credentials"}, auth=(key, secret)
    )
    assert reply.status_code == 200, reply.text
    token: str = reply.json()["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def failing(exc: Exception) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return httpx.MockTransport(handler)


# --- /token ---------------------------------------------------------------------------------


async def test_token_reply_has_the_wso2_shape() -> None:
    """A client-credentials grant returns exactly the four WSO2 fields, a fresh token each time."""
    async with ngsp(NgspSettings(consumers={KEY: SECRET}, expires_in=120)) as client:
        first = await client.post(
            "/token", data={"grant_type": "client_credentials"}, auth=(KEY, SECRET)
        )
        second = await token_for(client)
    body = first.json()
    assert first.status_code == 200
    assert first.headers["cache-control"] == "no-store"
    assert set(body) == {"access_token", "scope", "token_type", "expires_in"}
    assert body["scope"] == "am_application_scope default"
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 120
    assert isinstance(body["access_token"], str)
    assert len(body["access_token"]) >= 20
    assert second != body["access_token"]


def basic(key: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        basic(KEY, "wrong-secret"),
        basic("unknown-key", SECRET),
        basic(KEY, ""),
        "Basic not-base64!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        f"Bearer {SECRET}",
    ],
    ids=[
        "missing",
        "wrong-secret",
        "unknown-key",
        "empty-secret",
        "not-base64",
        "no-colon",
        "not-basic",
    ],
)
async def test_bad_client_credentials_get_401_invalid_client(authorization: str | None) -> None:
    """Missing, wrong or unreadable Basic credentials get 401 invalid_client with
    WWW-Authenticate: Basic, and no token is issued."""
    headers = {"Authorization": authorization} if authorization else {}
    async with ngsp() as client:
        reply = await client.post(
            "/token", data={"grant_type": "client_credentials"}, headers=headers
        )
        stats = (await client.get("/__admin/stats")).json()
    assert reply.status_code == 401
    assert reply.json()["error"] == "invalid_client"
    assert reply.json()["error_description"]
    assert reply.headers["www-authenticate"].startswith("Basic")
    assert stats["tokens_issued"] == 0


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"grant_type": "password", "username": "u", "password": "p"}, "unsupported_grant_type"),
        ({"grant_type": "authorization_code", "code": "x"}, "unsupported_grant_type"),
        ({}, "invalid_request"),
    ],
)
async def test_wrong_grant_type_gets_400(form: dict[str, str], error: str) -> None:
    """With good credentials, another grant type is 400 unsupported_grant_type, none at all
    400 invalid_request (RFC 6749 §5.2)."""
    async with ngsp() as client:
        reply = await client.post("/token", data=form, auth=(KEY, SECRET))
    assert reply.status_code == 400
    assert reply.json()["error"] == error
    assert "access_token" not in reply.json()


# --- bearer tokens --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer no-such-token"}, {"Authorization": "Bearer "}],
    ids=["missing", "unknown", "empty"],
)
async def test_api_call_without_a_valid_token_gets_401(headers: dict[str, str]) -> None:
    """No token or an unknown one: 401 with the WSO2 900901 fault and WWW-Authenticate: Bearer,
    and the backend is not called."""
    calls: list[httpx.Request] = []

    def backend(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200)

    async with ngsp(transport=httpx.MockTransport(backend)) as client:
        reply = await client.get("/dancu/1.0/citizen", headers=headers)
    assert reply.status_code == 401
    assert reply.json()["fault"]["code"] == 900901
    assert reply.json()["fault"]["message"] == "Invalid Credentials"
    assert reply.headers["www-authenticate"].startswith("Bearer")
    assert calls == []


async def test_token_expires_after_expires_in_seconds() -> None:
    """A token works until expires_in seconds have passed on the clock, then gets 401."""
    clock = SteppedClock()
    async with ngsp(NgspSettings(backends=SETTINGS.backends, expires_in=3600), clock) as client:
        token = await token_for(client)
        clock.advance(3599)
        assert (await client.get("/dancu/1.0/x", headers=bearer(token))).status_code == 200
        clock.advance(1)
        expired = await client.get("/dancu/1.0/x", headers=bearer(token))
        fresh = await client.get("/dancu/1.0/x", headers=bearer(await token_for(client)))
    assert expired.status_code == 401
    assert expired.json()["fault"]["code"] == 900901
    assert fresh.status_code == 200


async def test_admin_expires_every_token() -> None:
    """POST /__admin/tokens/expire makes every token issued so far answer 401."""
    async with ngsp() as client:
        mine, theirs = await token_for(client), await token_for(client, OTHER_KEY, OTHER_SECRET)
        expired = await client.post("/__admin/tokens/expire")
        replies = [await client.get("/dancu/1.0/x", headers=bearer(t)) for t in (mine, theirs)]
    assert expired.json() == {"expired": 2}
    assert [reply.status_code for reply in replies] == [401, 401]


# --- throttling -----------------------------------------------------------------------------


async def test_throttle_per_consumer_with_retry_after_and_recovery() -> None:
    """Over throttle_per_minute in a consumer's window: 429 900802 with Retry-After until the
    window ends; other consumers are not affected; the next window admits again."""
    clock = SteppedClock()
    settings = SETTINGS.model_copy(update={"throttle_per_minute": 3})
    async with ngsp(settings, clock) as client:
        mine, theirs = await token_for(client), await token_for(client, OTHER_KEY, OTHER_SECRET)
        admitted = [await client.get("/dancu/1.0/x", headers=bearer(mine)) for _ in range(3)]
        clock.advance(20.5)
        throttled = await client.get("/dancu/1.0/x", headers=bearer(mine))
        other = await client.get("/dancu/1.0/x", headers=bearer(theirs))
        clock.advance(39)
        still = await client.get("/dancu/1.0/x", headers=bearer(mine))
        clock.advance(0.5)
        recovered = await client.get("/dancu/1.0/x", headers=bearer(mine))
        stats = (await client.get("/__admin/stats")).json()
    assert [reply.status_code for reply in admitted] == [200, 200, 200]
    assert throttled.status_code == 429
    assert throttled.json()["fault"]["code"] == 900802
    assert throttled.json()["fault"]["message"] == "Message throttled out"
    assert throttled.headers["retry-after"] == "40"  # 39.5 s left, rounded up
    assert other.status_code == 200
    assert still.status_code == 429
    assert still.headers["retry-after"] == "1"  # 0.5 s left, never 0
    assert recovered.status_code == 200
    assert stats == {"tokens_issued": 2, "requests": {KEY: 6, OTHER_KEY: 1}, "throttled": 2}


# --- forwarding -----------------------------------------------------------------------------


async def test_forwarding_keeps_the_request_but_not_the_credentials() -> None:
    """Method, path below the API, query, body, Content-Type and SOAPAction reach the backend;
    the caller's Authorization and Host do not."""
    soap = '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"/>'
    async with ngsp() as client:
        token = await token_for(client)
        reply = await client.post(
            "/dancu/1.0/soap/CongDan?ma=01&ten=%C4%90%E1%BB%97",
            content=soap.encode(),
            headers={
                **bearer(token),
                "Content-Type": "text/xml; charset=utf-8",
                "SOAPAction": '"urn:TraCuuCongDan"',
                "X-Request-ID": "req-12345678",
            },
        )
    seen = reply.json()
    assert reply.status_code == 200
    assert seen["method"] == "POST"
    assert seen["path"] == "/base/soap/CongDan"
    assert seen["query"] == "ma=01&ten=%C4%90%E1%BB%97"
    assert seen["body"] == soap
    assert seen["headers"]["content-type"] == "text/xml; charset=utf-8"
    assert seen["headers"]["soapaction"] == '"urn:TraCuuCongDan"'
    assert seen["headers"]["x-request-id"] == "req-12345678"
    assert "authorization" not in seen["headers"]
    assert seen["headers"]["host"] == "dancu.backend"


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
async def test_every_method_is_forwarded(method: str) -> None:
    """Any method is forwarded as it came."""
    async with ngsp() as client:
        token = await token_for(client)
        reply = await client.request(method, "/dancu/2.0/a/b", headers=bearer(token))
    assert reply.json()["method"] == method
    assert reply.json()["path"] == "/base/a/b"


async def test_backend_status_content_type_and_body_come_back() -> None:
    """The backend's status, Content-Type, Retry-After and body are passed back as they are;
    its other headers are not."""
    async with ngsp() as client:
        reply = await client.get("/dancu/1.0/busy", headers=bearer(await token_for(client)))
    assert reply.status_code == 503
    assert reply.headers["content-type"] == "text/xml; charset=utf-8"
    assert reply.headers["retry-after"] == "7"
    assert "x-internal" not in reply.headers
    assert reply.text == "<soap:Fault>busy</soap:Fault>"


async def test_backend_cookies_are_not_carried_to_later_calls() -> None:
    """The shared backend client keeps no cookies: one consumer's session never reaches the
    backend on another call."""
    async with ngsp() as client:
        token = await token_for(client)
        await client.get("/dancu/1.0/set-cookie", headers=bearer(token))
        reply = await client.get("/dancu/1.0/x", headers=bearer(token))
    assert "cookie" not in reply.json()["headers"]
    assert "set-cookie" not in reply.headers


async def test_one_backend_transport_for_the_app_closed_at_shutdown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The lifespan opens one transport (aiohttp's, by default) for every backend call and
    closes it at the end, not per call."""
    made: list[httpx.AsyncBaseTransport] = []
    calls: list[str] = []
    closed: list[bool] = []

    class Recording(httpx.ASGITransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            calls.append(request.url.path)
            return await super().handle_async_request(request)

        async def aclose(self) -> None:
            closed.append(True)
            await super().aclose()

    def make() -> httpx.AsyncBaseTransport:
        made.append(Recording(echo_backend()))
        return made[-1]

    monkeypatch.setattr(ngsp_app, "AiohttpTransport", make)
    async with running(create_app(SETTINGS, clock=SteppedClock())) as client:
        token = await token_for(client)
        for _ in range(5):
            assert (await client.get("/dancu/1.0/x", headers=bearer(token))).status_code == 200
        assert closed == []
    assert len(made) == 1
    assert calls == ["/base/x"] * 5
    assert closed == [True]


# --- gateway faults -------------------------------------------------------------------------


async def test_unknown_api_gets_404() -> None:
    """An API not published on the gateway gets the WSO2 404 fault, token or not."""
    async with ngsp() as client:
        token = await token_for(client)
        with_token = await client.get("/nosuch/1.0/x", headers=bearer(token))
        without = await client.get("/nosuch/1.0/x")
    for reply in (with_token, without):
        assert reply.status_code == 404
        assert reply.json()["fault"]["code"] == 404
        assert (
            reply.json()["fault"]["message"] == "No matching resource found for given API Request"
        )


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("connection refused"),
        httpx.RemoteProtocolError("server disconnected without sending a response"),
        httpx.ReadError("connection reset by peer"),
    ],
)
async def test_backend_down_gets_503(error: Exception, caplog: pytest.LogCaptureFixture) -> None:
    """An unreachable backend, or one that drops the connection, gets 503 fault 101503; the
    mock's log line names the API, not the path, query, body or token."""
    caplog.set_level(logging.DEBUG)
    async with ngsp(transport=failing(error)) as client:
        token = await token_for(client)
        reply = await client.post(
            f"/dancu/1.0/citizens/{PERSONAL_ID}?so_dinh_danh={PERSONAL_ID}",
            headers=bearer(token),
            json={"ho_ten": PERSONAL_NAME},
        )
    assert reply.status_code == 503
    assert reply.json()["fault"]["code"] == 101503
    assert reply.json()["fault"]["message"] == "Error connecting to the back end"
    mock_lines = [r.getMessage() for r in caplog.records if r.name.startswith("mocks")]
    assert mock_lines == [f"ngsp backend unreachable: api=dancu error={type(error).__name__}"]
    assert PERSONAL_NAME not in caplog.text
    assert token not in caplog.text


async def test_backend_timeout_gets_504() -> None:
    """A backend that does not answer in time gets 504 fault 101504."""
    async with ngsp(transport=failing(httpx.ReadTimeout("timed out"))) as client:
        reply = await client.get("/dancu/1.0/x", headers=bearer(await token_for(client)))
    assert reply.status_code == 504
    assert reply.json()["fault"]["code"] == 101504


async def test_fault_injection_is_installed() -> None:
    """The NGSP mock takes fault rules at /__admin/faults; its token endpoint can stay healthy
    while an API fails."""
    async with ngsp() as client:
        put = await client.put(
            "/__admin/faults",
            json={"rules": [{"path": "/dancu/*", "error_rate": 1, "error_statuses": [502]}]},
        )
        token = await token_for(client)
        reply = await client.get("/dancu/1.0/x", headers=bearer(token))
    assert put.status_code == 200
    assert reply.status_code == 502


async def test_backend_gets_forwarded_host_proto_and_prefix() -> None:
    """The backend gets X-Forwarded-Host, -Proto and -Prefix (/{api}/{version}) naming the
    gateway as the caller reached it, whatever the caller sent under those names."""
    app = create_app(SETTINGS, clock=SteppedClock(), transport=httpx.ASGITransport(echo_backend()))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="https://ngsp.example.test:8243"
        ) as client,
    ):
        token = await token_for(client)
        reply = await client.get(
            "/dancu/1.0/soap?wsdl",
            headers={
                **bearer(token),
                "X-Forwarded-Host": "evil.test",
                "X-Forwarded-Proto": "gopher",
                "X-Forwarded-Prefix": "/elsewhere",
            },
        )
    headers = reply.json()["headers"]
    assert headers["x-forwarded-host"] == "ngsp.example.test:8243"
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-prefix"] == "/dancu/1.0"
    assert "evil.test" not in reply.text


def _rules(path: str, status: int) -> str:
    return json.dumps([{"path": path, "error_rate": 1, "error_statuses": [status]}])


async def test_start_up_faults_of_this_mock_come_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """LGSP_MOCK_FAULTS_NGSP rules apply ahead of the shared LGSP_MOCK_FAULTS ones, and the
    population mock's own variable does not reach NGSP."""
    monkeypatch.setenv("LGSP_MOCK_FAULTS_NGSP", _rules("/token", 429))
    monkeypatch.setenv("LGSP_MOCK_FAULTS", _rules("/dancu/*", 503))
    monkeypatch.setenv("LGSP_MOCK_FAULTS_POPULATION", _rules("*", 502))
    async with ngsp() as client:
        token = await client.post(
            "/token", data={"grant_type": "client_credentials"}, auth=(KEY, SECRET)
        )
        api = await client.get("/dancu/1.0/x")
        other = await client.get("/nosuch/1.0/x")
        rules = (await client.get("/__admin/faults")).json()["rules"]
    assert (token.status_code, api.status_code, other.status_code) == (429, 503, 404)
    assert [r["path"] for r in rules] == ["/token", "/dancu/*"]


# --- the mock stack -------------------------------------------------------------------------


@pytest.mark.live
def test_stack_reads_start_up_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With no settings given, MockStack takes the token lifetime, the throttle tier and the
    seed from LGSP_MOCK_NGSP_EXPIRES_IN, LGSP_MOCK_NGSP_THROTTLE_PER_MINUTE and LGSP_MOCK_SEED."""
    monkeypatch.setenv("LGSP_MOCK_NGSP_EXPIRES_IN", "120")
    monkeypatch.setenv("LGSP_MOCK_NGSP_THROTTLE_PER_MINUTE", "2")
    monkeypatch.setenv("LGSP_MOCK_SEED", "7")
    with MockStack() as stack:
        ngsp_url = stack.urls["ngsp"]
        token = httpx.post(
            f"{ngsp_url}/token",
            data={"grant_type": "client_credentials"},
            auth=(DEMO_CONSUMER_KEY, DEMO_CONSUMER_SECRET),
        ).json()
        health = f"{ngsp_url}/dancu/1.0/health"
        auth = bearer(token["access_token"])
        statuses = [httpx.get(health, headers=auth).status_code for _ in range(3)]
        seed = stack.apps["population"].state.settings.seed
    assert token["expires_in"] == 120
    assert statuses == [200, 200, 429]
    assert seed == 7


@pytest.mark.live
def test_stack_settings_given_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings passed to MockStack are used as they are; the environment is not read."""
    monkeypatch.setenv("LGSP_MOCK_SEED", "7")
    monkeypatch.setenv("LGSP_MOCK_NGSP_EXPIRES_IN", "not a number")
    with MockStack(
        ngsp=NgspSettings(expires_in=60), population=PopulationSettings(seed=9, households=3)
    ) as stack:
        seed = stack.apps["population"].state.settings.seed
    assert seed == 9


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LGSP_MOCK_NGSP_EXPIRES_IN", "soon"),
        ("LGSP_MOCK_NGSP_THROTTLE_PER_MINUTE", "0"),
        ("LGSP_MOCK_SEED", "1.5"),
    ],
)
def test_stack_refuses_bad_settings_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """A start-up setting in the environment that is not valid stops MockStack.start with a
    ValueError naming the variable, before any socket is bound."""
    monkeypatch.setenv(variable, value)
    stack = MockStack()
    with pytest.raises(ValueError, match=variable):
        stack.start()
    assert stack.urls == {}


@pytest.mark.live
def test_stack_keeps_uvicorn_access_quiet_in_a_bus_process(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Even with uvicorn.access propagating to the root handlers, as bus.logging sets it up, a
    running MockStack logs no access line; stopping it gives the logger back as it was."""
    access = logging.getLogger("uvicorn.access")
    caplog.set_level(logging.INFO, logger="uvicorn.access")
    with MockStack(population=PopulationSettings(households=3)) as stack:
        # What bus.logging.configure_logging does, after uvicorn.Config(access_log=False)
        # turned propagation off; uvicorn then logs every connection that has handlers.
        monkeypatch.setattr(access, "propagate", True)
        quiet = httpx.get(f"{stack.urls['population']}/health")
        assert access.disabled is True
        access.disabled = False  # the check can see a line when one is written
        loud = httpx.get(f"{stack.urls['population']}/health")
        access.disabled = True
    assert (quiet.status_code, loud.status_code) == (200, 200)
    lines = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert len(lines) == 1
    assert "/health" in lines[0]
    assert access.disabled is False
