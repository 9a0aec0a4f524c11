"""The coordinator service: deploy, status, terminate, restart, list over a runtime.

The file queue and the HTTP API hand it wire requests and write out its answers; none
holds agent logic. It owns the journal, so a request id seen before, by any transport,
gets the recorded answer and is never executed twice.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio

from actors import ProcessHandle, new_token, token
from supervisor import (
    ChildSpec,
    ChildState,
    Restart,
    Runtime,
    StartError,
    Supervisor,
    SupervisorError,
    ZiggieError,
    describe,
)
from supervisor.protocol import AgentSpec, DeploymentRequest, DeploymentResponse, RayPlacement

from . import _nesting, _placed, _record
from ._agents import AgentHome, agent_child_spec, contained_spec, drop_stopped
from ._callers import Caller, Forbidden, attributed, authorize, fingerprint
from ._confinement import confinement_summary
from ._defaults import inherit_from_parent
from ._housekeeping import prune_request
from ._journal import Journal, recorded_spec
from ._once import Answer, answered, prior_answer, received, refused
from ._ray import RayEngine, RemoteHandle
from ._replies import AgentRefused, cause, not_found, reply, unknown_action, wrapper_id
from ._runners import Runner, default_runners
from ._settings import Settings
from ._states import AgentState
from ._tracing import Tracing
from ._usage import UsageCache

#: Actions that change something: recorded before they act, so a crash is found later.
_MUTATING = frozenset({"deploy_agent", "terminate_agent", "restart_agent"})


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
        self.journal = Journal(self.home.root / "journal.sqlite3", durability=settings.durability)
        #: The home's runtime token (issue 10, item 4); *fresh* when this home had none, so
        #: a predecessor's agents (if any) are recognised by pid and start time alone.
        self.token, self.fresh_token = self.journal.runtime_token(lambda: new_token(token()))
        self.runners = dict(runners) if runners is not None else default_runners()
        self._deploys = anyio.CapacityLimiter(settings.concurrency)
        #: Transports add environment for each deployed agent (the API: its URL and token).
        self.agent_env: list[Callable[[AgentSpec], Mapping[str, str]]] = []
        self.usage = UsageCache(runtime)
        #: Ids being deployed right now: a second deploy of one is refused at once
        #: (issue 10, item 3), before it can touch the journal row or definition file.
        self._placing: set[str] = set()
        #: Each top-level agent's own supervisor (issue 10, item 1): wrapper id -> agent.
        self._wrappers: dict[str, str] = {}
        self._closing = False
        #: The Ray cluster placed agents go to (issue 14; set by the coordinator), and the
        #: latest host of each placed agent.
        self.ray: RayEngine | None = None
        self.hosts: dict[str, RemoteHandle] = {}
        self.tracing: Tracing | None = None  #: spans, set by the coordinator; None: off
        #: How the previous coordinator of this home ended (issue 10, items 6 and 12).
        self.previous_run = self.journal.begin_run()
        #: Set once recovery is done; requests wait for it (none races a recovering id).
        self.recovered: anyio.Event | None = None

    def close(self) -> None:
        self.journal.close()

    async def shutdown(self) -> None:
        """Stop every agent of this coordinator, recording each as stopped by the
        coordinator's shutdown, while the journal is still open (issue 10, item 6).

        A clean stop then reads as one in the journal: the next coordinator finds no
        agent it believed alive, and restarts none.
        """
        self._closing = True
        live = [w for w in self._wrappers if w in self.rt]
        async with anyio.create_task_group() as tg:
            for wrapper in reversed(live):
                tg.start_soon(self._terminate_quietly, wrapper)
        self.journal.end_run()

    async def _terminate_quietly(self, child_id: str) -> None:
        with contextlib.suppress(ZiggieError):  # ended on its own meanwhile
            await self.rt.terminate(child_id)

    # -- one request, exactly once ---------------------------------------------------

    async def handle(self, request: DeploymentRequest, caller: Caller) -> Answer:
        """Answer *request* from *caller* (where it arrived: see ``_callers``), recording
        the answer before any transport shows it, exactly once per caller (``_once``)."""
        if self.recovered is not None and not self.recovered.is_set():
            await self.recovered.wait()
        digest = fingerprint(request)
        earlier = prior_answer(self.journal, self.rt.events, request, caller, digest)
        if earlier is not None:
            return earlier
        received(self.rt.events, request, caller)
        request = attributed(caller, request)
        try:
            self.authorize(caller, request)
        except Forbidden as exc:
            return refused(self.journal, request, caller, digest, str(exc))
        mutating = request.action in _MUTATING
        if mutating:  # recorded before it acts: a crash mid-deploy is found on restart
            self.journal.record_request(
                request.request_id, request.action, caller=caller, fingerprint=digest
            )
        response = await self.execute(request)
        if not mutating:
            return answered(self.journal, request, caller, digest, response)
        body = response.model_dump_json(indent=2)
        self.journal.record_response(request.request_id, body)
        # Issue 10, item 12: a change is durable before its answer appears (one fsync for
        # every answer of this wake-up: group commit).
        await self.journal.sync()
        return Answer(body, response)

    def authorize(self, caller: Caller, request: DeploymentRequest) -> None:
        """Raise :class:`Forbidden` unless *caller* may make *request* (see ``_callers``)."""
        authorize(caller, request, parent_of=self.journal.parent_of, live=self.live)

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
            if request.action == "list_agents":
                return self.list(request)
            if request.action == "prune":  # housekeeping on demand (``ziggie prune``)
                return await prune_request(self.settings, request)
        except Exception as exc:  # a bug must still produce an answer, and be logged
            self.rt.events.emit("request_crashed", request_id=request.request_id, error=repr(exc))
            return reply(
                request, "failed", "unknown", "Internal error", error=describe(exc), code="internal"
            )
        return unknown_action(request)

    # -- actions ---------------------------------------------------------------------

    async def deploy(self, request: DeploymentRequest) -> DeploymentResponse:
        spec = request.agent_spec
        assert spec is not None
        spec = inherit_from_parent(self.rt, self.journal, spec, request.parent_agent)
        if self._taken(spec.id):
            return reply(
                request,
                "failed",
                spec.id,
                "Deployment refused",
                error=f"id: agent {spec.id!r} already exists",
                code="conflict",
            )
        self._placing.add(spec.id)
        try:
            try:
                supervisor, child = self._prepare(spec, request.parent_agent, request.request_id)
            except (AgentRefused, ValueError) as exc:
                return _nesting.refused(request, spec.id, exc)
            try:
                if isinstance(supervisor, RemoteHandle):  # a child of a placed agent
                    return await _placed.deploy_request(self, request, supervisor, spec)
                assert child is not None
                handle = await self._start(supervisor, child, spec)
            except (StartError, SupervisorError) as exc:
                self.journal.update_agent(spec.id, state=AgentState.FAILED, reason=cause(exc))
                return reply(
                    request,
                    "failed",
                    spec.id,
                    "Deployment failed",
                    error=cause(exc),
                    code="start_failed",
                )
        finally:
            self._placing.discard(spec.id)
        return reply(
            request,
            "deployed",
            spec.id,
            f"Agent {spec.name} deployed successfully",
            pid=handle.pid,
            output_log=str(handle.log_path),
            # What the kernel holds it to, and which patterns were widened to what.
            agent={"confinement": confinement_summary(handle.tree.confinement)}
            if isinstance(handle, ProcessHandle)
            else None,
        )

    def status(self, request: DeploymentRequest) -> DeploymentResponse:
        return _record.status_reply(self, request)

    async def terminate(self, request: DeploymentRequest) -> DeploymentResponse:
        agent_id = request.target_agent_id
        assert agent_id is not None
        wrapper = wrapper_id(agent_id)
        ours = self._wrappers.get(wrapper) == agent_id and wrapper in self.rt
        host = _placed.hosted_in(self, agent_id)
        if host is not None:  # it runs in a placed agent's host
            return await _placed.terminate_request(self, request, host, agent_id)
        # An agent waiting out its restart backoff is not running, yet still supervised:
        # terminating it ends its own supervisor, so it is not started again (item 1).
        if not ours and (
            agent_id not in self.rt or self.rt.info(agent_id).state is ChildState.STOPPED
        ):
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
        # A top-level agent goes with its own supervisor (item 1), or that would linger.
        await self.rt.terminate(wrapper if ours else agent_id)
        if handle is None:  # it was between incarnations: no event records the stop
            self.journal.update_agent(
                agent_id,
                state=AgentState.TERMINATED,
                outcome="shutdown",
                reason="terminated while waiting to be restarted",
                ended_at=time.time(),
            )
        stop = handle.last_stop if isinstance(handle, ProcessHandle) else None
        remote = handle.last_stop if isinstance(handle, RemoteHandle) else None
        return reply(
            request,
            "terminated",
            agent_id,
            "Agent terminated successfully",
            pid=handle.pid if isinstance(handle, ProcessHandle | RemoteHandle) else None,
            agent={
                "state": AgentState.TERMINATED,
                "killed": stop.killed if stop else (remote or {}).get("killed", []),
                "stop_seconds": round(stop.seconds, 4) if stop else (remote or {}).get("seconds"),
                **_placed.node_fields(self, agent_id),
            },
        )

    async def restart(self, request: DeploymentRequest) -> DeploymentResponse:
        agent_id = request.target_agent_id
        assert agent_id is not None
        try:
            host = _placed.hosted_in(self, agent_id)
            if host is not None:
                return await _placed.restart_request(request, host, agent_id)
            if agent_id in self.rt:
                handle = await self.rt.restart(agent_id)
            elif agent_id in self._placing:
                raise AgentRefused(f"id: agent {agent_id!r} is being deployed")
            else:
                handle = await self.redeploy(agent_id)
        except (ZiggieError, ValueError) as exc:
            return reply(
                request,
                "failed",
                agent_id,
                "Restart failed",
                error=cause(exc),
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
        return _record.list_reply(self, request)

    async def redeploy(self, agent_id: str) -> ProcessHandle | RemoteHandle | None:
        """Start a known but no longer supervised agent again, under its parent."""
        row = self.journal.agent(agent_id)
        if row is None:
            return None
        spec = recorded_spec(row)
        self._placing.add(agent_id)
        try:
            supervisor, child = self._prepare(spec, row["parent_id"] or "Ziggie", row["request_id"])
            if isinstance(supervisor, RemoteHandle) or child is None:
                raise AgentRefused(f"{agent_id!r} runs in a placed agent: restart that agent")
            handle: ProcessHandle | RemoteHandle = await self._start(supervisor, child, spec)
            return handle
        finally:
            self._placing.discard(agent_id)

    # -- placement -------------------------------------------------------------------

    def live(self, agent_id: str) -> bool:  # here, or in the host of a placed agent
        return _placed.live(self, agent_id)

    def _taken(self, agent_id: str) -> bool:
        """Running, starting, or being deployed: a stopped agent's id is free (see
        :func:`drop_stopped`)."""
        taken = agent_id in self._placing or wrapper_id(agent_id) in self.rt
        return taken or self.live(agent_id)

    async def _start(self, supervisor: Supervisor, child: ChildSpec, spec: AgentSpec) -> Any:
        """Start *child* under *supervisor*; a top-level agent inside its own supervisor.

        Issue 10, item 1: the wrapper is a *temporary* child of the root, so the root
        never restarts it and never counts its exit: an agent restarted past its own
        intensity fails only its wrapper (``escalated``, recorded as ``given_up``).
        """
        await drop_stopped(self.rt, spec.id)  # a stopped agent of this id: replaced
        if supervisor is not self.rt.root:
            return await supervisor.start_child(child)
        wrapper = contained_spec(child, spec, self.settings)
        self._wrappers[wrapper_id(spec.id)] = spec.id
        await supervisor.start_child(wrapper)
        return self.rt.whereis(spec.id)

    def agent_env_of(self, spec: AgentSpec) -> dict[str, str]:
        return {k: v for provide in self.agent_env for k, v in provide(spec).items()}

    def _prepare(
        self, spec: AgentSpec, parent_agent: str, request_id: str | None
    ) -> tuple[Supervisor | RemoteHandle, ChildSpec | None]:
        """Check *spec* under its parent, write its definition, record it in the journal
        (the child spec is None under a placed agent: its host builds and checks it)."""
        supervisor, parent_id = _nesting.placement(self, parent_agent, spec)
        child: ChildSpec | None = None
        if isinstance(supervisor, RemoteHandle):
            pass  # its host builds and checks the child spec
        elif isinstance(spec.placement, RayPlacement):
            child = _placed.placed_child(self, spec, parent_id, self.agent_env_of(spec))
        else:
            child = agent_child_spec(
                spec,
                self.home,
                self.runners,
                parent_id=parent_id,
                settings=self.settings,
                extra_env=self.agent_env_of(spec),
                token=self.token,
                environment=self.tracing.environment if self.tracing else None,
            )
        self.journal.add_agent(
            spec.id,
            spec.model_dump_json(),
            parent_id=parent_id,
            level=spec.level,
            request_id=request_id,
            restart=str(child.restart if child else spec.restart or Restart.TEMPORARY),
        )
        return supervisor, child

    # -- views and the journal's record (see ._record) --------------------------------

    def agent_detail(self, agent_id: str) -> dict[str, Any] | None:
        """Everything known of *agent_id*: the journal's record merged with the live tree."""
        return _record.agent_detail(self, agent_id)

    def on_event(self, event: str, fields: dict[str, Any]) -> None:
        """Keep the journal's agent rows in step with the runtime's events."""
        _record.on_event(self, event, fields)
