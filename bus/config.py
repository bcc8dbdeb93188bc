"""The declarative ``bus.yaml``: which services exist, which adapter serves each, where its
upstream is, which credentials (by environment variable name), timeout, retry policy and mode.

```yaml
version: 1
retry_policies:
  patient: {attempts: 5, initial_wait: 0.5, max_wait: 8}
services:
  population:
    adapter: population
    description: National population database, through NGSP
    upstream:
      base_url: https://ngsp.example.gov.vn
      credentials: {consumer_key: NGSP_CONSUMER_KEY, consumer_secret: NGSP_CONSUMER_SECRET}
    timeout: 10
    retry: patient
    mode: sync
```

Every problem is reported with the line of ``bus.yaml`` it comes from, all at once, so an operator
fixes a file in one pass; secrets are never written in the file, only the names of the variables
that hold them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, StringConstraints, ValidationError

__all__ = [
    "BUILTIN_RETRY_POLICIES",
    "BusConfig",
    "CircuitBreakerConfig",
    "ConfigError",
    "ConfigProblem",
    "Credentials",
    "DeliveryPolicyConfig",
    "LoadedConfig",
    "RetryPolicyConfig",
    "ServiceConfig",
    "UpstreamConfig",
    "load_config",
    "parse_config",
]

ServiceName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]
EnvVarName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryPolicyConfig(_Strict):
    """A named retry policy; the bus builds it from tenacity's stop and wait pieces."""

    attempts: int = Field(
        default=3, ge=1, le=20, description="Attempts in all, the first included."
    )
    initial_wait: float = Field(default=0.2, ge=0, description="Wait before the 2nd attempt (s).")
    max_wait: float = Field(default=2.0, ge=0, description="Cap of one wait between attempts (s).")
    jitter: float = Field(default=0.1, ge=0, description="Random extra wait, up to this (s).")


#: Policies every bus.yaml can name without declaring them.
BUILTIN_RETRY_POLICIES: dict[str, RetryPolicyConfig] = {
    "none": RetryPolicyConfig(attempts=1),
    "default": RetryPolicyConfig(),
}


class CircuitBreakerConfig(_Strict):
    """When a service's upstream is taken out of the path, and for how long."""

    failure_rate: float = Field(
        default=0.5, gt=0, le=1, description="Share of failed attempts that opens the circuit."
    )
    window: float = Field(
        default=30.0, gt=0, le=3600, description="Sliding window the rate is measured over (s)."
    )
    minimum_calls: int = Field(
        default=20, ge=1, description="Attempts in the window before the rate is judged."
    )
    open_seconds: float = Field(
        default=15.0, gt=0, le=3600, description="How long an open circuit refuses calls (s)."
    )
    half_open_probes: int = Field(
        default=1, ge=1, le=100, description="Trial calls let through when half-open."
    )


class DeliveryPolicyConfig(_Strict):
    """Long-horizon retries of store-and-forward deliveries (``mode: async`` operations)."""

    attempts: int = Field(
        default=12, ge=1, le=1000, description="Delivery attempts before the dead-letter list."
    )
    initial_wait: float = Field(default=5.0, ge=0, description="Wait before the 2nd attempt (s).")
    max_wait: float = Field(
        default=3600.0, ge=0, description="Cap of one wait between delivery attempts (s)."
    )
    jitter: float = Field(default=1.0, ge=0, description="Random extra wait, up to this (s).")


class UpstreamConfig(_Strict):
    base_url: HttpUrl
    credentials: dict[str, EnvVarName] = Field(
        default_factory=dict,
        description="Credential name -> name of the environment variable holding its value.",
    )
    health_path: str | None = Field(
        default="/",
        description="Path probed by /readyz; any HTTP answer counts as reachable. null: no probe.",
    )


class ServiceConfig(_Strict):
    adapter: str = Field(min_length=1)
    description: str | None = None
    upstream: UpstreamConfig | None = None
    timeout: float = Field(default=10.0, gt=0, le=600, description="Deadline of one call (s).")
    connect_timeout: float = Field(default=3.0, gt=0, le=60)
    attempt_timeout: float | None = Field(
        default=None,
        gt=0,
        le=600,
        description="Read timeout of one attempt (s), so that a slow attempt can be retried "
        "within the deadline; default: the whole deadline (a slow answer is not retried).",
    )
    retry: str = "default"
    mode: Literal["sync", "async"] | None = Field(
        default=None,
        description="async: every operation is store-and-forward (202 + delivery id). "
        "Default: as each operation of the adapter declares.",
    )
    circuit_breaker: CircuitBreakerConfig | None = Field(
        default_factory=CircuitBreakerConfig, description="null: no circuit breaker."
    )
    max_in_flight: int = Field(
        default=100, ge=1, le=100_000, description="Bulkhead: calls in flight to the upstream."
    )
    delivery: DeliveryPolicyConfig = Field(default_factory=DeliveryPolicyConfig)
    audit: Literal["metadata", "full"] = Field(
        default="metadata",
        description="What the exchange log keeps of each call: metadata (no bodies), or full "
        "(the canonical request and the reply, encrypted with AES-GCM).",
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Adapter-specific settings, checked by the adapter."
    )


