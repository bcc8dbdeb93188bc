"""Process settings from ``LGSP_*`` environment variables (pydantic-settings).

What the bus connects to is declared in ``bus.yaml`` (see :mod:`bus.config`); these settings say
how this process runs: where that file is, where to listen, how to log, the HTTP client.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Settings of one gateway process; every field can be set as ``LGSP_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="LGSP_", extra="forbid")

    config: Path = Field(default=Path("bus.yaml"), description="Path of the bus.yaml to load.")
    host: str = Field(default="127.0.0.1", description="Address `lgsp serve` listens on.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port `lgsp serve` listens on.")
    workers: int = Field(
        default=1,
        ge=1,
        description="Gateway worker processes; on Linux each listens on a socket of its own "
        "(SO_REUSEPORT), so that the kernel spreads connections over them (bus.workers).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = Field(
        default="json", description="JSON lines for machines, or coloured lines for a terminal."
    )
    max_body_bytes: int = Field(
        default=1_048_576, ge=1, description="Largest request body accepted on the call route."
    )
    ready_cache_seconds: float = Field(
        default=5.0, ge=0, description="How long /readyz reuses its upstream reachability check."
    )
    ready_probe_timeout: float = Field(
        default=2.0, gt=0, description="Timeout of one upstream reachability probe."
    )
    http_transport: Literal["aiohttp", "httpx"] = Field(
        default="aiohttp",
        description="Transport of the shared httpx client; see bench/http_transports.py.",
    )
    auth: Literal["required", "open"] = Field(
        default="required",
        description="required: every call needs a consumer credential. open: every caller is "
        "the anonymous consumer with every right (development only; logged loudly).",
    )
    store_path: Path = Field(
        default=Path("lgsp.db"), description="SQLite file of the embedded store (consumers...)."
    )
    token_signing_key: SecretStr | None = Field(
        default=None,
        description="HS256 key (>= 32 bytes) of the bus's access tokens; default: one created "
        "once and kept in the store, shared by every process of the deployment.",
    )
    token_lifetime: int = Field(default=300, ge=30, le=86_400, description="Access token life (s).")
    token_issuer: str = Field(default="lgsp-bus", description="`iss` of the access tokens.")
    token_audience: str = Field(default="lgsp-bus", description="`aud` the gateway accepts.")
    admin_token: SecretStr | None = Field(
        default=None,
        description="Bearer credential of the admin API (/v1/admin); unset: the API is disabled.",
    )
    digest_key: SecretStr | None = Field(
        default=None,
        description="Key of the HMAC digests of raw upstream messages in exchange records; "
        "random per process when unset (digests then cannot be re-checked after a restart).",
    )
    audit_path: Path | None = Field(
        default=None,
        description="SQLite file of the exchange log; default: beside the store, <store>-audit.db.",
    )
    audit_key_file: Path | None = Field(
        default=None,
        description="Where audit keys not set in the environment are created and kept; "
        "default: <audit_path>.keys.json.",
    )
    audit_checkpoint_every: int = Field(
        default=1000,
        ge=1,
        description="Keep the signed chain head as a checkpoint every this many records.",
    )
    audit_writer: Literal["process", "thread"] = Field(
        default="process",
        description="Who appends the exchange records: a writer process of each gateway "
        "process (where the platform has forkserver; else a thread), or a thread.",
    )
    audit_commit_timeout: float = Field(
        default=30.0,
        ge=0.1,
        description="Seconds the exchange log's writer process may take to commit a batch "
        "before it is stopped and the batch's calls fail (e.g. another process holds the "
        "log's lock and hangs); the thread writer waits without limit.",
    )
    audit_batch: int = Field(
        default=256,
        ge=1,
        le=10_000,
        description="Most exchange records written in one transaction (group commit).",
    )
    idempotency_ttl: float = Field(
        default=86_400.0,
        gt=0,
        description="How long an Idempotency-Key and its stored reply are kept (s).",
    )
    delivery_worker: Literal["inprocess", "off"] = Field(
        default="inprocess",
        description="inprocess: each gateway process also delivers queued messages. off: only "
        "`lgsp worker` processes deliver them.",
    )
    delivery_concurrency: int = Field(
        default=16, ge=1, le=1000, description="Deliveries one worker sends at the same time."
    )
    delivery_poll_seconds: float = Field(
        default=1.0, gt=0, description="Longest a worker sleeps before looking for due messages."
    )
    grace_seconds: float = Field(
        default=30.0,
        ge=0,
        description="On SIGTERM, how long in-flight calls and deliveries may take to finish.",
    )
    backlog: int = Field(
        default=4096,
        ge=64,
        description="Connections the listening socket queues before they are accepted (the "
        "kernel caps it at net.core.somaxconn): a burst of callers larger than this waits "
        "for SYN retransmits, a second or more.",
    )
    gc_freeze: bool = Field(
        default=True,
        description="Once started, exempt the start-up objects from garbage collection "
        "(gc.freeze) and collect the youngest generation every 10,000 allocations instead of "
        "700: some 10% less CPU per call in bench/run.py.",
    )
    switch_interval_ms: float = Field(
        default=0.2,
        gt=0,
        le=100,
        description="Once started, sys.setswitchinterval: how long a thread waiting for the "
        "GIL (the exchange log's writer, back from a commit) waits for a busy event loop to "
        "let go of it. Python's default is 5 ms; every call waits for its record's commit.",
    )
    http_max_connections: int = Field(default=200, ge=1)
    http_keepalive_seconds: float = Field(default=30.0, gt=0)

    def audit_file(self) -> Path:
        """The exchange log's SQLite file."""
        if self.audit_path is not None:
            return self.audit_path
        return self.store_path.with_name(f"{self.store_path.stem}-audit.db")

    def audit_keys_file(self) -> Path:
        if self.audit_key_file is not None:
            return self.audit_key_file
        audit = self.audit_file()
        return audit.with_name(f"{audit.name}.keys.json")
