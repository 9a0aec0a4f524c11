"""The file-queue client: the seed's ``AgentDeploymentClient``, without its 100 ms polling.

Requests are written atomically (temp file, then ``os.replace``). Answers are awaited on
one directory watch per client, shared by all its waits without a lost wake-up (see
:mod:`._waiting`). A refusal, a timeout or a missing coordinator is a ``failed``
response with a machine-readable ``code``, as the seed's callers expect a response.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import anyio
from anyio.from_thread import BlockingPortal
from pydantic import ValidationError

from supervisor.protocol import (
    LOCK_NAME,
    REQUESTS,
    RESPONSES,
    AgentSpec,
    DeploymentRequest,
    DeploymentResponse,
    coordinator_serves,
    request_name,
    watch_directory,
    write_atomic,
)

from ._answers import failed, first_error, read_answer
from ._waiting import AnswerWaits

P = ParamSpec("P")
T = TypeVar("T")


def default_queue_dir() -> Path:
    """``$ZIGGIE_HOME/agent-queue``, else ``./.ziggie/agent-queue``."""
    home = os.environ.get("ZIGGIE_HOME")
    return Path(home if home else ".ziggie") / "agent-queue"


class AgentDeploymentClient:
    """Submit requests to a coordinator's queue and await its answers.

    With no arguments inside an agent process it uses ``ZIGGIE_HOME`` and, as the parent,
    ``ZIGGIE_AGENT_ID``: a sub-agent deployed from there is attached under its caller.

    Any number of calls may wait at once (an L1 fanning out to its L2s), from trio or
    asyncio; ``async with`` releases the watch at the end, and so does :meth:`close`.
    Constructing a client touches nothing: a mistyped path creates no directory, and a
    call fails at once (``code="no_coordinator"``) when nothing serves the queue.
    """

    def __init__(
        self, queue_dir: str | os.PathLike[str] | None = None, *, parent_agent: str | None = None
    ) -> None:
        self.queue_dir = Path(queue_dir) if queue_dir is not None else default_queue_dir()
        self.requests_dir = self.queue_dir / REQUESTS
        self.responses_dir = self.queue_dir / RESPONSES
        self.parent_agent = parent_agent or os.environ.get("ZIGGIE_AGENT_ID") or "Ziggie"
        self._waits: AnswerWaits | None = None
        self._release: Callable[[], object] = lambda: None
        # Plain strings on the per-request path (pathlib costs more than the syscalls).
        self._requests = os.fspath(self.requests_dir)
        self._responses = os.fspath(self.responses_dir)
        self._home = os.fspath(self.queue_dir.parent)

    # -- the seed's surface ----------------------------------------------------------

    async def deploy_agent(
        self,
        agent_spec: AgentSpec,
        parent_agent: str | None = None,
        wait_for_response: bool = True,
        timeout: float = 30,
    ) -> DeploymentResponse:
        """Deploy a (sub-)agent; ``deployed`` with its pid and log file, or ``failed``."""
        request = DeploymentRequest(
            parent_agent=parent_agent or self.parent_agent,
            action="deploy_agent",
            agent_spec=agent_spec,
        )
        return await self.submit(
            request, timeout=timeout, wait=wait_for_response, agent_id=agent_spec.id
        )

    async def check_agent_status(self, agent_id: str, timeout: float = 10) -> DeploymentResponse:
        """State, pid, exit, restarts, parent, children and usage of *agent_id*."""
        return await self._target("status_check", agent_id, timeout)

    async def terminate_agent(self, agent_id: str, timeout: float = 10) -> DeploymentResponse:
        """Stop *agent_id* and its whole subtree, children first."""
        return await self._target("terminate_agent", agent_id, timeout)

    # -- additions -------------------------------------------------------------------

    async def restart_agent(self, agent_id: str, timeout: float = 30) -> DeploymentResponse:
        """Stop *agent_id* (subtree first) and start it afresh."""
        return await self._target("restart_agent", agent_id, timeout)

    async def list_agents(self, timeout: float = 10) -> DeploymentResponse:
        """Every agent the coordinator knows (``agents``), and the live tree (``agent``)."""
        request = DeploymentRequest(parent_agent=self.parent_agent, action="list_agents")
        return await self.submit(request, timeout=timeout)

    async def _target(self, action: str, agent_id: str, timeout: float) -> DeploymentResponse:
        try:
            request = DeploymentRequest(
                parent_agent=self.parent_agent,
                action=action,  # type: ignore[arg-type]
                target_agent_id=agent_id,
            )
        except ValidationError as exc:
            return failed(
                str(agent_id), "unknown", "Invalid request", first_error(exc), "invalid_request"
            )
        return await self.submit(request, timeout=timeout)

    def coordinator_serves(self) -> bool:
        """True if a coordinator serves this queue now (its home lock is held)."""
        return coordinator_serves(self._home)

    async def submit(
        self,
        request: DeploymentRequest,
        *,
        timeout: float = 30,
        wait: bool = True,
        agent_id: str = "unknown",
    ) -> DeploymentResponse:
        """Write *request* into the queue and (by default) await its answer.

        Nothing is written when no coordinator serves the queue: the answer is then a
        ``failed`` response with ``code="no_coordinator"``, at once.
        """
        if not coordinator_serves(self._home):
            return self._no_coordinator(request.request_id, agent_id)
        request = request.in_callers_trace()  # what it causes continues the caller's trace
        waits = self._watch()  # watch before writing: no answer can slip past
        path = f"{self._requests}/{request_name(request.request_id)}"
        write_atomic(path, _request_json(request))
        if not wait:
            return DeploymentResponse(
                request_id=request.request_id,
                status="submitted",
                agent_id=agent_id,
                message="Request submitted to coordinator",
            )
        return await self._wait(waits, request.request_id, timeout)

    async def wait_for(self, request_id: str, *, timeout: float = 30) -> DeploymentResponse:
        """The answer to *request_id*: its response file, or its error file, or a timeout."""
        answer = self._read_answer(request_id)
        if answer is not None:
            return answer
        if not coordinator_serves(self._home):
            return self._no_coordinator(request_id, "unknown")
        return await self._wait(self._watch(), request_id, timeout)

    def _watch(self) -> AnswerWaits:
        if self._waits is None:
            watcher = watch_directory(self._responses)
            self._waits = AnswerWaits(watcher)
            # The seed's callers never close a client: its watch goes with the client.
            self._release = weakref.finalize(self, watcher.close)
        return self._waits

    async def _wait(
        self, waits: AnswerWaits, request_id: str, timeout: float
    ) -> DeploymentResponse:
        # No checkpoint between writing the request and registering: an answer arriving
        # meanwhile is found by the first look below.
        waits.register(request_id)
        try:
            with anyio.move_on_after(timeout):
                while True:
                    answer = self._read_answer(request_id)
                    if answer is not None:
                        return answer
                    await waits.next_change(request_id)
        finally:
            waits.unregister(request_id)
        if not coordinator_serves(self._home):
            return failed(
                request_id,
                "unknown",
                "Request timeout",
                f"the coordinator stopped serving {self.queue_dir} before answering",
                "no_coordinator",
            )
        return failed(
            request_id,
            "unknown",
            "Request timeout",
            f"No response received within {timeout:g} seconds",
            "timeout",
        )

    def _read_answer(self, request_id: str) -> DeploymentResponse | None:
        return read_answer(self._responses, request_id)

    def _no_coordinator(self, request_id: str, agent_id: str) -> DeploymentResponse:
        where = self.queue_dir
        hint = ""
        if (where / LOCK_NAME).exists() or (where / "agent-queue").is_dir():
            hint = f" ({where} looks like a home: its queue is {where / 'agent-queue'})"
        elif not where.is_dir():
            hint = " (no such directory)"
        return failed(
            request_id,
            agent_id,
            "No coordinator",
            f"no coordinator serves {where}{hint}; start one with"
            f" `ziggie serve --home {where.parent}`",
            "no_coordinator",
        )

    def close(self) -> None:
        """Release the directory watch (it is made again if the client is used again)."""
        if self._waits is not None:
            self._release()
            self._waits = None

    async def __aenter__(self) -> AgentDeploymentClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


def _request_json(request: DeploymentRequest) -> str:
    """The request's JSON. A spec's ``timeout_seconds`` left unset is left out: the
    coordinator then gives a child its parent's remaining time (a top-level agent gets the
    seed's default, 300 s)."""
    spec = request.agent_spec
    # Without a trace context the file is the seed's, field for field.
    untraced = {"traceparent", "tracestate"} if request.traceparent is None else None
    if spec is None or "timeout_seconds" in spec.model_fields_set:
        return request.model_dump_json(indent=2, exclude=untraced)
    data = request.model_dump(mode="json", exclude=untraced)
    del data["agent_spec"]["timeout_seconds"]
    return json.dumps(data, indent=2)


