"""Wire models of the seed's file-queue protocol (``version: "1.0"``), field for field.

The seed's own client and request files must validate unchanged, so every field we add
is optional with a default. What the seed lacked is validation: ids are checked here,
once, before anything can use them as part of a path.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from supervisor._ids import validate_id

from ._environment import check_env_name
from ._tracecontext import current_trace_context, valid_traceparent, valid_tracestate

PROTOCOL_VERSION = "1.0"


def _check_id(value: str) -> str:
    return validate_id(value)


def _utc(value: Any) -> Any:
    # The seed writes naive ``datetime.utcnow()`` stamps: read them as UTC.
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return value


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


#: A safe id; its JSON schema states the rule, so API clients can generate valid ones.
SafeId = Annotated[
    str,
    AfterValidator(_check_id),
    WithJsonSchema(
        {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", "maxLength": 128}
    ),
]
#: ISO 8601 (naive stamps read as UTC) or Unix seconds, as pydantic reads datetimes.
Timestamp = Annotated[
    datetime,
    BeforeValidator(_utc),
    WithJsonSchema({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}]}),
]
Level = Literal["L1", "L2", "L3"]
RestartType = Literal["permanent", "transient", "temporary"]
Action = Literal[
    "deploy_agent", "status_check", "terminate_agent", "list_agents", "restart_agent", "prune"
]
Status = Literal["deployed", "failed", "running", "completed", "terminated", "submitted"]


#: Machine-readable failure reasons: a caller decides on these, never on message text.
ErrorCode = Literal[
    "not_found",  # no such agent
    "not_running",  # the agent exists but runs no more
    "refused",  # the spec or the request breaks a rule (named in ``error``)
    "conflict",  # the id is taken
    "start_failed",  # the agent's process could not start
    "invalid_request",  # the request file could not be read as a request
    "invalid_response",  # the answer file could not be read as an answer (client side)
    "timeout",  # no answer in time (client side)
    "no_coordinator",  # nothing serves the queue or the URL (client side)
    "unauthorized",  # no or a wrong token (HTTP)
    "forbidden",  # the token may not do this (HTTP: an agent outside its subtree)
    "internal",  # a bug: logged with the request id
]


class _Model(BaseModel):
    # Unknown fields are ignored, as pydantic's default, so newer peers stay readable.
    model_config = ConfigDict(extra="ignore", str_max_length=1_000_000)


#: One path pattern or program name: bounded, as every check on it must stay cheap.
Pattern = Annotated[str, Field(min_length=1, max_length=4096)]
Port = Annotated[int, Field(ge=1, le=65535)]


class NetworkPermissions(_Model):
    """TCP ports an agent may connect to and bind (the kernel refuses every other)."""

    model_config = ConfigDict(extra="forbid")

    connect: list[Port] = Field(default_factory=list, max_length=256, description="TCP ports")
    bind: list[Port] = Field(default_factory=list, max_length=256, description="TCP ports")


class AgentPermissions(_Model):
    """File and command permissions for an agent (glob patterns and program names)."""

    read: list[Pattern] = Field(
        default_factory=list, max_length=256, description="Readable file paths"
    )
    write: list[Pattern] = Field(
        default_factory=list, max_length=256, description="Writable file paths"
    )
    execute: list[Pattern] = Field(
        default_factory=list, max_length=256, description="Executable commands"
    )
    # -- addition: absent means an unrestricted network, as in the seed --
    network: NetworkPermissions | None = Field(
        default=None, description='TCP rules: {"connect": [443], "bind": []}'
    )


class AgentContext(_Model):
    """Execution context for an agent."""

    working_directory: str = Field(description="Working directory for agent")
    knowledge_base: str | None = Field(None, description="Knowledge base path")
    permissions: AgentPermissions = Field(default_factory=AgentPermissions)


def _check_shutdown(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("shutdown must be seconds >= 0, 'brutal_kill' or 'infinity'")
    if isinstance(value, str) and value not in ("brutal_kill", "infinity"):
        raise ValueError("shutdown must be seconds >= 0, 'brutal_kill' or 'infinity'")
    if isinstance(value, int | float) and value < 0:
        raise ValueError("shutdown seconds must be >= 0")
    return value


ShutdownField = Annotated[
    float | Literal["brutal_kill", "infinity"],
    BeforeValidator(_check_shutdown),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"enum": ["brutal_kill", "infinity"]},
            ]
        }
    ),
]


_SIZE = re.compile(r"^([0-9]+)([KMGT]?)$")


def _memory(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        match = _SIZE.match(str(value).strip().upper())
        if match is None:
            raise ValueError("memory: bytes, or a number with K, M, G or T (e.g. '512M')")
        size = int(match.group(1)) * 1024 ** "_KMGT".index(match.group(2) or "_")
    if size < 4096:
        raise ValueError("memory: at least 4096 bytes")
    return size


class Limits(_Model):
    """Resource limits of an agent's cgroup: refused where not enforceable."""

    model_config = ConfigDict(extra="forbid")

    memory: Annotated[int, BeforeValidator(_memory)] | None = Field(
        default=None, description="memory.max: bytes, or '512M'"
    )
    cpu: float | None = Field(default=None, gt=0, description="cpu.max: CPUs (0.5 = half)")
    pids: StrictInt | None = Field(default=None, ge=1, description="pids.max: processes")

    def files(self) -> dict[str, str]:
        """The cgroup files' contents, by controller."""
        out: dict[str, str] = {}
        if self.memory is not None:
            out["memory"] = str(self.memory)
        if self.cpu is not None:
            out["cpu"] = f"{round(self.cpu * 100_000)} 100000"
        if self.pids is not None:
            out["pids"] = str(self.pids)
        return out


