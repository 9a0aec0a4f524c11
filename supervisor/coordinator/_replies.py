"""Answers and names shared by the service and recovery: refusals, replies, causes,
wrapper ids."""

from __future__ import annotations

import hashlib
from typing import Any

from supervisor import StartError, ZiggieError, describe
from supervisor.protocol import DeploymentRequest, DeploymentResponse, ErrorCode


class AgentRefused(ZiggieError, ValueError):
    """The spec cannot be deployed as it stands; the message says which field and why."""


def wrapper_id(agent_id: str) -> str:
    """The id of a top-level agent's own supervisor (a valid id, whatever the agent's)."""
    if len(agent_id) <= 117:
        return f"{agent_id}.supervisor"
    digest = hashlib.sha256(agent_id.encode()).hexdigest()[:8]
    return f"{agent_id[:100]}.supervisor-{digest}"


def reply(
    request: DeploymentRequest,
    status: str,
    agent_id: str,
    message: str,
    *,
    code: ErrorCode | None = None,
    **fields: Any,
) -> DeploymentResponse:
    return DeploymentResponse(
        request_id=request.request_id,
        status=status,  # type: ignore[arg-type]
        agent_id=agent_id,
        message=message,
        code=code,
        **fields,
    )


def not_found(request: DeploymentRequest, agent_id: str) -> DeploymentResponse:
    return reply(
        request,
        "failed",
        agent_id,
        "Agent not found",
        error=f"No agent with ID {agent_id}",
        code="not_found",
    )


def subject(request: DeploymentRequest) -> str:
    """The agent a request is about, for its answer's ``agent_id``."""
    if request.agent_spec is not None:
        return request.agent_spec.id
    return request.target_agent_id or "unknown"


def conflict(request: DeploymentRequest) -> DeploymentResponse:
    """Its id is another caller's, or names another request: never that one's answer."""
    return reply(
        request,
        "failed",
        subject(request),
        "Request id already used",
        error=f"request_id: {request.request_id!r} names another request",
        code="conflict",
    )


def forbidden(request: DeploymentRequest, why: str) -> DeploymentResponse:
    return reply(request, "failed", subject(request), "Forbidden", error=why, code="forbidden")


def unknown_action(request: DeploymentRequest) -> DeploymentResponse:
    return reply(
        request,
        "failed",
        subject(request),
        "Unknown action",
        error=f"action: {request.action!r} is not an action of this coordinator",
        code="refused",
    )


def cause(exc: BaseException | str) -> str:
    """What really failed: through start errors (a wrapper's wraps its agent's) and
    exception groups of one."""
    while True:
        if isinstance(exc, StartError):
            exc = exc.reason
        elif isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        else:
            return describe(exc)
