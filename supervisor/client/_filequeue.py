"""The file-queue client: the seed's ``AgentDeploymentClient``, without its 100 ms polling.

Requests are written atomically (temp file, then ``os.replace``). Answers are awaited with
one directory watch per client, shared by all its waits: the first waiter reads the
watch and wakes the waiter whose answer arrived. A refusal or a timeout is a ``failed``
response, as in the seed.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import anyio
from pydantic import ValidationError

from supervisor.protocol import (
    RESCAN,
    AgentSpec,
    DeploymentRequest,
    DeploymentResponse,
    Watcher,
    watch_directory,
    write_atomic,
)

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
    """

    def __init__(
        self, queue_dir: str | os.PathLike[str] | None = None, *, parent_agent: str | None = None
    ) -> None:
        self.queue_dir = Path(queue_dir) if queue_dir is not None else default_queue_dir()
        self.requests_dir = self.queue_dir / "requests"
        self.responses_dir = self.queue_dir / "responses"
        for directory in (self.requests_dir, self.responses_dir):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.parent_agent = parent_agent or os.environ.get("ZIGGIE_AGENT_ID") or "Ziggie"
        self._watcher: Watcher | None = None
        self._reading = False
        self._waiters: dict[str, anyio.Event] = {}

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
        return await self._target("status_check", agent_id, timeout)

    async def terminate_agent(self, agent_id: str, timeout: float = 10) -> DeploymentResponse:
        return await self._target("terminate_agent", agent_id, timeout)

    # -- additions -------------------------------------------------------------------

    async def restart_agent(self, agent_id: str, timeout: float = 30) -> DeploymentResponse:
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
            return _failed(str(agent_id), "unknown", "Invalid request", _first_error(exc))
        return await self.submit(request, timeout=timeout)

    async def submit(
        self,
        request: DeploymentRequest,
        *,
        timeout: float = 30,
        wait: bool = True,
        agent_id: str = "unknown",
    ) -> DeploymentResponse:
        """Write *request* into the queue and (by default) await its answer."""
        if self._watcher is None:  # watch before writing: no answer can slip past
            self._watcher = watch_directory(self.responses_dir)
        path = self.requests_dir / f"{request.request_id}.request.json"
        write_atomic(path, json.dumps(request.model_dump(mode="json"), indent=2))
        if not wait:
            return DeploymentResponse(
                request_id=request.request_id,
                status="submitted",
                agent_id=agent_id,
                message="Request submitted to coordinator",
            )
        return await self.wait_for(request.request_id, timeout=timeout)

    async def wait_for(self, request_id: str, *, timeout: float = 30) -> DeploymentResponse:
        """The answer to *request_id*: its response file, or its error file, or a timeout."""
        if self._watcher is None:
            self._watcher = watch_directory(self.responses_dir)
        self._waiters[request_id] = anyio.Event()
        try:
            with anyio.move_on_after(timeout):
                while True:
                    answer = self._read_answer(request_id)
                    if answer is not None:
                        return answer
                    await self._next_change(request_id)
        finally:
            self._waiters.pop(request_id, None)
        return _failed(
            request_id,
            "unknown",
            "Request timeout",
            f"No response received within {timeout:g} seconds",
        )

    def _read_answer(self, request_id: str) -> DeploymentResponse | None:
        try:
            raw = (self.responses_dir / f"{request_id}.response.json").read_bytes()
        except FileNotFoundError:
            pass
        else:
            return DeploymentResponse.model_validate_json(raw)
        try:
            raw = (self.responses_dir / f"{request_id}.error.json").read_bytes()
        except FileNotFoundError:
            return None
        data = json.loads(raw)
        return _failed(
            request_id, "unknown", "Request processing failed", data.get("error", "Unknown error")
        )

    async def _next_change(self, request_id: str) -> None:
        """Wait for the next arrival: read the watch ourselves, or be woken by its reader."""
        assert self._watcher is not None
        if self._reading:
            event = self._waiters[request_id] = anyio.Event()
            await event.wait()
            return
        self._reading = True
        try:
            names = await self._watcher.wait()
        finally:
            self._reading = False
            # Hand the watch over: some other waiter must read it now.
            for other_id, other in list(self._waiters.items()):
                if other_id != request_id:
                    other.set()
                    break
        for name in names:
            if name == RESCAN:  # events were lost: everyone looks for itself
                for waiter in self._waiters.values():
                    waiter.set()
            elif (match := self._waiters.get(name.split(".", 1)[0])) is not None:
                match.set()

    def close(self) -> None:
        """Release the directory watch (it is made again if the client is used again)."""
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None

    async def __aenter__(self) -> AgentDeploymentClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


def _failed(request_id: str, agent_id: str, message: str, error: str) -> DeploymentResponse:
    return DeploymentResponse(
        request_id=request_id, status="failed", agent_id=agent_id, message=message, error=error
    )


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(x) for x in err["loc"])
    return f"{where}: {err['msg']}" if where else str(err["msg"])


class SyncAgentDeploymentClient:
    """The same client for code without an event loop: each call runs one to completion."""

    def __init__(
        self,
        queue_dir: str | os.PathLike[str] | None = None,
        *,
        parent_agent: str | None = None,
        backend: str = "asyncio",
    ) -> None:
        self.client = AgentDeploymentClient(queue_dir, parent_agent=parent_agent)
        self._backend = backend

    def _run(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        return anyio.run(functools.partial(fn, *args, **kwargs), backend=self._backend)

    def deploy_agent(self, agent_spec: AgentSpec, **kwargs: Any) -> DeploymentResponse:
        return self._run(self.client.deploy_agent, agent_spec, **kwargs)

    def check_agent_status(self, agent_id: str, timeout: float = 10) -> DeploymentResponse:
        return self._run(self.client.check_agent_status, agent_id, timeout)

    def terminate_agent(self, agent_id: str, timeout: float = 10) -> DeploymentResponse:
        return self._run(self.client.terminate_agent, agent_id, timeout)

    def restart_agent(self, agent_id: str, timeout: float = 30) -> DeploymentResponse:
        return self._run(self.client.restart_agent, agent_id, timeout)

    def list_agents(self, timeout: float = 10) -> DeploymentResponse:
        return self._run(self.client.list_agents, timeout)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()

    def __enter__(self) -> SyncAgentDeploymentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