class RayPlacement(_Model):
    """Where a placed agent runs: a Ray actor hosting it and its subtree."""

    model_config = ConfigDict(extra="forbid")

    engine: Literal["ray"] = Field(description="The placement engine")
    resources: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict, description='Ray resources of the host actor: {"CPU": 1}'
    )
    node: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9.:_-]{1,128}$",
        description="A node id (56 hex digits) or a node's IP address",
    )


class AgentSpec(_Model):
    """Agent deployment specification (the seed's fields, plus optional new ones)."""

    id: SafeId = Field(default_factory=new_id, description="Unique agent ID")
    level: Level = Field(description="Agent hierarchy level")
    name: str = Field(description="Human-readable agent name")
    role: str = Field(description="Agent role description")
    tools: list[str] = Field(default=["Read", "Grep", "Bash"], description="Available tools")
    context: AgentContext = Field(description="Execution context")
    task: str = Field(description="Task description")
    # Strict: "50" or 50.5 are refused, as the schema says (the seed writes integers).
    max_iterations: StrictInt = Field(default=50, ge=1, description="Maximum iterations")
    timeout_seconds: StrictInt = Field(default=300, gt=0, description="Timeout in seconds")
    # -- additions; all optional so the seed's files stay valid --
    command: list[str] | None = Field(
        default=None, description="Exact argv to run (never through a shell)"
    )
    runner: str | None = Field(default=None, description="Runner name when no command")
    restart: RestartType | None = Field(default=None, description="Restart type")
    shutdown: ShutdownField = Field(default=5.0, description="Graceful stop seconds")
    max_children: StrictInt | None = Field(default=None, ge=0, description="Live children cap")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Extra environment",
        json_schema_extra={"propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]{0,127}$"}},
    )
    # The agent's own restart intensity and backoff (None: the
    # coordinator's defaults). Past its intensity an agent is given up, alone.
    max_restarts: StrictInt | None = Field(
        default=None, ge=0, description="Restarts allowed within max_seconds"
    )
    max_seconds: StrictFloat | None = Field(default=None, gt=0, description="Intensity window")
    backoff_initial: StrictFloat | None = Field(
        default=None, ge=0, description="Seconds before the first restart in a window"
    )
    limits: Limits | None = Field(
        default=None,
        description='cgroup v2 limits: {"memory": "512M", "cpu": 0.5, "pids": 256}',
    )
    backoff_max: StrictFloat | None = Field(default=None, ge=0, description="Backoff ceiling")
    placement: Literal["local"] | RayPlacement = Field(
        default="local",
        description='"local", or {"engine": "ray", "resources": {...}, "node": "..."}',
    )

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            check_env_name(name)
        return value

    @field_validator("command")
    @classmethod
    def _command_not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or not value[0]):
            raise ValueError("command must be a non-empty argv list")
        return value


