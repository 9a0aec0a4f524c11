"""Nesting defaults: what a deploy under a parent gets when its spec leaves a field out.

Kept out of the service's placement rules (``_nesting`` refuses, this fills in): a child
whose request omits ``timeout_seconds`` gets its parent's remaining time (issue 11)
instead of the seed's 300 s default, which a parent with less time left would refuse.
An omitted field is one absent from the request's JSON (pydantic's ``model_fields_set``);
the seed's client always sends one, so the seed's behaviour is unchanged.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from supervisor import Runtime
from supervisor.protocol import AgentSpec, Limits

from ._journal import Journal


def inherit_from_parent(
    rt: Runtime, journal: Journal, spec: AgentSpec, parent_agent: str
) -> AgentSpec:
    """*spec*, with what it left out taken from its parent: a deadline at the parent's
    remaining time, and the parent's caps (``limits`` per controller, ``max_children``),
    which a child may narrow but never lift by omission."""
    row = journal.agent(parent_agent)
    if row is None:
        return spec
    parent = AgentSpec.model_validate(row["spec"])
    update: dict[str, Any] = {}
    if "timeout_seconds" not in spec.model_fields_set:
        remaining = remaining_time(rt, parent_agent, row)
        if remaining is not None:
            update["timeout_seconds"] = max(1, math.floor(remaining))
    if parent.max_children is not None and spec.max_children is None:
        update["max_children"] = parent.max_children
    if parent.limits is not None:
        mine = spec.limits.model_dump(exclude_none=True) if spec.limits else {}
        theirs = parent.limits.model_dump(exclude_none=True)
        if set(theirs) - set(mine):
            update["limits"] = Limits.model_validate({**theirs, **mine})
    return spec.model_copy(update=update) if update else spec


def remaining_time(rt: Runtime, agent_id: str, row: Mapping[str, Any]) -> float | None:
    """Seconds left of *agent_id*'s deadline (None: it is not running).

    Counted from its handle's start (a local or a placed agent); an agent inside a placed
    one's host (issue 14) has only its journal row, kept by the events it sends home.
    """
    handle = rt.whereis(agent_id) if agent_id in rt else None
    started = getattr(handle, "started_at", None) if handle is not None else row["started_at"]
    if started is None or (handle is None and row["state"] != "running"):
        return None
    spec = AgentSpec.model_validate(row["spec"])
    return float(started + spec.timeout_seconds - time.time())
