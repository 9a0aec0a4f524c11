"""What a parent agent may deploy: one level down, no wider permissions, no later deadline;
and where the deploy goes (the parent's own supervisor, or the host that runs it).

Violations are refused with a message that names the field; nothing is silently "fixed".
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from actors import ProcessHandle
from supervisor import Supervisor, is_valid_id
from supervisor.protocol import AgentSpec, DeploymentRequest, DeploymentResponse, ErrorCode

from ._agents import check_deployable
from ._confinement import literal_root
from ._defaults import remaining_time
from ._globs import WORK_LIMIT, BadPattern, TooLarge, normalize, within
from ._placed import host_of
from ._programs import beneath, executables
from ._ray import RemoteHandle
from ._replies import AgentRefused, reply
from ._runners import resolve_argv

if TYPE_CHECKING:
    from ._service import AgentService

_NEXT = {"L1": "L2", "L2": "L3"}


class IdOwned(AgentRefused):
    """The id is known under another parent: answered ``conflict``, never re-parented."""


def refused(request: DeploymentRequest, agent_id: str, exc: Exception) -> DeploymentResponse:
    """A deploy refused: ``conflict`` for an id of another parent, ``refused`` for any
    other broken rule (the message names the field)."""
    code: ErrorCode = "conflict" if isinstance(exc, IdOwned) else "refused"
    return reply(request, "failed", agent_id, "Deployment refused", error=str(exc), code=code)


def check_owner(service: AgentService, agent_id: str, parent_id: str | None) -> None:
    """Refuse to move a known id (a journal row, running or finished) to another parent.

    An id's records (its spec and environment, its logs) are readable by its parent's
    subtree: adopting a finished agent's id would hand them to the new parent. A
    top-level deploy (the operator's) may reuse any finished id; an agent may reuse only
    an id that was already its own child's.
    """
    if parent_id is None:
        return
    row = service.journal.agent(agent_id)
    if row is None or row["parent_id"] == parent_id:
        return
    owner = f"{row['parent_id']!r}'s" if row["parent_id"] else "a top-level (the operator's)"
    raise IdOwned(
        f"id: {agent_id!r} is {owner} agent; a known id is never moved to another parent"
        " (choose another id)"
    )


def check_patterns(spec: AgentSpec) -> None:
    """Refuse permission patterns with a ``..`` segment."""
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


@dataclass(frozen=True, slots=True)
class Family:
    """What the rules compare beyond the two specs: both programs' executables (real
    paths, as :func:`executables` gives them), and the parent's time left."""

    parent_executables: frozenset[str]
    child_executables: frozenset[str]
    parent_remaining: float | None = None
    #: The parent's effective restart intensity (its spec's, else the coordinator's).
    parent_intensity: tuple[int, float] = (5, 60.0)


def check_child(parent: AgentSpec, child: AgentSpec, family: Family) -> None:
    """Refuse *child* under *parent* unless every rule holds: one level down, and never
    wider than its parent in anything that grants power."""
    expected = _NEXT.get(parent.level)
    if expected is None:
        raise AgentRefused(f"level: {parent.id!r} is {parent.level}; an L3 agent has no children")
    if child.level != expected:
        raise AgentRefused(
            f"level: a child of {parent.id!r} ({parent.level}) must be {expected},"
            f" not {child.level}"
        )
    check_patterns(child)
    _check_paths(parent, child)
    _check_executables(parent, family)
    _check_network(parent, child)
    _check_lists(parent, child, family)
    # Whole seconds, as the field: a child may ask for the parent's remaining time rounded
    # up. Its own deadline then lands at most a second after the parent's, and the parent's
    # timeout cascade stops it first: it never outlives its parent.
    left = family.parent_remaining
    if left is not None and child.timeout_seconds > math.ceil(left):
        raise AgentRefused(
            f"timeout_seconds: {child.timeout_seconds} exceeds the parent's remaining time"
            f" ({max(math.ceil(left), 0)} s)"
        )