def _lenient(check: Any) -> Any:
    """A trace context field: a string, ignored (None) when malformed, as W3C says."""

    def read(value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError("must be a string")
        return check(value)  # type: ignore[no-any-return]

    return BeforeValidator(read)


_EXAMPLE: Final = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
TraceParent = Annotated[
    str | None,
    _lenient(valid_traceparent),
    WithJsonSchema({"anyOf": [{"type": "string", "example": _EXAMPLE}, {"type": "null"}]}),
]
TraceState = Annotated[
    str | None,
    _lenient(valid_tracestate),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "null"}]}),
]


def _target_needed(action: str) -> dict[str, Any]:
    return {
        "if": {"properties": {"action": {"const": action}}, "required": ["action"]},
        "then": {
            "required": ["target_agent_id"],
            "properties": {"target_agent_id": {"type": "string"}},
        },
    }


class DeploymentRequest(_Model):
    """A request in ``requests/<request_id>.request.json``."""

    # The schema states what the validator below checks: each action's own arguments.
    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                {
                    "if": {
                        "properties": {"action": {"const": "deploy_agent"}},
                        "required": ["action"],
                    },
                    "then": {
                        "required": ["agent_spec"],
                        "properties": {"agent_spec": {"type": "object"}},
                    },
                },
                *(_target_needed(a) for a in ("status_check", "terminate_agent", "restart_agent")),
            ]
        }
    )

    version: str = Field(default=PROTOCOL_VERSION, description="Protocol version")
    request_id: SafeId = Field(default_factory=new_id)
    timestamp: Timestamp = Field(default_factory=utc_now)
    # An id like any other (the seed's top-level names "Ziggie", "api", "cli" are ids):
    # it is written into events and the journal, so it may not be free text.
    parent_agent: SafeId = Field(description="Parent agent id, or a top-level name (Ziggie)")
    action: Action
    agent_spec: AgentSpec | None = None
    target_agent_id: SafeId | None = None
    # -- additions: the caller's W3C trace context; a malformed one is ignored (None) --
    traceparent: TraceParent = Field(default=None, description="W3C traceparent of the caller")
    tracestate: TraceState = Field(default=None, description="W3C tracestate of the caller")

    def in_callers_trace(self) -> DeploymentRequest:
        """This request with its caller's trace context (:func:`current_trace_context`),
        unless it carries one already: what it causes then continues the caller's trace."""
        if self.traceparent is not None:
            return self
        parent, state = current_trace_context()
        if parent is None:
            return self
        return self.model_copy(update={"traceparent": parent, "tracestate": state})

    @model_validator(mode="after")
    def _action_has_its_arguments(self) -> DeploymentRequest:
        if self.action == "deploy_agent" and self.agent_spec is None:
            raise ValueError("action 'deploy_agent' needs 'agent_spec'")
        if self.action in ("status_check", "terminate_agent", "restart_agent") and (
            self.target_agent_id is None
        ):
            raise ValueError(f"action {self.action!r} needs 'target_agent_id'")
        return self


class DeploymentResponse(_Model):
    """An answer in ``responses/<request_id>.response.json``."""

    version: str = Field(default=PROTOCOL_VERSION)
    request_id: str
    timestamp: Timestamp = Field(default_factory=utc_now)
    status: Status
    agent_id: str
    pid: int | None = None
    message: str
    output_log: str | None = None
    error: str | None = None
    # -- additions --
    agent: dict[str, Any] | None = Field(default=None, description="Status detail")
    agents: list[dict[str, Any]] | None = Field(default=None, description="list_agents")
    code: ErrorCode | None = Field(
        default=None, description="Why a request failed, for programs (not in the seed)"
    )


def validation_summary(exc: ValidationError) -> str:
    """The first few validation errors, each as ``field.path: message``."""
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(x) for x in err["loc"])
        parts.append(f"{where}: {err['msg']}" if where else str(err["msg"]))
    return "; ".join(parts)
