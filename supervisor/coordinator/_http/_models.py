"""The API's own bodies (beside the seed's wire models): a deploy, and RFC 9457 problems."""

from __future__ import annotations

from pydantic import BaseModel, Field

from supervisor.protocol import AgentSpec, DeploymentResponse


class DeployBody(BaseModel):
    """``POST /v1/agents``: a spec, and where in the tree it goes."""

    agent_spec: AgentSpec
    parent_agent: str | None = Field(
        default=None, description="The parent agent's id; default: top level (operator) or self"
    )
    request_id: str | None = Field(
        default=None, description="Makes the deploy idempotent: a repeat gets the same answer"
    )


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    field: str | None = Field(default=None, description="The offending field, when there is one")


class Refusal(DeploymentResponse):
    """A refused request: RFC 9457 problem members over the seed's failed response.

    ``status`` stays the seed's (``"failed"``); RFC 9457 makes a problem's numeric
    ``status`` advisory, and the HTTP status line carries it.
    """

    type: str = "about:blank"
    title: str
    detail: str | None = None
