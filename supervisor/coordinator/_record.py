"""The journal's record of the runtime: lifecycle events into agent rows, and the
detail of an agent (its row merged with the live tree).

Issue 10 adds two things here: ``given_up`` (an ``escalated`` event of a top-level
agent's own supervisor, item 1) and the reason of a clean stop (item 6).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from actors import ProcessHandle, process_start_time
from supervisor import ChildState
from supervisor.protocol import DeploymentRequest, DeploymentResponse

from ._confinement import confinement_summary
from ._placed import node_fields
from ._ray import RemoteHandle
from ._replies import not_found, reply
from ._states import AgentState
from ._tracing import trace_fields

if TYPE_CHECKING:
    from ._service import AgentService


def agent_detail(
    service: AgentService, agent_id: str, *, with_spec: bool = False
) -> dict[str, Any] | None:
    """Everything known of *agent_id*: the journal's record merged with the live tree."""
    row = service.journal.agent(agent_id)
    if row is None:
        return None
    detail: dict[str, Any] = {
        "agent_id": agent_id,
        "name": row["spec"].get("name"),
        "level": row["level"],
        "parent_id": row["parent_id"],
        "state": row["state"],
        "pid": row["pid"],
        "exit_code": row["exit_code"],
        "signal": row["signal"],
        "outcome": row["outcome"],
        "reason": row["reason"],
        "restarts": row["restarts"],
        "incarnation": row["incarnation"],
        "started_at": row["started_at"],
        "ended_at": row["ended_at"],
        "log": row["log"],
        "restart": row["restart"],
        "timeout_seconds": row["spec"].get("timeout_seconds"),
        # Every child ever recorded (indexed query); live children replace it below.
        "children": service.journal.children_of(agent_id),
    }
    if with_spec:  # a status reply shows it; a list of a thousand agents does not
        detail["spec"] = row["spec"]
    detail.update(trace_fields(row, service.settings.trace_url))  # its trace, and a link
    if agent_id in service.rt:
        info = service.rt.info(agent_id)
        detail["path"] = info.path
        handle = service.rt.whereis(agent_id)
        running = info.state is ChildState.RUNNING
        if info.state is ChildState.STOPPED and info.restart_pending:
            # Ended, but not for good: it may run again (a restart waits out its backoff).
            detail["restarting"] = True
        if running and isinstance(handle, ProcessHandle | RemoteHandle):
            detail["state"] = AgentState.RUNNING
            detail["pid"] = handle.pid
            detail["uptime"] = round(time.time() - handle.started_at, 3)
        if running and isinstance(handle, ProcessHandle):
            detail.update(service.usage.of(agent_id, handle))
            cgroup = handle.tree.cgroup  # how a stop will end it (issue 15)
            detail["stops"] = f"cgroup2 {cgroup.path}" if cgroup else "process group + sweep"
            detail["confinement"] = confinement_summary(handle.tree.confinement)
            if handle.supervisor is not None:  # a running agent: its live children
                detail["children"] = [c.id for c in handle.supervisor.which_children()]
        elif running and isinstance(handle, RemoteHandle):
            detail["host_pid"] = handle.host_pid
    detail.update(node_fields(service, agent_id))
    return detail


def on_event(service: AgentService, event: str, fields: dict[str, Any]) -> None:
    """Keep the journal's agent rows in step with the runtime's events."""
    agent_id = fields.get("agent_id")
    if event == "escalated" and service._wrappers.get(agent_id or "") == fields.get("child_id"):
        _gave_up(service, fields)
        return
    if agent_id is None or fields.get("kind") != "worker":
        return
    if event == "spawned":
        pid = fields["pid"]
        service.journal.update_agent(
            agent_id,
            pid=pid,
            # A pid on another node says nothing of this host's processes (issue 14).
            pid_start=None if "node" in fields else process_start_time(pid),
            log=fields.get("log"),
            incarnation=fields.get("incarnation", 0),
        )
    elif event == "started":
        service.journal.update_agent(
            agent_id,
            state=AgentState.RUNNING,
            started_at=time.time(),
            ended_at=None,
            exit_code=None,
            signal=None,
            outcome=None,
            reason=None,
        )
    elif event in ("process_exited", "process_stopped"):
        service.journal.update_agent(
            agent_id, exit_code=fields.get("exit_code"), signal=fields.get("signal")
        )
    elif event in ("exited", "terminated", "timed_out"):
        outcome = fields.get("outcome", "error")
        reason = fields.get("reason")
        if service._closing and event == "terminated":
            reason = "coordinator shutdown"  # issue 10, item 6: not a crash
        service.journal.update_agent(
            agent_id,
            state=AgentState.ended(outcome),
            outcome=outcome,
            reason=reason,
            ended_at=time.time(),
        )
    elif event == "restarted":
        service.journal.update_agent(agent_id, restarts=fields.get("restarts", 0))


def _gave_up(service: AgentService, fields: dict[str, Any]) -> None:
    """A top-level agent restarted past its own intensity: record it, say so."""
    agent_id = fields["child_id"]
    row = service.journal.agent(agent_id) or {}
    reason = (
        f"restarted more than {fields.get('max_restarts')} times in"
        f" {fields.get('max_seconds')} s; last exit: {fields.get('reason') or 'unknown'}"
    )
    service.journal.update_agent(
        agent_id, state=AgentState.GIVEN_UP, reason=reason, ended_at=time.time()
    )
    service.rt.events.emit(
        "gave_up",
        agent_id=agent_id,
        reason=reason,
        exit_code=row.get("exit_code"),
        signal=row.get("signal"),
        restarts=row.get("restarts"),
    )


def status_reply(service: AgentService, request: DeploymentRequest) -> DeploymentResponse:
    agent_id = request.target_agent_id
    assert agent_id is not None
    detail = agent_detail(service, agent_id, with_spec=True)
    if detail is None:
        return not_found(request, agent_id)
    state = AgentState(detail["state"])
    return reply(
        request,
        state.status,
        agent_id,
        f"Agent is {state}",
        pid=detail.get("pid"),
        output_log=detail.get("log"),
        agent=detail,
    )


def list_reply(service: AgentService, request: DeploymentRequest) -> DeploymentResponse:
    agents = [d for row in service.journal.agents() if (d := service.agent_detail(row["agent_id"]))]
    return reply(
        request,
        "completed",
        "all",
        f"{len(agents)} agents",
        agents=agents,
        agent={"tree": service.rt.tree()},
    )