def _check_paths(parent: AgentSpec, child: AgentSpec) -> None:
    """read/write by the paths the patterns match (write may come only from write), and
    by the directories the kernel will enforce them on (real paths: a symlink inside
    the parent's tree pointing elsewhere is not within)."""
    mine, theirs = child.context.permissions, parent.context.permissions
    cwd, pcwd = child.context.working_directory, parent.context.working_directory
    for field, sources in (("read", ("read", "write")), ("write", ("write",))):
        allowed = [_absolute(p, pcwd) for f in sources for p in getattr(theirs, f)]
        patterns = [_absolute(p, cwd) for p in getattr(mine, field)]
        work = sum(map(len, patterns)) * sum(map(len, allowed))
        if work > WORK_LIMIT:
            raise AgentRefused(
                f"context.permissions.{field}: too large to check against the parent's"
                f" ({work} character pairs; the limit is {WORK_LIMIT})"
            )
        roots = [os.path.realpath(literal_root(p, pcwd)[0]) for p in allowed]
        for pattern in patterns:
            root = os.path.realpath(literal_root(pattern, cwd)[0])
            if not _covered(pattern, allowed) or not any(beneath(root, r) for r in roots):
                raise AgentRefused(
                    f"context.permissions.{field}: {pattern!r} is not within the parent's"
                    f" {[p for f in sources for p in getattr(theirs, f)]}"
                )
    wd = os.path.realpath(cwd)
    readable = [os.path.realpath(pcwd)] + [
        os.path.realpath(literal_root(p, pcwd)[0])
        for f in ("read", "write")
        for p in getattr(theirs, f)
    ]
    if not any(beneath(wd, r) for r in readable):
        raise AgentRefused(
            f"context.working_directory: {cwd!r} is outside the parent's working directory"
            " and permissions"
        )


def _check_executables(parent: AgentSpec, family: Family) -> None:
    extra = sorted(family.child_executables - family.parent_executables)
    if extra:
        raise AgentRefused(
            f"context.permissions.execute: {extra} not executable by the parent {parent.id!r}"
        )


def _check_network(parent: AgentSpec, child: AgentSpec) -> None:
    theirs, mine = parent.context.permissions.network, child.context.permissions.network
    if theirs is None:
        return  # an unrestricted parent may hand out any network
    if mine is None:
        raise AgentRefused(
            "context.permissions.network: an unrestricted network is wider than the"
            f" parent's (connect {theirs.connect}, bind {theirs.bind})"
        )
    for field in ("connect", "bind"):
        extra = sorted(set(getattr(mine, field)) - set(getattr(theirs, field)))
        if extra:
            raise AgentRefused(
                f"context.permissions.network.{field}: {extra} not within the parent's"
                f" {getattr(theirs, field)}"
            )


def _check_lists(parent: AgentSpec, child: AgentSpec, family: Family) -> None:
    extra = [t for t in child.tools if t not in parent.tools]
    if extra:
        raise AgentRefused(f"tools: {extra} not within the parent's {parent.tools}")
    if parent.max_children is not None and (
        child.max_children is None or child.max_children > parent.max_children
    ):
        raise AgentRefused(
            f"max_children: {child.max_children} exceeds the parent's {parent.max_children}"
        )
    if parent.limits is not None:
        for name, cap in parent.limits.model_dump(exclude_none=True).items():
            value = getattr(child.limits, name, None) if child.limits else None
            if value is None or value > cap:
                raise AgentRefused(f"limits.{name}: {value} exceeds the parent's {cap}")
    restarts, seconds = family.parent_intensity
    if child.max_restarts is not None and child.max_restarts > restarts:
        raise AgentRefused(f"max_restarts: {child.max_restarts} exceeds the parent's {restarts}")
    if (
        child.max_seconds is not None
        and child.max_restarts is not None
        and (child.max_restarts * seconds > restarts * child.max_seconds)
    ):
        raise AgentRefused(
            f"max_seconds: {child.max_restarts} restarts in {child.max_seconds} s is more"
            f" often than the parent's {restarts} in {seconds} s"
        )


def _absolute(pattern: str, cwd: str) -> str:
    return pattern if pattern.startswith("/") else f"{cwd.rstrip('/')}/{pattern}"


def _covered(pattern: str, allowed: list[str]) -> bool:
    try:
        return within(pattern, allowed)
    except (BadPattern, TooLarge):
        return False  # a parent's own bad pattern grants nothing


def _family(
    service: AgentService, parent: AgentSpec, child: AgentSpec, left: float | None
) -> Family:
    s = service.settings
    return Family(
        parent_executables=_executables_of(service, parent),
        child_executables=_executables_of(service, child),
        parent_remaining=left,
        parent_intensity=(
            s.agent_max_restarts if parent.max_restarts is None else parent.max_restarts,
            s.agent_max_seconds if parent.max_seconds is None else parent.max_seconds,
        ),
    )


def _executables_of(service: AgentService, spec: AgentSpec) -> frozenset[str]:
    """Real paths of what *spec*'s agent may execute (its program included)."""
    definition = service.home.definitions / f"{spec.id}.md"
    runner_argv = resolve_argv(spec, definition, service.runners, service.settings.default_runner)
    return frozenset(real for _, real in executables(spec, check_deployable(spec, runner_argv)))


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
        check_child(parent, spec, _family(service, parent, spec, left))
        check_owner(service, spec.id, parent_agent)
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
