"""The far side of a placement: one Ray actor hosting a ziggie runtime of its own.

A placed agent runs, with its whole subtree, in this runtime; supervision stays with the
coordinator, whose proxy node calls these methods. Ray runs the actor's methods on a
thread pool (``max_concurrency``), so each one hands its work to the runtime's trio loop,
in a thread of its own, with ``trio.from_thread``: the calls that block (``wait``,
``events``) never hold up the others.

Why the actor becomes a subreaper, and its agents carry a token of their own: a worker
SIGKILLed by Ray or by an operator takes its process group with it, but not the agent
processes that called ``setsid``; those re-parent to us while we live, and the
runtime's watchdog (``actors``) sweeps them by token once we are gone.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import trio

from actors import ProcessHandle, become_subreaper, new_token
from actors import detach as detach_watchdog
from supervisor import EventLog, Restart, Runtime, ZiggieError, describe, open_runtime
from supervisor.protocol import AgentSpec

from .._agents import AgentHome, agent_child_spec, drop_stopped
from .._replies import AgentRefused
from .._runners import default_runners
from .._settings import Settings

#: Kernel events of the placed agent itself: its proxy in the coordinator emits its own.
_PROXIED = frozenset(
    {"starting", "started", "exited", "terminated", "timed_out", "restarted", "stop_requested"}
)
_KEEP_EVENTS = 10_000


class AgentHost:
    """A placed agent's runtime (the class Ray makes an actor of)."""

    def __init__(self, home: str, token: str, settings: str, lease: float) -> None:
        # Ray kills a dead worker's children: our watchdog must be none of them, or it dies
        # before its sweep; and it must be detached before we become a subreaper.
        detach_watchdog()
        become_subreaper()
        self._home = AgentHome.at(home)
        #: Under the coordinator's token: a test run (or ``ziggie``) still recognises these
        #: agents as its own, while this host's watchdog sweeps only ours.
        self._token = new_token(token)
        #: The coordinator's settings that shape an agent (runner, logs, confinement).
        self._settings = Settings.model_validate_json(settings)
        self._agent: str | None = None
        self._ended: dict[str, Any] | None = None
        self._events: deque[tuple[int, str, dict[str, Any]]] = deque(maxlen=_KEEP_EVENTS)
        self._seq = 0
        self._changed = threading.Condition()
        self._ready = threading.Event()
        self._rt: Runtime | None = None
        self._trio: trio.lowlevel.TrioToken | None = None
        self._done: trio.Event | None = None
        self._end_seen: trio.Event | None = None
        self._thread = threading.Thread(target=trio.run, args=(_main, self), daemon=True)
        self._stopping = 0  #: stops in progress: the lease waits for them
        #: Fate-sharing that needs no help from Ray: the proxy polls for events every few
        #: seconds; a host that hears nothing for *lease* seconds has lost its coordinator,
        #: so it stops its agents (children first) and exits. The lease starts with the
        #: agent (:meth:`start`): a spare host (see ``RayEngine.host``) waits unleased.
        self._touched: float = time.monotonic()
        self._lease: float = lease
        self._thread.start()
        self._ready.wait()
        if self._rt is None:
            raise RuntimeError("the host's runtime did not start")

    def _keep_lease(self) -> None:
        while self._stopping or time.monotonic() - self._touched < self._lease:
            time.sleep(min(1.0, self._lease / 4))
        try:
            self.close()
        finally:
            os._exit(3)

    def _record(self, event: str, fields: dict[str, Any]) -> None:
        agent_id = fields.get("agent_id")
        if agent_id == self._agent and event in ("exited", "terminated", "timed_out"):
            self._ended = {
                "outcome": str(fields.get("outcome", "error")),
                "reason": fields.get("reason"),
            }
            assert self._end_seen is not None
            self._end_seen.set()
        if agent_id is None or (agent_id == self._agent and event in _PROXIED):
            return
        with self._changed:
            self._seq += 1
            safe = {
                k: v if isinstance(v, str | int | float | bool | None | list) else str(v)
                for k, v in fields.items()
            }
            self._events.append((self._seq, event, safe))
            self._changed.notify_all()

    def _run(self, afn: Any, *args: Any) -> Any:
        self._touched = time.monotonic()  # any call from the coordinator renews its lease
        return trio.from_thread.run(afn, *args, trio_token=self._trio)

    # -- what the proxy calls ------------------------------------------------------------

    def node(self) -> dict[str, Any]:
        import ray

        return {
            "node_id": ray.get_runtime_context().get_node_id(),
            "node": ray.util.get_node_ip_address(),  # type: ignore[no-untyped-call]
            "host_pid": os.getpid(),
        }

    def start(self, spec_json: str, parent_id: str | None, env: dict[str, str]) -> dict[str, Any]:
        """Start the placed agent (once per actor); its restarts are the coordinator's."""
        spec = AgentSpec.model_validate_json(spec_json)
        self._agent = spec.id
        self._touched = time.monotonic()
        threading.Thread(target=self._keep_lease, daemon=True).start()
        return self._start(spec, parent_id, env, placed=True)

    def deploy(self, spec_json: str, parent_id: str, env: dict[str, str]) -> dict[str, Any]:
        """A child of an agent of this runtime, started under that agent (nesting)."""
        return self._start(AgentSpec.model_validate_json(spec_json), parent_id, env, placed=False)

    def _start(
        self, spec: AgentSpec, parent_id: str | None, env: dict[str, str], *, placed: bool
    ) -> dict[str, Any]:
        try:
            child = agent_child_spec(
                spec,
                self._home,
                default_runners(),
                parent_id=parent_id,
                settings=self._settings,
                extra_env=env,
                token=self._token,
            )
        except (AgentRefused, ValueError) as exc:
            return {"error": str(exc), "code": "refused"}
        if placed:  # the proxy holds the deadline and the restart policy
            child = dataclasses.replace(child, timeout=None, restart=Restart.TEMPORARY)
        try:
            handle = self._run(_start_under, self, child, parent_id if not placed else None)
        except (ZiggieError, KeyError) as exc:
            return {"error": describe(exc), "code": "start_failed"}
        return _described(handle)

    def wait(self) -> dict[str, Any]:
        """Block until the placed agent has ended; how it ended."""
        assert self._end_seen is not None
        self._run(self._end_seen.wait)
        assert self._ended is not None
        return self._ended

    def stop(self, agent_id: str | None = None) -> dict[str, Any]:
        """Stop *agent_id* (default: the placed agent), its children first, verified empty."""
        target = agent_id or self._agent
        if target is None:
            return {"killed": [], "seconds": 0.0}
        handle = self._rt.whereis(target) if self._rt is not None and target in self._rt else None
        t0 = time.perf_counter()
        self._stopping += 1
        try:
            self._run(_terminate, self, target)
        except ZiggieError as exc:
            return {"error": describe(exc), "code": "not_running"}
        finally:
            self._stopping -= 1
            self._touched = time.monotonic()
        report = handle.last_stop if isinstance(handle, ProcessHandle) else None
        return {
            "killed": report.killed if report else [],
            "seconds": round(time.perf_counter() - t0, 4),
            "pid": handle.pid if isinstance(handle, ProcessHandle) else None,
        }

    def restart(self, agent_id: str) -> dict[str, Any]:
        try:
            handle = self._run(_restart, self, agent_id)
        except ZiggieError as exc:
            return {"error": describe(exc), "code": "start_failed"}
        return _described(handle)

    def events(self, after: int, timeout: float) -> list[tuple[int, str, dict[str, Any]]]:
        """The events after *after*, waiting up to *timeout* seconds for one (long poll).

        Each call renews the coordinator's lease on this host."""
        self._touched = time.monotonic()
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._seq <= after:
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self._changed.wait(left)
            return [e for e in self._events if e[0] > after]

    def pids(self) -> list[int]:
        """Every process of this runtime's agents (for tests and the bench's check)."""
        from actors import marked_processes

        return sorted(p.pid for p in marked_processes(self._token))

    def close(self) -> None:
        """Stop everything and end the runtime's thread (a clean stop of the actor)."""
        if self._trio is not None and self._done is not None:
            self._run(_set_done, self)
        self._thread.join(timeout=60)