class BusConfig(_Strict):
    version: Literal[1] = 1
    retry_policies: dict[str, RetryPolicyConfig] = Field(default_factory=dict)
    services: dict[ServiceName, ServiceConfig] = Field(default_factory=dict)

    def retry_policy(self, name: str) -> RetryPolicyConfig | None:
        return self.retry_policies.get(name) or BUILTIN_RETRY_POLICIES.get(name)


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    source: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(Exception):
    """bus.yaml cannot be used; ``problems`` says where and why, one entry per problem."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class Credentials(Mapping[str, str]):
    """Upstream credentials resolved from the environment; never shows its values in repr/logs."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Credentials({sorted(self._values)!r})"


Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class LoadedConfig:
    """A validated bus.yaml and the line of every key in it, for later error messages."""

    config: BusConfig
    source: str
    lines: dict[Path_, int] = field(default_factory=dict)

    def line_of(self, path: Path_) -> int | None:
        """The line of ``path``, or of its nearest ancestor present in the file."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None

    def problem(self, path: Path_, message: str) -> ConfigProblem:
        return ConfigProblem(self.source, self.line_of(path), dotted(path), message)

    def credentials_for(
        self, service: str, environ: Mapping[str, str] | None = None
    ) -> tuple[Credentials, list[ConfigProblem]]:
        """Resolve a service's credential variables; a missing variable is a problem, by line."""
        env = os.environ if environ is None else environ
        upstream = self.config.services[service].upstream
        values: dict[str, str] = {}
        problems: list[ConfigProblem] = []
        for key, var in (upstream.credentials if upstream else {}).items():
            value = env.get(var)
            if not value:
                path: Path_ = ("services", service, "upstream", "credentials", key)
                problems.append(self.problem(path, f"environment variable {var} is not set"))
            else:
                values[key] = value
        return Credentials(values), problems


def dotted(path: Path_) -> str:
    """``("items", 0, "name")`` -> ``items[0].name``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _walk(
    node: yaml.Node, path: Path_, lines: dict[Path_, int], source: str
) -> list[ConfigProblem]:
    """Record the line of every key and refuse duplicate keys, which PyYAML silently merges."""
    problems: list[ConfigProblem] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(
                    ConfigProblem(
                        source,
                        line,
                        dotted((*path, key)),
                        f"duplicate key, first defined on line {seen[key]}",
                    )
                )
                continue
            seen[key] = line
            lines[(*path, key)] = line
            problems += _walk(value_node, (*path, key), lines, source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            problems += _walk(item, (*path, index), lines, source)
    return problems


def parse_config(text: str, source: str = "bus.yaml") -> LoadedConfig:
    """Parse and validate bus.yaml text; raise :class:`ConfigError` naming every bad line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and context_mark is not None:
            reason += f" ({context} started on line {context_mark.line + 1})"
        raise ConfigError([ConfigProblem(source, line, "", f"not valid YAML: {reason}")]) from exc
    lines: dict[Path_, int] = {}
    if root is not None:
        if not isinstance(root, yaml.MappingNode):
            raise ConfigError([ConfigProblem(source, 1, "", "the file must be a mapping")])
        problems = _walk(root, (), lines, source)
        if problems:
            raise ConfigError(problems)
    try:
        config = BusConfig.model_validate(data or {})
    except ValidationError as exc:
        loaded = LoadedConfig(BusConfig(), source, lines)
        raise ConfigError(
            [
                loaded.problem(tuple(p for p in err["loc"] if p != "[key]"), _reason(err))
                for err in exc.errors()
            ]
        ) from exc
    loaded = LoadedConfig(config, source, lines)
    unknown = [
        loaded.problem(
            ("services", name, "retry"),
            f"unknown retry policy {svc.retry!r} (known: {', '.join(_policy_names(config))})",
        )
        for name, svc in config.services.items()
        if config.retry_policy(svc.retry) is None
    ]
    if unknown:
        raise ConfigError(unknown)
    return loaded


def load_config(path: Path) -> LoadedConfig:
    """Read bus.yaml from ``path``; a missing or unreadable file is a :class:`ConfigError` too."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [ConfigProblem(str(path), None, "", f"cannot read: {exc.strerror}")]
        ) from exc
    return parse_config(text, str(path))


def _policy_names(config: BusConfig) -> list[str]:
    return sorted({*BUILTIN_RETRY_POLICIES, *config.retry_policies})


def _reason(err: Mapping[str, Any]) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "string_pattern_mismatch" and err["loc"][:1] == ("services",):
        return "service names are lower-case letters, digits, '-' and '_', starting with a letter"
    return str(err["msg"])
