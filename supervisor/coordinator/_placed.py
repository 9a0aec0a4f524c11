"""Placed agents in the service (issue 14): the proxy of a placed agent, and what the
coordinator forwards to a host (deploys, terminates and restarts of the agents that
run there).

The journal stays the coordinator's: a remote child is recorded here, before the host
starts it, and kept current by the events its host's proxy brings back.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from supervisor import ChildSpec, ChildState, Restart, Shutdown
from supervisor.protocol import AgentSpec, DeploymentRequest, DeploymentResponse, RayPlacement

from ._ray import PlacementRefused, RemoteExit, RemoteHandle, placed_spec
from ._replies import AgentRefused, reply
from ._settings import Settings
from ._states import AgentState

if TYPE_CHECKING:
    from ._service import AgentService


def host_settings(settings: Settings) -> str:
    """What a host needs of the coordinator's settings to build its agents alike."""
    return settings.model_dump_json(
        include={
            "default_runner",
            "log_max_bytes",
            "limits_best_effort",
            "confinement",
            "agent_env",
        }
    )


def placed_child(
    service: AgentService, spec: AgentSpec, parent_id: str | None, env: Mapping[str, str]
) -> ChildSpec:
    """The proxy node of *spec*, placed as it asks; refused if it cannot be placed."""
    placement = spec.placement
    assert isinstance(placement, RayPlacement)
    engine = service.ray
    if engine is None or engine.ray is None:
        raise AgentRefused(
            "placement: this coordinator is not connected to a Ray cluster"
            " (serve --ray ADDRESS, or --ray local)"
        )
    try:
        options = engine.options(placement.resources, placement.node)
    except PlacementRefused as exc:
        raise AgentRefused(str(exc)) from None
    s = service.settings

    def on_start(handle: RemoteHandle) -> None:
        service.hosts[spec.id] = handle

    return placed_spec(
        spec.model_dump_json(),
        spec.id,
        engine,
        options,
        (str(service.home.root), service.token, host_settings(s), s.ray_lease),
        parent_id=parent_id,
        env=env,
        environment=service.tracing.environment if service.tracing else None,
        restart=Restart(spec.restart) if spec.restart else Restart.TEMPORARY,
        shutdown=Shutdown.parse(spec.shutdown),
        timeout=float(spec.timeout_seconds),
        start_timeout=s.ray_start_timeout,
        level=spec.level,
        meta={"name": spec.name},
        on_start=on_start,
    )


def host_of(service: AgentService, agent_id: str) -> RemoteHandle | None:
    """The live host running *agent_id* (the placed agent itself, or one below it)."""
    if agent_id in service.rt:
        live = service.rt.whereis(agent_id)
        return live if isinstance(live, RemoteHandle) else None
    host: RemoteHandle
    for host in service.hosts.values():
        live_host = host.agent_id in service.rt and service.rt.whereis(host.agent_id) is host
        if agent_id in host.remote and live_host:
            return host
    return None


def hosted_in(service: AgentService, agent_id: str) -> RemoteHandle | None:
    """The host *agent_id* runs inside, when it is a child there (not a placed agent)."""
    return None if agent_id in service.rt else host_of(service, agent_id)


async def deploy_remote(
    host: RemoteHandle, spec: AgentSpec, parent_id: str, env: Mapping[str, str]
) -> dict[str, Any]:
    """Start *spec* under *parent_id* in *host*'s runtime: its pid and log, or an error."""
    if isinstance(spec.placement, RayPlacement):
        return {
            "error": "placement: a child of a placed agent runs in its parent's host;"
            " its own placement is not supported",
            "code": "refused",
        }
    host.remote.add(spec.id)
    info: dict[str, Any] = await host.call("deploy", spec.model_dump_json(), parent_id, dict(env))
    if "error" in info:
        host.remote.discard(spec.id)
    return info


def live(service: AgentService, agent_id: str) -> bool:
    if agent_id in service.rt:
        return service.rt.info(agent_id).state is not ChildState.STOPPED
    row = service.journal.agent(agent_id) if hosted_in(service, agent_id) else None
    return row is not None and row["state"] == AgentState.RUNNING


def node_fields(service: AgentService, agent_id: str) -> dict[str, Any]:
    """Where a placed or remote agent runs (empty for a local one)."""
    host = host_of(service, agent_id)
    if host is None:
        return {}
    return {"node": host.node, "node_id": host.node_id, "host": host.agent_id}


async def deploy_request(
    service: AgentService, request: DeploymentRequest, host: RemoteHandle, spec: AgentSpec
) -> DeploymentResponse:
    """Deploy *spec* under its parent, which runs in *host*: the service's answer."""
    try:
        info = await deploy_remote(host, spec, request.parent_agent, service.agent_env_of(spec))
    except RemoteExit as exc:
        host.remote.discard(spec.id)
        info = {"error": str(exc), "code": "start_failed"}
    if "error" in info:
        service.journal.update_agent(spec.id, state=AgentState.FAILED, reason=info["error"])
        title = "Deployment refused" if info["code"] == "refused" else "Deployment failed"
        return reply(request, "failed", spec.id, title, error=info["error"], code=info["code"])
    # Running from now on, for its own deploys too: its events come home only later
    # (unless they came already, and said it has ended meanwhile).
    row = service.journal.agent(spec.id)
    if row is not None and AgentState(row["state"]).live:
        service.journal.update_agent(
            spec.id, state=AgentState.RUNNING, pid=info["pid"], started_at=info["started_at"]
        )
    return reply(
        request,
        "deployed",
        spec.id,
        f"Agent {spec.name} deployed successfully on {host.node}",
        pid=info["pid"],
        output_log=info.get("log"),
        agent={"node": host.node, "host": host.agent_id},
    )


async def terminate_request(
    service: AgentService, request: DeploymentRequest, host: RemoteHandle, agent_id: str
) -> DeploymentResponse:
    """Stop *agent_id*, which runs in *host*, its children first, verified empty there."""
    try:
        result = await host.call("stop", agent_id)
    except RemoteExit as exc:  # its host died: so did it, with every process
        result = {"error": str(exc)}
    if "error" in result:
        return reply(
            request,
            "failed",
            agent_id,
            "Agent is not running",
            error=result["error"],
            code="not_running",
        )
    service.journal.update_agent(
        agent_id, state=AgentState.TERMINATED, outcome="shutdown", ended_at=time.time()
    )
    return reply(
        request,
        "terminated",
        agent_id,
        "Agent terminated successfully",
        pid=result.get("pid"),
        agent={
            "state": AgentState.TERMINATED,
            "killed": result["killed"],
            "stop_seconds": result["seconds"],
            "node": host.node,
        },
    )


async def restart_request(
    request: DeploymentRequest, host: RemoteHandle, agent_id: str
) -> DeploymentResponse:
    info = await host.call("restart", agent_id)
    if "error" in info:
        raise AgentRefused(info["error"])
    return reply(
        request,
        "deployed",
        agent_id,
        "Agent restarted",
        pid=info["pid"],
        output_log=info.get("log"),
    )