def _described(handle: Any) -> dict[str, Any]:
    if not isinstance(handle, ProcessHandle):
        return {"error": "the agent did not start", "code": "start_failed"}
    return {
        "pid": handle.pid,
        "log": str(handle.log_path) if handle.log_path else None,
        "started_at": handle.started_at,
        "home": str(Path(handle.log_path).parent) if handle.log_path else None,
    }


# The runtime's side, on its trio loop: module functions, because a class with any
# ``async def`` is made an asyncio actor by Ray, whose plain methods then run one at a
# time on the loop (a pending ``wait`` would hold up every ``deploy``).


async def _main(host: AgentHost) -> None:
    events = EventLog(enabled=False)
    host._done = trio.Event()
    host._end_seen = trio.Event()
    try:
        with events.listen(host._record):
            async with open_runtime("host", events=events) as rt:
                host._rt = rt
                host._trio = trio.lowlevel.current_trio_token()
                host._ready.set()
                await host._done.wait()
    finally:
        host._ready.set()  # never leave the constructor waiting (it checks _rt)
    # Leaving the runtime stopped every agent, children first, verified empty.


async def _start_under(host: AgentHost, child: Any, parent_id: str | None) -> ProcessHandle:
    assert host._rt is not None
    await drop_stopped(host._rt, child.id)  # as the coordinator does: the new deploy wins
    if parent_id is None:
        handle: ProcessHandle = await host._rt.start_child(child)
        return handle
    parent = host._rt.whereis(parent_id)
    if not isinstance(parent, ProcessHandle) or parent.supervisor is None:
        raise KeyError(f"parent_agent {parent_id!r} is not running here")
    started: ProcessHandle = await parent.supervisor.start_child(child)
    return started


async def _terminate(host: AgentHost, agent_id: str) -> None:
    assert host._rt is not None
    await host._rt.terminate(agent_id)


async def _restart(host: AgentHost, agent_id: str) -> Any:
    assert host._rt is not None
    return await host._rt.restart(agent_id)


async def _set_done(host: AgentHost) -> None:
    assert host._done is not None
    host._done.set()
