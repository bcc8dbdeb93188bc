"""bus.yaml: a bad file stops start-up with a message naming the line that is wrong."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bus import create_app
from bus.config import ConfigError, parse_config
from bus.gateway import build_gateway
from bus.registry import AdapterRegistry, discover
from bus.settings import Settings


def problems_of(text: str, environ: dict[str, str] | None = None) -> list[str]:
    """Every problem build_gateway reports for ``text``, as 'line: path: message' strings."""
    with pytest.raises(ConfigError) as caught:
        build_gateway(Settings(), parse_config(text), discover(), environ=environ or {})
    return [str(p) for p in caught.value.problems]


def test_unknown_adapter_names_its_line() -> None:
    """An unknown adapter is reported on the line of its `adapter:` key, with the known ones."""
    text = "version: 1\nservices:\n  echo:\n    adapter: echo\n  tax:\n    adapter: thue\n"
    [problem] = problems_of(text)
    assert problem.startswith("bus.yaml:6: services.tax.adapter: unknown adapter 'thue'")
    known = problem.split("(known: ")[1].rstrip(")").split(", ")
    assert {"echo", "population", "paygov", "dvcqg", "edoc", "tax"} <= set(known)


def test_missing_credential_variable_names_its_line() -> None:
    """A credential whose environment variable is unset is reported on its own line."""
    text = """\
version: 1
services:
  echo:
    adapter: echo
    upstream:
      base_url: https://ngsp.example.test
      credentials:
        consumer_key: NGSP_KEY
        consumer_secret: NGSP_SECRET
"""
    problems = problems_of(text, environ={"NGSP_KEY": "present"})
    assert problems == [
        "bus.yaml:9: services.echo.upstream.credentials.consumer_secret: "
        "environment variable NGSP_SECRET is not set"
    ]


def test_bad_url_names_its_line() -> None:
    """A base_url that is not an http(s) URL is refused on its line."""
    text = (
        "version: 1\nservices:\n  echo:\n    adapter: echo\n    upstream:\n      base_url: ngsp\n"
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    [problem] = caught.value.problems
    assert problem.line == 6
    assert problem.path == "services.echo.upstream.base_url"
    assert "URL" in problem.message


def test_every_problem_is_reported_at_once() -> None:
    """Several mistakes are reported together, each with its own line."""
    text = """\
version: 1
services:
  echo:
    adapter: echo
    timeout: -1
    retyr: default
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    lines = {(p.line, p.path) for p in caught.value.problems}
    assert lines == {(5, "services.echo.timeout"), (6, "services.echo.retyr")}
    assert "unknown key" in str(caught.value)


def test_duplicate_service_names_both_lines() -> None:
    """A service declared twice is refused (YAML would silently keep the second)."""
    text = "version: 1\nservices:\n  echo:\n    adapter: echo\n  echo:\n    adapter: echo\n"
    with pytest.raises(
        ConfigError, match=r"bus.yaml:5: services.echo: duplicate key, first defined on line 3"
    ):
        parse_config(text)


def test_invalid_yaml_names_its_line() -> None:
    """A syntax error is reported with its line."""
    with pytest.raises(ConfigError, match=r"bus.yaml:3: not valid YAML: mapping values"):
        parse_config("version: 1\nservices:\n  echo: adapter: echo\n")
    with pytest.raises(ConfigError, match=r"while parsing a flow sequence started on line 3"):
        parse_config("version: 1\nservices:\n  echo: [adapter\n")


def test_unknown_retry_policy_names_its_line() -> None:
    """A retry policy name that is neither built in nor declared is refused on its line."""
    text = "version: 1\nservices:\n  echo:\n    adapter: echo\n    retry: stubborn\n"
    with pytest.raises(
        ConfigError,
        match=r"bus.yaml:5: services.echo.retry: unknown retry policy 'stubborn' "
        r"\(known: default, none\)",
    ):
        parse_config(text)


def test_bad_service_name() -> None:
    """Service names appear in URLs: upper case and spaces are refused with the reason."""
    with pytest.raises(ConfigError, match=r"bus.yaml:3: services.Echo Service: service names are"):
        parse_config("version: 1\nservices:\n  Echo Service:\n    adapter: echo\n")


def test_adapter_options_are_validated_by_the_adapter() -> None:
    """Options an adapter does not declare are refused on their line."""
    text = "version: 1\nservices:\n  echo:\n    adapter: echo\n    options:\n      volume: 11\n"
    [problem] = problems_of(text)
    assert problem.startswith("bus.yaml:6: services.echo.options.volume:")


