"""The near side of a placement: a supervised node whose body is a remote agent.

Supervision stays local: the proxy carries the agent's restart type, deadline and
shutdown, and its supervisor applies the agent's intensity, exactly as for a local
agent. Each incarnation gets a fresh host actor (Ray's own restarts are off), so a dead
actor or node is one abnormal exit, seen at once by the pending ``wait`` call. The
remote runtime's events are pumped back into the coordinator's, with the node.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from supervisor import ChildContext, ChildSpec, Restart, Shutdown, ZiggieError

from ._engine import RayEngine

#: A stop of the remote tree is bounded by its own grace; this covers the calls around it.
_STOP_MARGIN = 30.0
#: How long one long poll for remote events waits before asking again.
_POLL_SECONDS = 2.0


class RemoteExit(ZiggieError):
    """A placed agent ended abnormally, or its host actor (or node) died."""


@dataclass(slots=True)
class RemoteHandle:
    """What a running placed agent reports (its proxy's ``started()`` value)."""

    agent_id: str
    pid: int
    node: str  #: the node's address
    node_id: str
    host_pid: int  #: the Ray worker hosting the agent's runtime
    log_path: str | None
    started_at: float
    actor: Any = field(repr=False)
    engine: RayEngine = field(repr=False)
    #: Ids of the live agents in this host's runtime, under the placed agent.
    remote: set[str] = field(default_factory=set)
    last_stop: dict[str, Any] | None = None

    async def call(self, method: str, *args: Any) -> Any:
        """Call the host actor; its death is a :class:`RemoteExit`."""
        try:
            return await self.engine.call(getattr(self.actor, method).remote(*args))
        except _host_died(self.engine) as exc:
            raise RemoteExit(f"the host of {self.agent_id!r} on {self.node} died") from exc


def _host_died(engine: RayEngine) -> tuple[type[BaseException], ...]:
    """What a call raises when its host actor (or its node) is gone."""
    errors = engine.ray.exceptions
    return (errors.RayActorError, errors.ActorUnavailableError)


def placed_spec(
    spec_json: str,
    agent_id: str,
    engine: RayEngine,
    actor_options: Mapping[str, Any],
    host_args: tuple[Any, ...],
    *,
    parent_id: str | None,
    env: Mapping[str, str],
    environment: Callable[[ChildContext], Mapping[str, str]] | None = None,
    restart: Restart,
    shutdown: Shutdown,
    timeout: float | None,
    start_timeout: float,
    level: str,
    meta: Mapping[str, Any],
    on_start: Callable[[RemoteHandle], None] | None = None,
) -> ChildSpec:
    """A child spec whose incarnations run the agent in a new host actor each;
    *environment(ctx)* adds each one's own variables (its trace context)."""

    async def start(ctx: ChildContext) -> None:
        ray = engine.ray
        actor = engine.host(actor_options, *host_args)
        handle: RemoteHandle | None = None
        ended: dict[str, Any] | None = None
        seen = [0]
        try:
            try:
                with anyio.fail_after(start_timeout):
                    try:
                        where = await engine.call(actor.node.remote())
                    except ray.exceptions.RayActorError:  # a spare that died idle: once more
                        engine.kill(actor)
                        actor = engine.host(actor_options, *host_args, fresh=True)
                        where = await engine.call(actor.node.remote())
                    own = environment(ctx) if environment is not None else {}
                    info = await engine.call(
                        actor.start.remote(spec_json, parent_id, {**env, **own})
                    )
            except TimeoutError:
                raise RemoteExit(
                    f"no node took {agent_id!r} within {start_timeout} s (is the cluster busy?)"
                ) from None
            except _host_died(engine) as exc:
                raise RemoteExit(f"the host of {agent_id!r} died while starting") from exc
            if "error" in info:
                raise RemoteExit(info["error"])
            handle = RemoteHandle(
                agent_id=agent_id,
                pid=info["pid"],
                node=where["node"],
                node_id=where["node_id"],
                host_pid=where["host_pid"],
                log_path=info.get("log"),
                started_at=info.get("started_at") or time.time(),
                actor=actor,
                engine=engine,
            )
            if on_start is not None:
                on_start(handle)
            ctx.emit("placed", node=handle.node, node_id=handle.node_id, host_pid=handle.host_pid)
            ctx.started(handle)
            async with anyio.create_task_group() as tg:
                tg.start_soon(_pump, ctx, handle, seen)
                ended = await handle.call("wait")
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await _finish(ctx, engine, actor, handle, ended, seen, shutdown)
        assert ended is not None
        if ended["outcome"] != "normal":
            raise RemoteExit(ended.get("reason") or "the agent exited abnormally")

    return ChildSpec(
        id=agent_id,
        start=start,
        restart=restart,
        shutdown=shutdown,
        timeout=timeout,
        level=level,
        meta={**meta, "placement": "ray"},
    )


async def _finish(
    ctx: ChildContext,
    engine: RayEngine,
    actor: Any,
    handle: RemoteHandle | None,
    ended: dict[str, Any] | None,
    seen: list[int],
    shutdown: Shutdown,
) -> None:
    """Stop the remote tree unless it ended, bring its last events home, end the actor."""
    try:
        await _wind_up(ctx, handle, ended, seen, shutdown)
    finally:
        engine.kill(actor)  # whatever happened above: no host outlives its incarnation


async def _wind_up(
    ctx: ChildContext,
    handle: RemoteHandle | None,
    ended: dict[str, Any] | None,
    seen: list[int],
    shutdown: Shutdown,
) -> None:
    if handle is not None:
        drained = False
        with anyio.move_on_after(shutdown.grace + _STOP_MARGIN):
            try:
                if ended is None:
                    handle.last_stop = await handle.call("stop")
                await _drain(ctx, handle, seen, 0.0)
                drained = True
            except Exception:
                pass  # went with it (its watchdog), and the kill below ends the worker
        if not drained:  # their own last events will never come: say how they ended
            for agent in sorted(handle.remote):
                ctx.runtime.events.emit(
                    "exited",
                    agent_id=agent,
                    kind="worker",
                    outcome="error",
                    reason=f"its host ({handle.agent_id} on {handle.node}) died",
                    node=handle.node,
                    host=handle.agent_id,
                )


async def _pump(ctx: ChildContext, handle: RemoteHandle, seen: list[int]) -> None:
    try:
        while True:
            await _drain(ctx, handle, seen, _POLL_SECONDS)
    except RemoteExit:
        return  # the pending ``wait`` reports the host's death: one exit, one reason


async def _drain(ctx: ChildContext, handle: RemoteHandle, seen: list[int], wait: float) -> None:
    """Re-emit the host's events after ``seen[0]`` in the coordinator, with the node."""
    batch = await handle.call("events", seen[0], wait)
    emit = ctx.runtime.events.emit
    for seq, event, fields in batch:
        seen[0] = seq
        agent = fields.get("agent_id")
        if agent is not None and agent != handle.agent_id:  # keep the live ones
            if event in ("exited", "terminated", "timed_out"):
                handle.remote.discard(agent)
            elif event in ("spawned", "started"):
                handle.remote.add(agent)
        emit(event, **{**fields, "node": handle.node, "host": handle.agent_id})
