"""What a parent agent may deploy: one level down, no wider permissions, no later deadline;
and where the deploy goes (the parent's own supervisor, or the host that runs it).

Violations are refused with a message that names the field; nothing is silently "fixed".
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from actors import ProcessHandle
from supervisor import Supervisor, is_valid_id
from supervisor.protocol import AgentSpec

from ._defaults import remaining_time
from ._globs import BadPattern, normalize, within
from ._placed import host_of
from ._ray import RemoteHandle
from ._replies import AgentRefused

if TYPE_CHECKING:
    from ._service import AgentService

_NEXT = {"L1": "L2", "L2": "L3"}


def check_patterns(spec: AgentSpec) -> None:
    """Refuse permission patterns with a ``..`` segment (issue 10, item 9)."""
    perms = spec.context.permissions
    for field in ("read", "write"):
        for pattern in getattr(perms, field):
            try:
                normalize(pattern)
            except BadPattern as exc:
                raise AgentRefused(f"context.permissions.{field}: {exc}") from None


def check_top_level(spec: AgentSpec, parent_agent: str) -> None:
    check_patterns(spec)
    if spec.level != "L1":
        raise AgentRefused(
            f"level: a top-level deploy (parent {parent_agent!r} is not an agent) must be L1,"
            f" not {spec.level}"
        )


def check_child(
    parent: AgentSpec, child: AgentSpec, *, parent_remaining: float | None = None
) -> None:
    """Refuse *child* under *parent* unless every rule holds."""
    expected = _NEXT.get(parent.level)
    if expected is None:
        raise AgentRefused(f"level: {parent.id!r} is {parent.level}; an L3 agent has no children")
    if child.level != expected:
        raise AgentRefused(
            f"level: a child of {parent.id!r} ({parent.level}) must be {expected},"
            f" not {child.level}"
        )
    check_patterns(child)
    mine, theirs = child.context.permissions, parent.context.permissions
    for field in ("read", "write"):
        wider = [p for p in getattr(mine, field) if not _covered(p, getattr(theirs, field))]
        if wider:
            raise AgentRefused(
                f"context.permissions.{field}: {wider} not within the parent's"
                f" {getattr(theirs, field)}"
            )
    if theirs.execute:  # an empty list allows any program
        if not mine.execute:
            raise AgentRefused(
                "context.permissions.execute: [] (any program) is wider than the parent's"
                f" {theirs.execute}"
            )
        extra = [p for p in mine.execute if p not in theirs.execute]
        if extra:
            raise AgentRefused(
                f"context.permissions.execute: {extra} not within the parent's {theirs.execute}"
            )
    # Whole seconds, as the field: a child may ask for the parent's remaining time rounded
    # up. Its own deadline then lands at most a second after the parent's, and the parent's
    # timeout cascade stops it first: it never outlives its parent.
    if parent_remaining is not None and child.timeout_seconds > math.ceil(parent_remaining):
        raise AgentRefused(
            f"timeout_seconds: {child.timeout_seconds} exceeds the parent's remaining time"
            f" ({max(math.ceil(parent_remaining), 0)} s)"
        )


def _covered(pattern: str, allowed: list[str]) -> bool:
    # Issue 10, item 9: by the paths the patterns match, not by their text: "/data/*" is
    # not within "/data/?", though fnmatch("/data/*", "/data/?") says it is.
    try:
        return within(pattern, allowed)
    except BadPattern:
        return False  # a parent's own bad pattern grants nothing


def placement(
    service: AgentService, parent_agent: str, spec: AgentSpec
) -> tuple[Supervisor | RemoteHandle, str | None]:
    """The supervisor a deploy goes under (or the host that runs its parent, issue 14),
    and its parent agent id (None: top level), once every rule holds."""
    handle = service.rt.whereis(parent_agent) if parent_agent in service.rt else None
    host = host_of(service, parent_agent)
    if host is not None or isinstance(handle, ProcessHandle):
        row = service.journal.agent(parent_agent)
        if row is None:
            raise AgentRefused(f"parent_agent: {parent_agent!r} is not an agent of ours")
        parent = AgentSpec.model_validate(row["spec"])
        left = remaining_time(service.rt, parent_agent, row)
        check_child(parent, spec, parent_remaining=left)
        if host is not None:
            return host, parent_agent
        assert isinstance(handle, ProcessHandle)
        if handle.supervisor is None:
            raise AgentRefused(f"parent_agent: {parent_agent!r} cannot have children")
        return handle.supervisor, parent_agent
    known = service.journal.agent(parent_agent) if is_valid_id(parent_agent) else None
    if known is not None:
        raise AgentRefused(f"parent_agent: {parent_agent!r} is not running")
    check_top_level(spec, parent_agent)
    return service.rt.root, None
