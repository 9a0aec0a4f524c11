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

from supervisor import ChildSpec, Restart, Shutdown
from supervisor.protocol import AgentSpec, RayPlacement

from ._agents import AgentRefused
from ._ray import PlacementRefused, RemoteHandle, placed_spec

if TYPE_CHECKING:
    from ._service import AgentService


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
        (str(service.home.root), service.token, s.default_runner, s.log_max_bytes, s.ray_lease),
        parent_id=parent_id,
        env=env,
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


def remaining(service: AgentService, agent_id: str, spec: AgentSpec) -> float | None:
    """Seconds left of *agent_id*'s deadline, from its recorded start."""
    row = service.journal.agent(agent_id)
    started = row.get("started_at") if row else None
    return None if started is None else started + spec.timeout_seconds - time.time()


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


def node_fields(service: AgentService, agent_id: str) -> dict[str, Any]:
    """Where a placed or remote agent runs (empty for a local one)."""
    host = host_of(service, agent_id)
    if host is None:
        return {}
    return {"node": host.node, "node_id": host.node_id, "host": host.agent_id}
