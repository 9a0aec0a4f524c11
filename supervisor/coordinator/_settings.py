"""Coordinator settings: ``ZIGGIE_*`` environment variables, CLI flags, an optional TOML file.

Precedence, highest first: explicit values (CLI flags), environment, TOML file, defaults.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

#: A DNS name or an IP address (IPv6 without brackets), as a ``Host`` header names it.
_HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:-]{0,252}")


class Settings(BaseSettings):
    """How a coordinator runs. Every field can be set as ``ZIGGIE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="ZIGGIE_", extra="forbid")
    _toml: ClassVar[Path | None] = None

    home: Path = Field(default=Path(".ziggie"), description="Coordinator home directory")
    default_runner: str = Field(default="demo", description="Runner when a spec has none")
    concurrency: int = Field(default=16, ge=1, description="Deploys handled at once")
    max_request_bytes: int = Field(default=2**20, ge=1024, description="Request size cap")
    log_max_bytes: int = Field(default=10 * 2**20, ge=1024, description="Agent log cap")
    polling: bool = Field(default=False, description="Poll instead of inotify")
    recovery_grace: float = Field(default=2.0, ge=0, description="Grace for stray processes")
    # -- the HTTP API (issue 12) --
    http: str | None = Field(default=None, description="Serve the REST API at HOST:PORT")
    http_public: bool = Field(default=False, description="Allow a non-loopback --http")
    http_max_body: int = Field(default=2**20, ge=1024, description="Request body cap (bytes)")
    http_read_timeout: float = Field(default=30.0, ge=0, description="Idle read cut-off (s)")
    http_hosts: list[str] = Field(
        default_factory=list,
        description="Host names the API also answers to (the first is agents' URL on 0.0.0.0)",
    )
    http_max_connections: int = Field(
        default=1024, ge=1, description="Open API connections at most; past it: 503, closed"
    )
    event_retention: int = Field(default=100_000, ge=100, description="Events kept for resume")
    event_retention_bytes: int = Field(
        default=64 * 2**20, ge=64 * 1024, description="...and at most this many bytes of them"
    )
    # -- placement on a Ray cluster (issue 14) --
    ray: str | None = Field(
        default=None, description="Ray cluster for placed agents: HOST:PORT, auto, or local"
    )
    ray_start_timeout: float = Field(
        default=60.0, gt=0, description="Longest wait for a placed agent's host to start"
    )
    ray_lease: float = Field(
        default=10.0, ge=8, description="A host that hears nothing this long stops its agents"
    )
    # -- issue 10 (containment) --
    agent_max_restarts: int = Field(default=5, ge=0, description="Per-agent restart limit")
    agent_max_seconds: float = Field(default=60.0, gt=0, description="...within seconds")
    agent_backoff_initial: float = Field(default=0.1, ge=0, description="First restart delay")
    agent_backoff_max: float = Field(default=5.0, ge=0, description="Restart delay ceiling")
    subreaper: bool = Field(default=True, description="serve: become the child subreaper")
    durability: Literal["full", "fast"] = Field(
        default="full", description="full: changes are fsynced before they are answered"
    )
    limits_best_effort: bool = Field(
        default=False, description="Run agents whose limits cannot be enforced here"
    )
    # -- confinement: what the kernel holds each agent to --
    confinement: Literal["enforce", "best_effort"] = Field(
        default="enforce",
        description="best_effort: run agents unconfined where the kernel cannot confine",
    )
    agent_env: list[str] = Field(
        default_factory=list,
        description="Names of the coordinator's environment variables agents inherit",
    )
    # -- OpenTelemetry traces: off unless these (or their OTEL_* variables) turn them on --
    otel_traces_exporter: str | None = Field(
        default=None, description="otlp, console, or none (else OTEL_TRACES_EXPORTER)"
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, description="The collector's base URL (else OTEL_EXPORTER_OTLP_ENDPOINT)"
    )
    otel_exporter_otlp_protocol: Literal["http/protobuf", "grpc"] | None = Field(
        default=None, description="http/protobuf or grpc (else OTEL_EXPORTER_OTLP_PROTOCOL)"
    )
    otel_service_name: str | None = Field(
        default=None, description="service.name of the spans (else OTEL_SERVICE_NAME, ziggie)"
    )
    otel_resource_attributes: str | None = Field(
        default=None, description="key=value,... (else OTEL_RESOURCE_ATTRIBUTES)"
    )
    trace_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s]*\{trace_id\}[^\s]*$",
        description="Link to a trace for the dashboard: an http(s) URL with {trace_id}",
    )
    # -- housekeeping (issue 11): a coordinator left running for days stays bounded --
    retain_answers_seconds: float = Field(
        default=86_400, gt=0, description="Keep answers (responses/, journal) this long"
    )
    retain_archive_days: int = Field(default=7, ge=0, description="Keep archive/ days")
    retain_finished_seconds: float = Field(
        default=7 * 86_400, gt=0, description="Keep finished agents this long after they end"
    )
    events_max_bytes: int = Field(
        default=64 * 2**20, ge=1024, description="Rotate events.jsonl beyond this size"
    )
    prune_interval_seconds: float = Field(
        default=3600, gt=0, description="How often the coordinator prunes"
    )

    @field_validator("http_hosts")
    @classmethod
    def _host_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _HOST_NAME.fullmatch(name):
                raise ValueError(f"http_hosts: {name[:64]!r} is not a host name or address")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls._toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls._toml))
        return tuple(sources)

    @classmethod
    def load(cls, config: Path | None = None, **explicit: Any) -> Settings:
        """Settings from *explicit* values (None means unset), env, then *config* (TOML)."""
        if config is not None and not config.is_file():
            raise FileNotFoundError(f"config file {str(config)!r} does not exist")
        cls._toml = config
        try:
            return cls(**{k: v for k, v in explicit.items() if v is not None})
        finally:
            cls._toml = None
