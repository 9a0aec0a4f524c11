"""``HttpAgentClient``: the same surface as the file-queue client, over the REST API.

Inside an agent started while the API runs, ``HttpAgentClient()`` needs no arguments: it
reads ``ZIGGIE_URL`` and ``ZIGGIE_AGENT_TOKEN`` (its token acts on its own subtree only).
Like the seed's client, a refusal, a timeout or an unreachable coordinator is a ``failed``
response (with a machine-readable ``code``), never an exception.
"""

from __future__ import annotations

import json
import os
from typing import Any

import anyio
import httpx
from httpx_sse import aconnect_sse
from pydantic import ValidationError

from supervisor.protocol import AgentSpec, DeploymentRequest, DeploymentResponse, ErrorCode

_CODES: dict[int, ErrorCode] = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    413: "invalid_request",
    422: "refused",
}


class HttpAgentClient:
    """Deploy, inspect and stop agents through a coordinator's HTTP API.

    ::

        async with HttpAgentClient("http://127.0.0.1:8765", token) as client:
            answer = await client.deploy_agent(spec)
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        parent_agent: str | None = None,
    ) -> None:
        self.url = (url or os.environ.get("ZIGGIE_URL") or "").rstrip("/")
        if not self.url:
            raise ValueError("no coordinator URL: pass url= or set ZIGGIE_URL")
        self.token = (
            token or os.environ.get("ZIGGIE_AGENT_TOKEN") or os.environ.get("ZIGGIE_API_TOKEN")
        )
        self.parent_agent = parent_agent or os.environ.get("ZIGGIE_AGENT_ID")
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            self._client = httpx.AsyncClient(
                base_url=self.url, headers=headers, timeout=None, trust_env=False
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> HttpAgentClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the seed's surface ----------------------------------------------------------

    async def deploy_agent(
        self,
        agent_spec: AgentSpec,
        parent_agent: str | None = None,
        wait_for_response: bool = True,
        timeout: float = 30,
    ) -> DeploymentResponse:
        """Deploy a (sub-)agent: ``deployed`` with its pid and log, or ``failed``."""
        body: dict[str, Any] = {"agent_spec": agent_spec.model_dump(mode="json")}
        parent = parent_agent or self.parent_agent
        if parent:
            body["parent_agent"] = parent
        return await self._call("POST", "/v1/agents", agent_spec.id, timeout, json=body)

    async def check_agent_status(self, agent_id: str, timeout: float = 10) -> DeploymentResponse:
        return await self._call("GET", f"/v1/agents/{agent_id}", agent_id, timeout)

    async def terminate_agent(self, agent_id: str, timeout: float = 60) -> DeploymentResponse:
        return await self._call("DELETE", f"/v1/agents/{agent_id}", agent_id, timeout)

    async def restart_agent(self, agent_id: str, timeout: float = 60) -> DeploymentResponse:
        return await self._call("POST", f"/v1/agents/{agent_id}/restart", agent_id, timeout)

    async def list_agents(self, timeout: float = 10) -> DeploymentResponse:
        return await self._call("GET", "/v1/agents", "all", timeout)

    async def submit(
        self, request: DeploymentRequest, *, timeout: float = 30
    ) -> DeploymentResponse:
        """A whole seed request (any action), answered exactly once per ``request_id``."""
        body = request.model_dump(mode="json")
        agent = request.target_agent_id or (request.agent_spec.id if request.agent_spec else "")
        return await self._call("POST", "/v1/requests", agent or "unknown", timeout, json=body)

    async def logs(self, agent_id: str, tail: int = 200, timeout: float = 10) -> str:
        """The last *tail* lines of the agent's log ('' if it has none)."""
        with anyio.fail_after(timeout):
            response = await self._http().get(f"/v1/agents/{agent_id}/logs", params={"tail": tail})
        response.raise_for_status()
        return response.text

    def events(self, last_event_id: int | None = None) -> EventStream:
        """Every lifecycle event from after *last_event_id* on, resuming across disconnects.

        Each event is its JSON with ``"id"`` (its sequence number) added::

            async with client.events(last_event_id=0) as events:
                async for event in events:
                    ...

        The stream is read by a task the block owns, so leaving the block (or a
        ``break``) closes the connection cleanly on trio and asyncio alike.
        """
        return EventStream(self, last_event_id)

    # -- plumbing --------------------------------------------------------------------

    async def _call(
        self, method: str, path: str, agent_id: str, timeout: float, **kwargs: Any
    ) -> DeploymentResponse:
        try:
            with anyio.fail_after(timeout):
                response = await self._http().request(method, path, **kwargs)
        except TimeoutError:
            return _failed(
                agent_id, "Request timeout", f"No response within {timeout:g} seconds", "timeout"
            )
        except httpx.TransportError as exc:
            return _failed(
                agent_id, "Coordinator unreachable", f"{self.url}: {exc}", "no_coordinator"
            )
        if response.headers.get("content-type", "").startswith("application/json"):
            try:
                return DeploymentResponse.model_validate_json(response.content)
            except ValidationError:
                pass
        try:
            problem = response.json()
            detail = problem.get("detail") or problem.get("title") or response.text
        except (json.JSONDecodeError, AttributeError):
            detail = response.text
        return _failed(
            agent_id,
            f"HTTP {response.status_code}",
            str(detail),
            _CODES.get(response.status_code, "internal"),
        )


def _failed(agent_id: str, message: str, error: str, code: ErrorCode) -> DeploymentResponse:
    return DeploymentResponse(
        request_id="http",
        status="failed",
        agent_id=agent_id,
        message=message,
        error=error,
        code=code,
    )


class EventStream:
    """The event stream of :meth:`HttpAgentClient.events`: an async context and iterator."""

    def __init__(self, client: HttpAgentClient, last_event_id: int | None) -> None:
        self._client = client
        self.last_event_id = last_event_id
        self._tx, self._rx = anyio.create_memory_object_stream[dict[str, Any]](1024)
        self._tg: Any = None
        self._error: Exception | None = None

    async def __aenter__(self) -> EventStream:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._read)
        return self

    async def __aexit__(self, *exc: Any) -> bool | None:
        self._tg.cancel_scope.cancel()
        self._rx.close()
        result: bool | None = await self._tg.__aexit__(*exc)
        return result

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        try:
            return await self._rx.receive()
        except anyio.EndOfStream:
            if self._error is not None:
                raise self._error from None
            raise StopAsyncIteration from None

    async def _read(self) -> None:
        async with self._tx:
            while True:
                last = self.last_event_id
                headers = {"Last-Event-ID": str(last)} if last is not None else {}
                http = self._client._http()
                try:
                    async with aconnect_sse(http, "GET", "/v1/events", headers=headers) as src:
                        status = src.response.status_code
                        if status in (401, 403):
                            self._error = PermissionError(f"events: HTTP {status}")
                            return
                        src.response.raise_for_status()
                        async for sse in src.aiter_sse():
                            if not sse.data:
                                continue
                            event = json.loads(sse.data)
                            if sse.id:
                                self.last_event_id = int(sse.id)
                                event["id"] = self.last_event_id
                            await self._tx.send(event)
                except (httpx.TransportError, httpx.RemoteProtocolError):
                    pass
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return  # the consumer left
                await anyio.sleep(0.2)  # the stream ended (slow consumer, restart): resume
