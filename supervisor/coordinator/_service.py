"""The coordinator service: deploy, status, terminate, restart, list over a runtime.

One service, many transports: the file queue and (later) the HTTP API hand it wire
requests and write out what it answers; none of them holds agent logic. The service owns
the journal, so exactly-once holds across transports: a request id seen before, by any of
them, gets the recorded answer and is never executed twice.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from actors import ProcessHandle, process_start_time
from supervisor import (
    ChildSpec,
    ChildState,
    Runtime,
    StartError,
    Supervisor,
    SupervisorError,
    ZiggieError,
    describe,
    is_valid_id,
)
from supervisor.protocol import AgentSpec, DeploymentRequest, DeploymentResponse, ErrorCode

from . import _nesting
from ._agents import AgentHome, AgentRefused, agent_child_spec
from ._defaults import inherit_from_parent
from ._housekeeping import prune_request
from ._journal import Journal
from ._runners import Runner, default_runners
from ._settings import Settings
from ._states import AgentState

#: Actions that change something: recorded before they act, so a crash is found later.
_MUTATING = frozenset({"deploy_agent", "terminate_agent", "restart_agent"})


@dataclass(frozen=True, slots=True)
class Answer:
    """What a transport writes back: the recorded JSON, and whether it was a re-send."""

    body: str
    response: DeploymentResponse | None  #: None for a duplicate (only its JSON is kept)
    duplicate: bool = False


class AgentService:
    """The agents of one coordinator home, run under *runtime*.

    Every method takes and returns the seed's wire models; refusals are ``failed``
    responses carrying a machine-readable ``code``, never exceptions.
    """

    def __init__(
        self,
        runtime: Runtime,
        settings: Settings,
        *,
        runners: Mapping[str, Runner] | None = None,
    ) -> None:
        self.rt = runtime
        self.settings = settings
        self.home = AgentHome.at(settings.home)
        self.journal = Journal(self.home.root / "journal.sqlite3")
        self.runners = dict(runners) if runners is not None else default_runners()
        self._deploys = anyio.CapacityLimiter(settings.concurrency)

    def close(self) -> None:
        self.journal.close()

    # -- one request, exactly once ---------------------------------------------------

    async def handle(self, request: DeploymentRequest) -> Answer:
        """Answer *request*, recording the answer before any transport shows it."""
        recorded = self.journal.response_for(request.request_id)
        if recorded is not None:  # seen before: the same answer again, never a re-run
            self.rt.events.emit("duplicate_request", request_id=request.request_id)
            return Answer(recorded, None, duplicate=True)
        mutating = request.action in _MUTATING
        if mutating:  # recorded before it acts: a crash mid-deploy is found on restart
            self.journal.record_request(request.request_id, request.action)
        self.rt.events.emit(
            "request_received",
            request_id=request.request_id,
            action=request.action,
            parent_agent=request.parent_agent,
            target_agent_id=request.target_agent_id
            or (request.agent_spec.id if request.agent_spec else None),
        )
        response = await self.execute(request)
        body = response.model_dump_json(indent=2)
        if mutating:
            self.journal.record_response(request.request_id, body)
        else:
            self.journal.record_answered(request.request_id, request.action, body)
        return Answer(body, response)

    async def execute(self, request: DeploymentRequest) -> DeploymentResponse:
        """Carry out *request* (no journal of the request itself: see :meth:`handle`)."""
        try:
            if request.action == "deploy_agent":
                async with self._deploys:
                    return await self.deploy(request)
            if request.action == "status_check":
                return self.status(request)
            if request.action == "terminate_agent":
                return await self.terminate(request)
            if request.action == "restart_agent":
                async with self._deploys:
                    return await self.restart(request)
            if request.action == "prune":  # housekeeping on demand (``ziggie prune``)
                return await prune_request(self.settings, request)
            return self.list(request)
        except Exception as exc:  # a bug must still produce an answer, and be logged
            self.rt.events.emit("request_crashed", request_id=request.request_id, error=repr(exc))
            return reply(
                request, "failed", "unknown", "Internal error", error=describe(exc), code="internal"
            )

    # -- actions ---------------------------------------------------------------------

    async def deploy(self, request: DeploymentRequest) -> DeploymentResponse:
        spec = request.agent_spec
        assert spec is not None
        spec = inherit_from_parent(self.rt, self.journal, spec, request.parent_agent)
        if spec.id in self.rt:
            return reply(
                request,
                "failed",
                spec.id,
                "Deployment refused",
                error=f"id: agent {spec.id!r} already exists",
                code="conflict",
            )
        try:
            supervisor, child = self._prepare(spec, request.parent_agent, request.request_id)
        except (AgentRefused, ValueError) as exc:
            return reply(
                request, "failed", spec.id, "Deployment refused", error=str(exc), code="refused"
            )
        try:
            handle: ProcessHandle = await supervisor.start_child(child)
        except (StartError, SupervisorError) as exc:
            self.journal.update_agent(spec.id, state=AgentState.FAILED, reason=describe(exc))
            return reply(
                request,
                "failed",
                spec.id,
                "Deployment failed",
                error=_cause(exc),
                code="start_failed",
            )
        return reply(
            request,
            "deployed",
            spec.id,
            f"Agent {spec.name} deployed successfully",
            pid=handle.pid,
            output_log=str(handle.log_path),
        )

    def status(self, request: DeploymentRequest) -> DeploymentResponse:
        agent_id = request.target_agent_id
        assert agent_id is not None
        detail = self.agent_detail(agent_id)
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

    async def terminate(self, request: DeploymentRequest) -> DeploymentResponse:
        agent_id = request.target_agent_id
        assert agent_id is not None
        if agent_id not in self.rt or self.rt.info(agent_id).state is ChildState.STOPPED:
            row = self.journal.agent(agent_id)
            if row is None:
                return not_found(request, agent_id)
            return reply(
                request,
                "failed",
                agent_id,
                f"Agent is not running ({row['state']})",
                error="Agent is not running",
                code="not_running",
            )
        handle = self.rt.whereis(agent_id)
        await self.rt.terminate(agent_id)
        stop = handle.last_stop if isinstance(handle, ProcessHandle) else None
        return reply(
            request,
            "terminated",
            agent_id,
            "Agent terminated successfully",
            pid=handle.pid if isinstance(handle, ProcessHandle) else None,
            agent={
                "state": AgentState.TERMINATED,
                "killed": stop.killed if stop else [],
                "stop_seconds": round(stop.seconds, 4) if stop else None,
            },
        )

    async def restart(self, request: DeploymentRequest) -> DeploymentResponse:
        agent_id = request.target_agent_id
        assert agent_id is not None
        try:
            if agent_id in self.rt:
                handle = await self.rt.restart(agent_id)
            else:
                handle = await self.redeploy(agent_id)
        except (ZiggieError, ValueError) as exc:
            return reply(
                request,
                "failed",
                agent_id,
                "Restart failed",
                error=_cause(exc),
                code="refused" if isinstance(exc, AgentRefused) else "start_failed",
            )
        if handle is None:
            return not_found(request, agent_id)
        return reply(
            request,
            "deployed",
            agent_id,
            "Agent restarted",
            pid=handle.pid,
            output_log=str(handle.log_path),
        )

    def list(self, request: DeploymentRequest) -> DeploymentResponse:
        agents = [d for row in self.journal.agents() if (d := self.agent_detail(row["agent_id"]))]
        return reply(
            request,
            "completed",
            "all",
            f"{len(agents)} agents",
            agents=agents,
            agent={"tree": self.rt.tree()},
        )

    async def redeploy(self, agent_id: str) -> ProcessHandle | None:
        """Start a known but no longer supervised agent again, under its parent."""
        row = self.journal.agent(agent_id)
        if row is None:
            return None
        spec = AgentSpec.model_validate(row["spec"])
        supervisor, child = self._prepare(spec, row["parent_id"] or "Ziggie", row["request_id"])
        handle: ProcessHandle = await supervisor.start_child(child)
        return handle

    # -- placement -------------------------------------------------------------------

    def _prepare(
        self, spec: AgentSpec, parent_agent: str, request_id: str | None
    ) -> tuple[Supervisor, ChildSpec]:
        """Check *spec* under its parent, write its definition, record it in the journal."""
        supervisor, parent_id = self._placement(parent_agent, spec)
        child = agent_child_spec(
            spec,
            self.home,
            self.runners,
            parent_id=parent_id,
            default_runner=self.settings.default_runner,
            log_max_bytes=self.settings.log_max_bytes,
        )
        self.journal.add_agent(
            spec.id,
            spec.model_dump_json(),
            parent_id=parent_id,
            level=spec.level,
            request_id=request_id,
            restart=str(child.restart),
        )
        return supervisor, child

    def _placement(self, parent_agent: str, spec: AgentSpec) -> tuple[Supervisor, str | None]:
        """The supervisor a deploy goes under, and its parent agent id (None: top level)."""
        parent_handle = self.rt.whereis(parent_agent) if parent_agent in self.rt else None
        if isinstance(parent_handle, ProcessHandle):
            parent_row = self.journal.agent(parent_agent)
            if parent_row is None:
                raise AgentRefused(f"parent_agent: {parent_agent!r} is not an agent of ours")
            parent_spec = AgentSpec.model_validate(parent_row["spec"])
            remaining = parent_handle.started_at + parent_spec.timeout_seconds - time.time()
            _nesting.check_child(parent_spec, spec, parent_remaining=remaining)
            if parent_handle.supervisor is None:
                raise AgentRefused(f"parent_agent: {parent_agent!r} cannot have children")
            return parent_handle.supervisor, parent_agent
        known = self.journal.agent(parent_agent) if is_valid_id(parent_agent) else None
        if known is not None:
            raise AgentRefused(f"parent_agent: {parent_agent!r} is not running")
        _nesting.check_top_level(spec, parent_agent)
        return self.rt.root, None

    # -- views -----------------------------------------------------------------------

    def agent_detail(self, agent_id: str) -> dict[str, Any] | None:
        """Everything known of *agent_id*: the journal's record merged with the live tree."""
        row = self.journal.agent(agent_id)
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
            # Every child ever recorded (indexed query); live children replace it below.
            "children": self.journal.children_of(agent_id),
        }
        if agent_id in self.rt:
            info = self.rt.info(agent_id)
            detail["path"] = info.path
            handle = self.rt.whereis(agent_id)
            if isinstance(handle, ProcessHandle) and info.state is ChildState.RUNNING:
                detail["state"] = AgentState.RUNNING
                detail["pid"] = handle.pid
                detail["uptime"] = round(time.time() - handle.started_at, 3)
                detail.update(handle.usage())
                if handle.supervisor is not None:  # a running agent: its live children
                    detail["children"] = [c.id for c in handle.supervisor.which_children()]
        return detail

    def tree(self) -> dict[str, Any]:
        """The live supervision tree (every node, agents and their supervisors)."""
        return self.rt.tree()

    # -- the journal's view of lifecycle events ----------------------------------------

    def on_event(self, event: str, fields: dict[str, Any]) -> None:
        """Keep the journal's agent rows in step with the runtime's events."""
        agent_id = fields.get("agent_id")
        if agent_id is None or fields.get("kind") != "worker":
            return
        if event == "spawned":
            pid = fields["pid"]
            self.journal.update_agent(
                agent_id,
                pid=pid,
                pid_start=process_start_time(pid),
                log=fields.get("log"),
                incarnation=fields.get("incarnation", 0),
            )
        elif event == "started":
            self.journal.update_agent(
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
            self.journal.update_agent(
                agent_id, exit_code=fields.get("exit_code"), signal=fields.get("signal")
            )
        elif event in ("exited", "terminated", "timed_out"):
            outcome = fields.get("outcome", "error")
            self.journal.update_agent(
                agent_id,
                state=AgentState.ended(outcome),
                outcome=outcome,
                reason=fields.get("reason"),
                ended_at=time.time(),
            )
        elif event == "restarted":
            self.journal.update_agent(agent_id, restarts=fields.get("restarts", 0))


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


def _cause(exc: BaseException) -> str:
    if isinstance(exc, StartError):
        return describe(exc.reason)
    return describe(exc)