def test_resilience_settings_per_service() -> None:
    """mode, circuit breaker, bulkhead and delivery policy are read per service; a bad value
    is reported on its line."""
    text = (
        "version: 1\nservices:\n  echo:\n    adapter: echo\n    mode: async\n"
        "    max_in_flight: 7\n    circuit_breaker: {failure_rate: 0.25, open_seconds: 3}\n"
        "    delivery: {attempts: 4}\n  quiet:\n    adapter: echo\n    circuit_breaker: null\n"
    )
    loaded = parse_config(text)
    gw = build_gateway(Settings(), loaded, discover(), environ={})
    echo, quiet = gw.services["echo"], gw.services["quiet"]
    assert echo.mode_of("echo") == "async"
    assert quiet.mode_of("echo") == "sync"
    assert echo.bulkhead.max_in_flight == 7
    assert echo.breaker is not None
    assert echo.breaker.snapshot()["config"]["failure_rate"] == 0.25
    assert quiet.breaker is None
    assert echo.config.delivery.attempts == 4
    bad = text.replace("failure_rate: 0.25", "failure_rate: 2")
    [problem] = problems_of(bad)
    assert problem.startswith("bus.yaml:7: services.echo.circuit_breaker.failure_rate:")


def test_missing_file(tmp_path: Path) -> None:
    """A missing bus.yaml is a ConfigError naming the path, not a traceback."""
    with pytest.raises(ConfigError, match="cannot read"):
        create_app(Settings(config=tmp_path / "absent.yaml"))


def test_create_app_refuses_bad_config(settings_for: Callable[..., Settings]) -> None:
    """create_app() stops at a misconfigured service before any app exists."""
    with pytest.raises(ConfigError, match=r":4: services.echo.adapter: unknown adapter"):
        create_app(settings_for("version: 1\nservices:\n  echo:\n    adapter: nope\n"))


def test_declared_retry_policy_is_used() -> None:
    """A policy declared under retry_policies is what the service's operations get."""
    text = """\
version: 1
retry_policies:
  patient: {attempts: 5, initial_wait: 0.5, max_wait: 8}
services:
  echo: {adapter: echo, retry: patient, timeout: 7}
"""
    gw = build_gateway(Settings(), parse_config(text), discover(), environ={})
    policy = gw.services["echo"].policy
    assert policy.retry.attempts == 5
    assert policy.deadline == 7


def test_shipped_bus_yaml_is_valid() -> None:
    """The bus.yaml at the root of the repository passes the check."""
    root = Path(__file__).resolve().parent.parent
    gw = build_gateway(Settings(), parse_config((root / "bus.yaml").read_text()), discover())
    assert "echo" in gw.services


def test_attempt_timeout_bounds_each_attempt_not_the_deadline() -> None:
    """attempt_timeout is the read timeout of one attempt (so a slow one can be retried); the
    deadline stays the service's timeout; without it one attempt may use the whole deadline."""
    text = (
        "version: 1\nservices:\n"
        "  a: {adapter: echo, timeout: 9, attempt_timeout: 2, upstream: {base_url: 'http://a'}}\n"
        "  b: {adapter: echo, timeout: 9, upstream: {base_url: 'http://b'}}\n"
    )
    gw = build_gateway(Settings(), parse_config(text), discover(), environ={})
    a, b = gw.services["a"], gw.services["b"]
    assert a.upstream is not None
    assert b.upstream is not None
    assert a.upstream.http_timeout.read == 2
    assert a.policy.deadline == 9
    assert b.upstream.http_timeout.read == 9


def test_async_mode_is_refused_for_writes_without_a_key(example_plugin: AdapterRegistry) -> None:
    """mode: async on a service whose adapter has a write that cannot pass a de-duplication key
    upstream is refused: a redelivery could apply it twice."""
    text = (
        "version: 1\nservices:\n  land:\n    adapter: parcels\n    mode: async\n"
        "    upstream: {base_url: 'http://p', credentials: {api_key: K}}\n"
    )
    with pytest.raises(ConfigError) as caught:
        build_gateway(Settings(), parse_config(text), example_plugin, environ={"K": "k"})
    [problem] = [str(p) for p in caught.value.problems]
    assert problem.startswith("bus.yaml:5: services.land.mode: async delivery may send")
    assert "parcel.note" in problem
