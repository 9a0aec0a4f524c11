"""Who is asking, and what they may ask: one rule for every transport.

A caller is known by where its request arrived, never by what the request says: the
operator's queue (``<home>/agent-queue``) or the operator's token is the operator; an
agent's own queue (``<home>/agents/<id>/agent-queue``) or its token is that agent.
``parent_agent`` is a claim, checked here like any other field. The file queue and the
HTTP API both ask :func:`authorize` (through the service), so they cannot disagree.

An agent may act only on its own subtree, and only while it runs: deploy under itself or a
descendant, status/terminate/restart of itself or a descendant. ``list_agents`` and
``prune`` are the operator's; an action not named in :data:`ACTIONS` is nobody's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Final

from supervisor import ZiggieError
from supervisor.protocol import DeploymentRequest

#: How far up the journal's parent links a subtree check looks: levels stop at L3, so a
#: longer chain is a corrupt journal, never a reason to loop.
_MAX_DEPTH: Final = 64


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request: ``agent_id`` is None for the operator."""

    agent_id: str | None = None

    @property
    def operator(self) -> bool:
        return self.agent_id is None

    @property
    def key(self) -> str:
        """The journal's name for this caller: '' for the operator (no agent id is empty)."""
        return self.agent_id or ""

    def __str__(self) -> str:
        return "operator" if self.agent_id is None else self.agent_id


OPERATOR: Final = Caller()


class Forbidden(ZiggieError):
    """The caller may not make this request; *field* names what it may not ask for."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Scope(Enum):
    """Who may call an action (the operator may call every action of :data:`ACTIONS`)."""

    OPERATOR = "operator"  #: the operator only
    PARENT = "parent_agent"  #: an agent, under itself or one of its descendants
    TARGET = "target_agent_id"  #: an agent, on itself or one of its descendants

    @property
    def operator_only(self) -> bool:
        return self is Scope.OPERATOR


#: Every action, and who may call it. An action missing here is refused to everyone.
ACTIONS: Final[Mapping[str, Scope]] = MappingProxyType(
    {
        "deploy_agent": Scope.PARENT,
        "status_check": Scope.TARGET,
        "terminate_agent": Scope.TARGET,
        "restart_agent": Scope.TARGET,
        "list_agents": Scope.OPERATOR,
        "prune": Scope.OPERATOR,
    }
)


def in_subtree(root: str, agent_id: str, parent_of: Callable[[str], str | None]) -> bool:
    """True if *agent_id* is *root* or one of its descendants, by *parent_of* links."""
    current: str | None = agent_id
    for _ in range(_MAX_DEPTH):
        if current is None:
            return False
        if current == root:
            return True
        current = parent_of(current)
    return False


def authorize(
    caller: Caller,
    request: DeploymentRequest,
    *,
    parent_of: Callable[[str], str | None],
    live: Callable[[str], bool],
) -> None:
    """Raise :class:`Forbidden` unless *caller* may make *request*.

    *parent_of* gives an agent's parent id (None at the top), *live* whether an agent runs
    now: an agent's identity, like its token, dies with it.
    """
    scope = ACTIONS.get(request.action)
    if scope is None:
        raise Forbidden(f"unknown action {request.action!r}: nobody may call it", "action")
    if caller.agent_id is None:
        return
    me = caller.agent_id
    if scope is Scope.OPERATOR:
        raise Forbidden(f"{request.action} is the operator's; agent {me!r} may not call it")
    if not live(me):
        raise Forbidden(f"agent {me!r} is not running")
    if scope is Scope.PARENT:
        if not in_subtree(me, request.parent_agent, parent_of):
            raise Forbidden(
                f"agent {me!r} may deploy only under itself or its descendants,"
                f" not under {request.parent_agent[:128]!r}",
                "parent_agent",
            )
        return
    target = request.target_agent_id
    if target is None or not in_subtree(me, target, parent_of):
        raise Forbidden(
            f"agent {me!r} may act only on itself and its descendants", "target_agent_id"
        )


#: The seed's names for "no agent" as a parent: what a client sends to deploy at the top
#: (the seed's client says "Ziggie", our HTTP API "api", the CLI "cli").
TOP_LEVEL_PARENTS: Final = frozenset({"Ziggie", "api", "cli"})


def attributed(caller: Caller, request: DeploymentRequest) -> DeploymentRequest:
    """*request* as *caller* can mean it: an agent has no top level, so its deploy naming
    no agent as parent (the seed's client, unchanged inside an agent, says "Ziggie") is a
    deploy under the agent itself."""
    if (
        caller.agent_id is not None
        and request.action == "deploy_agent"
        and request.parent_agent in TOP_LEVEL_PARENTS
    ):
        return request.model_copy(update={"parent_agent": caller.agent_id})
    return request


def fingerprint(request: DeploymentRequest) -> str:
    """What *request* asks, as a digest (its id, stamp, version and trace context left
    out): a request id names one request of one caller, and a replay must ask the same
    (a retry sent from another span of the caller is still the same request)."""
    text = request.model_dump_json(
        exclude={"version", "request_id", "timestamp", "traceparent", "tracestate"}
    )
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