class _LoopThread:
    """One event loop in a daemon thread, entered through an anyio blocking portal.

    Not ``anyio.from_thread.start_blocking_portal``: its worker thread is not a daemon, so
    a sync client nobody closed would hang the interpreter's exit on joining it.
    """

    def __init__(self, backend: str) -> None:
        self.portal: BlockingPortal | None = None
        self._error: BaseException | None = None
        ready = threading.Event()

        async def serve() -> None:
            async with BlockingPortal() as portal:
                self.portal = portal
                ready.set()
                await portal.sleep_until_stopped()

        def run() -> None:
            try:
                anyio.run(serve, backend=backend)
            except BaseException as exc:  # reported to the caller waiting for `ready`
                self._error = exc
                ready.set()

        self._thread = threading.Thread(target=run, name="ziggie-sync-client", daemon=True)
        self._thread.start()
        ready.wait()
        if self.portal is None:
            raise RuntimeError(f"the client's event loop did not start: {self._error!r}")

    def close(self) -> None:
        if self.portal is not None and self._thread.is_alive():
            self.portal.call(self.portal.stop)
        self._thread.join()


class SyncAgentDeploymentClient:
    """The same client for code without an event loop.

    Every call runs on ONE event loop of the client's own (a daemon thread, started at the
    first call), so its directory watch and its waits are shared by every call, from any
    number of threads. :meth:`close` (or leaving ``with``) stops that loop.
    """

    def __init__(
        self,
        queue_dir: str | os.PathLike[str] | None = None,
        *,
        parent_agent: str | None = None,
        backend: str = "asyncio",
    ) -> None:
        self.client = AgentDeploymentClient(queue_dir, parent_agent=parent_agent)
        self._backend = backend
        self._loop: _LoopThread | None = None
        self._lock = threading.Lock()

    def _run(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        with self._lock:
            if self._loop is None:
                self._loop = _LoopThread(self._backend)
            portal = self._loop.portal
        assert portal is not None
        return portal.call(functools.partial(fn, *args, **kwargs))

    def deploy_agent(self, agent_spec: AgentSpec, **kwargs: Any) -> DeploymentResponse:
        """See :meth:`AgentDeploymentClient.deploy_agent`."""
        return self._run(self.client.deploy_agent, agent_spec, **kwargs)

    def check_agent_status(self, agent_id: str, timeout: float = 10) -> DeploymentResponse:
        """See :meth:`AgentDeploymentClient.check_agent_status`."""
        return self._run(self.client.check_agent_status, agent_id, timeout)

    def terminate_agent(self, agent_id: str, timeout: float = 10) -> DeploymentResponse:
        """See :meth:`AgentDeploymentClient.terminate_agent`."""
        return self._run(self.client.terminate_agent, agent_id, timeout)

    def restart_agent(self, agent_id: str, timeout: float = 30) -> DeploymentResponse:
        """See :meth:`AgentDeploymentClient.restart_agent`."""
        return self._run(self.client.restart_agent, agent_id, timeout)

    def list_agents(self, timeout: float = 10) -> DeploymentResponse:
        """See :meth:`AgentDeploymentClient.list_agents`."""
        return self._run(self.client.list_agents, timeout)

    def close(self) -> None:
        """Stop the client's event loop and release its watch. Idempotent."""
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is not None:
            if loop.portal is not None:
                loop.portal.call(_sync_close, self.client)
            loop.close()
        else:
            self.client.close()

    def __enter__(self) -> SyncAgentDeploymentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _sync_close(client: AgentDeploymentClient) -> None:
    client.close()  # on the loop that uses the watch, never beside a wait in progress
