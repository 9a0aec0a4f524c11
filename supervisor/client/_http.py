"""``HttpAgentClient``: the same surface as the file-queue client, over the REST API.

Inside an agent started while the API runs, ``HttpAgentClient()`` needs no arguments: it
reads ``ZIGGIE_URL`` and ``ZIGGIE_AGENT_TOKEN`` (its token acts on its own subtree only).
Like the seed's client, a refusal, a timeout or an unreachable coordinator is a ``failed``
response (with a machine-readable ``code``), never an exception.
"""

from __future__ import annotations

import codecs
import json
import os
from typing import Any

import anyio
import httpx
from pydantic import ValidationError

from supervisor.protocol import (
    AgentSpec,
    DeploymentRequest,
    DeploymentResponse,
    ErrorCode,
    current_trace_context,
)

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
        spec = agent_spec.model_dump(mode="json")
        if "timeout_seconds" not in agent_spec.model_fields_set:
            del spec["timeout_seconds"]  # unset: the coordinator gives the parent's remaining
        body: dict[str, Any] = {"agent_spec": spec}
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
                response = await self._http().request(
                    method, path, headers=_trace_headers(), **kwargs
                )
        except TimeoutError:
            return _failed(
                agent_id, "Request timeout", f"No response within {timeout:g} seconds", "timeout"
            )
        except httpx.TransportError as exc:
            return _failed(
                agent_id, "Coordinator unreachable", f"{self.url}: {exc}", "no_coordinator"
            )
        # An answer (200) is JSON; a refusal a problem that is also the failed answer.
        if response.headers.get("content-type", "").startswith(
            ("application/json", "application/problem+json")
        ):
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


def _trace_headers() -> dict[str, str]:
    """The caller's trace context (W3C headers): what a call causes continues its trace."""
    parent, state = current_trace_context()
    if parent is None:
        return {}
    return {"traceparent": parent, "tracestate": state} if state else {"traceparent": parent}


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
                try:
                    await self._stream_once()
                except (OSError, anyio.EndOfStream, anyio.BrokenResourceError, ValueError):
                    pass  # the connection broke or the server went away: resume below
                except anyio.ClosedResourceError:
                    return  # the consumer left
                if self._error is not None:
                    return
                await anyio.sleep(0.2)  # the stream ended (slow consumer, restart): resume

    async def _stream_once(self) -> None:
        """One connection: GET /v1/events over a plain socket, server-sent events out.

        A raw HTTP/1.1 reader (chunked decoding and SSE framing, a few dozen lines) instead
        of httpx's streaming iterators: cancelling those mid-stream leaves async generators
        for the garbage collector, which trio reports (and a strict test suite fails on).
        """
        url = httpx.URL(self._client.url)
        if url.scheme != "http":
            raise ValueError(f"events: only http:// URLs are served, not {url.scheme}")
        port = url.port or 80
        head = ["GET /v1/events HTTP/1.1", f"Host: {url.host}:{port}"]
        head.append("Accept: text/event-stream")
        if self._client.token:
            head.append(f"Authorization: Bearer {self._client.token}")
        if self.last_event_id is not None:
            head.append(f"Last-Event-ID: {self.last_event_id}")
        async with await anyio.connect_tcp(url.host, port) as sock:
            await sock.send(("\r\n".join(head) + "\r\n\r\n").encode())
            buffer = bytearray()
            while b"\r\n\r\n" not in buffer:
                buffer += await sock.receive()
            end = buffer.index(b"\r\n\r\n")
            status_line, *header_lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
            del buffer[: end + 4]
            status = int(status_line.split(" ", 2)[1])
            if status in (401, 403):
                self._error = PermissionError(f"events: HTTP {status}")
                return
            if status != 200:
                raise ValueError(f"events: HTTP {status}")
            chunked = any(
                h.lower().startswith("transfer-encoding:") and "chunked" in h.lower()
                for h in header_lines
            )
            text = ""
            decode = codecs.getincrementaldecoder("utf-8")().decode  # chunks split characters
            while True:
                if chunked:
                    while b"\r\n" not in buffer:
                        buffer += await sock.receive()
                    size_end = buffer.index(b"\r\n")
                    size = int(bytes(buffer[:size_end]).split(b";")[0], 16)
                    while len(buffer) < size_end + 2 + size + 2:
                        buffer += await sock.receive()
                    if size == 0:
                        return  # the server ended the stream
                    chunk = bytes(buffer[size_end + 2 : size_end + 2 + size])
                    del buffer[: size_end + 2 + size + 2]
                else:
                    chunk = bytes(buffer) or await sock.receive()
                    buffer.clear()
                text += decode(chunk)
                while "\n\n" in text:
                    frame, text = text.split("\n\n", 1)
                    await self._deliver(frame)

    async def _deliver(self, frame: str) -> None:
        ident = data = None
        for line in frame.split("\n"):
            if line.startswith("id: "):
                ident = line[4:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line.startswith("event: "):
                return  # an ephemeral message (usage samples) for the dashboard
        if data is None:
            return
        event = json.loads(data)
        if ident:
            self.last_event_id = int(ident)
            event["id"] = self.last_event_id
        await self._tx.send(event)
