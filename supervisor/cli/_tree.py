"""``ziggie apply`` / ``ziggie diff``: a declared tree of agents, and only what changed.

Like supervisord's ``update`` or a pm2 ecosystem file: the file is the desired state. The
plan compares it with what runs now and with what the last ``apply`` of this home
declared (``<home>/applied-tree.json``, written after each apply):

- ``add``: declared and not running (new, or ended);
- ``change``: running, and its spec or parent differs from what was applied: stopped
  (subtree first) and deployed again with the new spec;
- ``restart``: unchanged itself, but under a parent that is redeployed (the parent's stop
  took it down);
- ``remove``: applied before, no longer declared, still running: terminated;
- ``keep``: running as declared (or running and never applied: left alone).

Only agents this file declared are ever removed: agents deployed otherwise are not ours.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.client import AgentDeploymentClient
from supervisor.protocol import DeploymentResponse, write_atomic

from ._output import LIVE
from ._specs import Declared

STATE_NAME = "applied-tree.json"
#: ``parent_agent`` of a top-level agent deployed by ``apply``.
APPLY_PARENT = "apply"


@dataclass(frozen=True)
class Step:
    action: str  #: add | change | restart | remove | keep
    agent_id: str
    why: str = ""
    declared: Declared | None = None


def read_state(home: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((home / STATE_NAME).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data


def write_state(home: Path, declared: list[Declared]) -> None:
    state = {
        d.spec.id: {"spec": d.spec.model_dump(mode="json"), "parent": d.parent} for d in declared
    }
    write_atomic(home / STATE_NAME, json.dumps(state, indent=2))


def _changed_fields(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def plan(
    declared: list[Declared], applied: dict[str, Any], live: dict[str, dict[str, Any]]
) -> list[Step]:
    """The steps that bring *live* to *declared*: removals, then parents before children."""
    steps: list[Step] = []
    wanted = {d.spec.id for d in declared}
    for agent_id in applied:
        if agent_id not in wanted and live.get(agent_id, {}).get("state") in LIVE:
            steps.append(Step("remove", agent_id, "no longer declared"))
    redeployed: set[str] = set()
    for d in declared:
        agent_id = d.spec.id
        running = live.get(agent_id, {}).get("state") in LIVE
        before = applied.get(agent_id)
        new_spec = d.spec.model_dump(mode="json")
        if not running:
            state = live.get(agent_id, {}).get("state")
            step = Step("add", agent_id, f"was {state}" if state else "new", d)
        elif d.parent is not None and d.parent in redeployed:
            step = Step("restart", agent_id, f"its parent {d.parent!r} is redeployed", d)
        elif before is not None and (before["spec"] != new_spec or before["parent"] != d.parent):
            fields = _changed_fields(before["spec"], new_spec)
            if before["parent"] != d.parent:
                fields.append("parent")
            step = Step("change", agent_id, ", ".join(fields), d)
        else:
            why = "" if before is not None else "running, not applied before: left as is"
            step = Step("keep", agent_id, why, d)
        if step.action in ("add", "change", "restart"):
            redeployed.add(agent_id)
        steps.append(step)
    return steps


async def execute(
    client: AgentDeploymentClient,
    steps: list[Step],
    timeout: float,  # noqa: ASYNC109 - handed on as each client call's timeout
) -> list[tuple[Step, DeploymentResponse | None]]:
    """Carry out *steps*: stops first (a parent's stop takes its subtree), then deploys in
    declaration order, so every parent runs before its children are deployed."""
    done: list[tuple[Step, DeploymentResponse | None]] = []
    for step in steps:
        if step.action in ("remove", "change", "restart"):
            answer = await client.terminate_agent(step.agent_id, timeout=timeout)
            if step.action == "remove":
                done.append((step, answer))
    for step in steps:
        if step.action in ("add", "change", "restart"):
            assert step.declared is not None
            parent = step.declared.parent or APPLY_PARENT
            answer = await client.deploy_agent(step.declared.spec, parent, timeout=timeout)
            done.append((step, answer))
        elif step.action == "keep":
            done.append((step, None))
    return done
