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
A ``change`` or ``restart`` whose new version cannot be deployed gets its previous one
back (as applied before), so a bad edit never leaves an agent dead that ran before; the
applied record then keeps the previous version, and the next plan offers the change again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from supervisor.client import AgentDeploymentClient
from supervisor.protocol import AgentSpec, DeploymentResponse, write_atomic

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
    previous: dict[str, Any] | None = None  #: its entry in the applied record, if any


@dataclass(frozen=True)
class Done:
    """One step carried out: the coordinator's answers, and how the agent ended up."""

    step: Step
    answer: DeploymentResponse | None = None  #: the terminate (remove) or deploy answer
    restored: DeploymentResponse | None = None  #: the previous version, deployed again
    state: str | None = None  #: the agent's state once the apply is over (None: unknown)

    @property
    def failed(self) -> bool:
        """The step did not do what the file asks (an agent already gone is removed)."""
        answer = self.answer
        if answer is None or answer.status != "failed":
            return False
        return self.step.action != "remove" or answer.code not in ("not_running", "not_found")


def read_state(home: Path) -> dict[str, Any]:
    """The applied record: agent id -> ``{"spec": ..., "parent": ...}`` (empty if none)."""
    try:
        data = json.loads((home / STATE_NAME).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict)}


def _entry(declared: Declared) -> dict[str, Any]:
    # Only what the file set: a restored child asks for what it asked for then (a left-out
    # timeout_seconds is its parent's remaining time, not the seed's 300 s).
    return {
        "spec": declared.spec.model_dump(mode="json", exclude_unset=True),
        "parent": declared.parent,
    }


def write_state(home: Path, declared: list[Declared], done: list[Done]) -> None:
    """Record what now runs as applied: the declared entry of every step that did what the
    file asks, the previous entry of every one that did not (restored or not)."""
    failed = {d.step.agent_id: d.step.previous for d in done if d.failed}
    state: dict[str, Any] = {}
    for d in declared:
        agent_id = d.spec.id
        if agent_id not in failed:
            state[agent_id] = _entry(d)
        elif failed[agent_id] is not None:
            state[agent_id] = failed[agent_id]
    for agent_id, previous in failed.items():  # a removal that failed: tried again next time
        if agent_id not in state and previous is not None:
            state[agent_id] = previous
    write_atomic(home / STATE_NAME, json.dumps(state, indent=2))


def _full(entry: dict[str, Any]) -> dict[str, Any]:
    """Every field of a recorded spec (the record keeps only those the file set); empty
    for an unreadable record, from which whatever is declared differs."""
    spec = _recorded_spec(entry)
    return {} if spec is None else spec.model_dump(mode="json")


def _recorded_spec(entry: dict[str, Any] | None) -> AgentSpec | None:
    try:
        return None if entry is None else AgentSpec.model_validate(entry["spec"])
    except (ValidationError, KeyError, TypeError):
        return None  # an unreadable record: nothing to put back


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
            steps.append(Step("remove", agent_id, "no longer declared", previous=applied[agent_id]))
    redeployed: set[str] = set()
    for d in declared:
        agent_id = d.spec.id
        running = live.get(agent_id, {}).get("state") in LIVE
        before = applied.get(agent_id)
        new_spec = d.spec.model_dump(mode="json")
        old_spec = _full(before) if before is not None else {}
        if not running:
            state = live.get(agent_id, {}).get("state")
            step = Step("add", agent_id, f"was {state}" if state else "new", d)
        elif d.parent is not None and d.parent in redeployed:
            why = f"its parent {d.parent!r} is redeployed"
            step = Step("restart", agent_id, why, d, before)
        elif before is not None and (old_spec != new_spec or before.get("parent") != d.parent):
            fields = _changed_fields(old_spec, new_spec)
            if before.get("parent") != d.parent:
                fields.append("parent")
            step = Step("change", agent_id, ", ".join(fields), d, before)
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
) -> list[Done]:
    """Carry out *steps*, in their order: stops first (a parent's stop takes its subtree),
    then deploys in declaration order, so every parent runs before its children are
    deployed. A redeploy that fails puts the previous version back at once, before its
    children are deployed under it. Then how each agent ended up."""
    answers: dict[str, DeploymentResponse] = {}
    for step in steps:
        if step.action in ("remove", "change", "restart"):
            answer = await client.terminate_agent(step.agent_id, timeout=timeout)
            if step.action == "remove":
                answers[step.agent_id] = answer
    restored: dict[str, DeploymentResponse] = {}
    for step in steps:
        if step.action in ("add", "change", "restart"):
            assert step.declared is not None
            parent = step.declared.parent or APPLY_PARENT
            answer = await client.deploy_agent(step.declared.spec, parent, timeout=timeout)
            answers[step.agent_id] = answer
            previous = step.previous
            # A conflict means the id is taken (the old version did not stop): nothing to put back.
            lost = answer.status == "failed" and answer.code != "conflict"
            spec = _recorded_spec(previous) if lost and step.action != "add" else None
            if spec is not None and previous is not None:
                parent = previous.get("parent") or APPLY_PARENT
                restored[step.agent_id] = await client.deploy_agent(spec, parent, timeout=timeout)
    listed = await client.list_agents(timeout=timeout)
    states = {a["agent_id"]: a.get("state") for a in listed.agents or []}
    return [
        Done(s, answers.get(s.agent_id), restored.get(s.agent_id), states.get(s.agent_id))
        for s in steps
    ]
