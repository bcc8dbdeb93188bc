"""Generated requests against every route of the bus (security on): never a 500, never a stack
trace, always a request id. Derandomised, so CI sees the same few hundred cases every run."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bus import create_app
from bus.security.consumers import Consumers
from bus.security.store import SqliteConsumerStore
from bus.settings import Settings

YAML = "version: 1\nservices:\n  echo: {adapter: echo}\n"
ROUTES = [
    "/v1/services/echo/echo",
    "/v1/services/echo/nope",
    "/v1/services/nope/echo",
    "/v1/services",
    "/v1/services/echo",
    "/v1/token",
    "/healthz",
    "/readyz",
    "/openapi.json",
    "/v1/services/echo/echo/",
]


class Client:
    """The bus, lifespan started, driven from synchronous test code through an anyio portal."""

    def __init__(self, portal: BlockingPortal, http: httpx.AsyncClient, key: str) -> None:
        self.portal = portal
        self.http = http
        self.key = key

    def request(self, method: str, url: str, **kwargs: object) -> httpx.Response:
        return self.portal.call(lambda: self.http.request(method, url, **kwargs))


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    root: Path = tmp_path_factory.mktemp("fuzz")
    (root / "bus.yaml").write_text(YAML)
    settings = Settings(config=root / "bus.yaml", store_path=root / "s.db", log_level="error")
    consumers = Consumers(SqliteConsumerStore(settings.store_path))
    key, _ = asyncio.run(_consumer_with_key(consumers))
    app = create_app(settings)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://bus")
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(app.router.lifespan_context(app)),
    ):
        yield Client(portal, http, key)
        portal.call(http.aclose)


async def _consumer_with_key(consumers: Consumers) -> tuple[str, object]:
    await consumers.create("fuzz", "Fuzz", rights=["echo/*"])
    key = await consumers.create_key("fuzz")
    await consumers.store.close()
    return key


segments = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=12
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
header_values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)


@settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    route=st.sampled_from(ROUTES)
    | st.lists(segments, min_size=1, max_size=4).map(lambda s: "/" + "/".join(s)),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
    body=st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode())),
    content_type=st.sampled_from(
        [
            "application/json",
            "text/plain",
            "application/x-www-form-urlencoded",
            "",
            "application/json; charset=latin-1",
        ]
    ),
    request_id=st.none() | header_values,
    authorization=st.none()
    | header_values
    | st.sampled_from(["Bearer ", "Bearer a.b.c", "ApiKey x", "Basic !!"]),
    with_key=st.booleans(),
)
def test_no_request_breaks_the_bus(
    client: Client,
    route: str,
    method: str,
    body: bytes,
    content_type: str,
    request_id: str | None,
    authorization: str | None,
    with_key: bool,
) -> None:
    """Whatever the path, method, headers and body: no 5xx, no trace, an X-Request-ID."""
    headers = {}
    if content_type:
        headers["content-type"] = content_type
    if request_id is not None:
        headers["x-request-id"] = request_id
    if authorization is not None:
        headers["authorization"] = authorization
    if with_key:
        headers["x-api-key"] = client.key
    try:
        reply = client.request(method, route, content=body, headers=headers)
    except (UnicodeEncodeError, httpx.InvalidURL):  # the client cannot send it: nothing to test
        return
    assert reply.status_code < 500, (method, route, reply.status_code, reply.text[:300])
    assert "Traceback" not in reply.text
    assert "x-request-id" in reply.headers
