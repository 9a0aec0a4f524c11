"""The REST API: a thin transport over :class:`AgentService` (Starlette routes).

Every route but ``GET /v1/health`` needs ``Authorization: Bearer <token>``: the operator's
token may do anything; an agent's token only acts on its own subtree (deploy under
itself, status/terminate/restart of itself and its descendants), anything else is 403.
A ``Host`` that is not ours gets 421 (DNS rebinding). Errors are RFC 9457
``application/problem+json`` naming the field. No route changes state on GET.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route, Router
from starlette.types import ASGIApp

from supervisor import __version__
from supervisor.protocol import DeploymentRequest, DeploymentResponse

from .._callers import Caller, Forbidden
from .._service import AgentService
from ._auth import Tokens
from ._gate import PROBLEM, ApiError, Gate, Methods, not_found, problem
from ._metrics import CONTENT_TYPE, Metrics
from ._models import DeployBody
from ._openapi import openapi_document
from ._stream import EventHub, parse_last_event_id

JSON: Final = "application/json"
#: The HTTP status for each refusal code of the service.
_STATUS_OF_CODE: Final = {
    "not_found": 404,
    "not_running": 409,
    "conflict": 409,
    "forbidden": 403,
    "refused": 422,
    "start_failed": 422,
    "internal": 500,
}
_MAX_TAIL: Final = 10_000
_STATIC_DIR: Final = Path(__file__).with_name("static")
_STATIC: Final = {
    name: ((_STATIC_DIR / name).read_bytes(), media_type)
    for name, media_type in (
        ("index.html", "text/html; charset=utf-8"),
        ("app.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
    )
}
_STATIC_HEADERS: Final = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _validation_problem(exc: ValidationError, status: int = 422) -> Response:
    err = exc.errors()[0]
    field = ".".join(str(x) for x in err["loc"]) or None
    detail = "; ".join(
        (".".join(str(x) for x in e["loc"]) + ": " if e["loc"] else "") + str(e["msg"])
        for e in exc.errors()[:5]
    )
    return problem(status, "Invalid input", detail, field)


def _answer(response: DeploymentResponse, ok: int = 200, body: str | None = None) -> Response:
    # A refusal carries a code; "failed" alone is an answer (e.g. the status of a failed agent).
    if response.code is None:
        return Response(body or response.model_dump_json(), ok, media_type=JSON)
    return refusal(response, body)


def refusal(response: DeploymentResponse, body: str | None = None) -> Response:
    """A refused request as RFC 9457 ``application/problem+json`` whose members are also
    the seed's failed ``DeploymentResponse``: problem readers get ``title`` and ``detail``,
    the seed's readers ``status``, ``code`` and ``error``. (The seed's ``status`` is a
    string; RFC 9457 makes a problem's numeric ``status`` advisory, so readers skip it.)"""
    assert response.code is not None
    fields = json.loads(body) if body else response.model_dump(mode="json")
    problem = {"type": "about:blank", "title": response.message, "detail": response.error}
    return Response(
        json.dumps({**problem, **fields}),
        _STATUS_OF_CODE.get(response.code, 422),
        media_type=PROBLEM,
    )


class Api:
    """The routes, bound to one service."""

    def __init__(
        self, service: AgentService, tokens: Tokens, hub: EventHub, metrics: Metrics
    ) -> None:
        self.service = service
        self.tokens = tokens
        self.hub = hub
        self.metrics = metrics
        self.openapi = json.dumps(openapi_document()).encode()

    # -- authorization (the rules are the service's: see ``_callers``) -----------------

    def authorize(self, who: Caller, request: DeploymentRequest) -> None:
        """Refuse with 403 what *who* may not ask (the file queue asks the same rule)."""
        try:
            self.service.authorize(who, request)
        except Forbidden as exc:
            raise ApiError(403, "Forbidden", str(exc), exc.field) from None

    def operator_only(self, who: Caller) -> None:
        if not who.operator:
            raise ApiError(403, "Forbidden", "this route needs the operator token")

    # -- helpers ---------------------------------------------------------------------

    @staticmethod
    def who(request: Request) -> Caller:
        caller: Caller = request.scope["ziggie.principal"]
        return caller

    @staticmethod
    async def json_body(request: Request) -> Any:
        raw = await request.body()
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, "Malformed JSON", str(exc)) from exc

    def target(self, who: Caller, action: str, agent_id: str) -> DeploymentRequest:
        try:
            request = DeploymentRequest(
                parent_agent=who.agent_id or "api",
                action=action,  # type: ignore[arg-type]
                target_agent_id=agent_id,
            )
        except ValidationError as exc:
            raise ApiError(422, "Invalid agent id", str(exc.errors()[0]["msg"]), "id") from exc
        self.authorize(who, request)
        return request

    # -- routes ----------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return Response(json.dumps({"status": "ok", "version": __version__}), media_type=JSON)

    async def post_request(self, request: Request) -> Response:
        data = await self.json_body(request)
        try:
            wire = DeploymentRequest.model_validate(data)
        except ValidationError as exc:
            return _validation_problem(exc)
        who = self.who(request)
        self.authorize(who, wire)
        answer = await self.service.handle(wire, who)
        return Response(answer.body, 200, media_type=JSON)

    async def post_agent(self, request: Request) -> Response:
        who = self.who(request)
        data = await self.json_body(request)
        try:
            body = DeployBody.model_validate(data)
            wire = DeploymentRequest.model_validate(
                {
                    "parent_agent": body.parent_agent or who.agent_id or "api",
                    "action": "deploy_agent",
                    "agent_spec": body.agent_spec,
                    **({"request_id": body.request_id} if body.request_id else {}),
                }
            )
        except ValidationError as exc:
            return _validation_problem(exc)
        self.authorize(who, wire)
        answer = await self.service.handle(wire, who)
        response = answer.response or DeploymentResponse.model_validate_json(answer.body)
        return _answer(response, 201, answer.body)

    async def list_agents(self, request: Request) -> Response:
        wire = DeploymentRequest(parent_agent="api", action="list_agents")
        self.authorize(self.who(request), wire)
        return _answer(self.service.list(wire))

    async def get_agent(self, request: Request) -> Response:
        wire = self.target(self.who(request), "status_check", request.path_params["agent_id"])
        return _answer(self.service.status(wire))

    async def delete_agent(self, request: Request) -> Response:
        who = self.who(request)
        wire = self.target(who, "terminate_agent", request.path_params["agent_id"])
        answer = await self.service.handle(wire, who)
        response = answer.response or DeploymentResponse.model_validate_json(answer.body)
        return _answer(response, 200, answer.body)

    async def restart_agent(self, request: Request) -> Response:
        who = self.who(request)
        wire = self.target(who, "restart_agent", request.path_params["agent_id"])
        answer = await self.service.handle(wire, who)
        response = answer.response or DeploymentResponse.model_validate_json(answer.body)
        return _answer(response, 200, answer.body)

    async def tree(self, request: Request) -> Response:
        self.operator_only(self.who(request))
        return Response(json.dumps({"tree": self.service.rt.tree()}, default=str), media_type=JSON)

    async def logs(self, request: Request) -> Response:
        wire = self.target(self.who(request), "status_check", request.path_params["agent_id"])
        raw = request.query_params.get("tail", "200")
        try:
            tail = int(raw)
        except ValueError:
            raise ApiError(422, "Invalid input", "tail must be an integer", "tail") from None
        if not 0 <= tail <= _MAX_TAIL:
            raise ApiError(422, "Invalid input", f"tail must be within 0..{_MAX_TAIL}", "tail")
        assert wire.target_agent_id is not None
        row = self.service.journal.agent(wire.target_agent_id)
        if row is None:
            raise ApiError(404, "Not found", f"No agent with ID {wire.target_agent_id}", "id")
        text = _tail(row["log"], tail) if row["log"] else ""
        return Response(text, media_type="text/plain; charset=utf-8")

    async def events(self, request: Request) -> Response:
        self.operator_only(self.who(request))
        last = parse_last_event_id(
            request.headers.get("last-event-id") or request.query_params.get("last_event_id")
        )
        tail = parse_last_event_id(request.query_params.get("tail")) or 0
        return StreamingResponse(
            self.hub.stream(last, tail),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def get_metrics(self, request: Request) -> Response:
        self.operator_only(self.who(request))
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    async def get_openapi(self, request: Request) -> Response:
        return Response(self.openapi, media_type=JSON)

    async def dashboard(self, request: Request) -> Response:
        name = request.path_params.get("name", "index.html")
        found = _STATIC.get(name)
        if found is None:
            raise ApiError(404, "Not found", f"no file {name!r}")
        body, media_type = found
        return Response(body, media_type=media_type, headers=_STATIC_HEADERS)

    def routes(self) -> list[Route]:
        by_path: dict[str, dict[str, Endpoint]] = {
            # The hottest route first: the router tries them in order.
            "/v1/agents/{agent_id}": {"GET": self.get_agent, "DELETE": self.delete_agent},
            "/v1/health": {"GET": self.health},
            "/v1/requests": {"POST": self.post_request},
            "/v1/agents": {"GET": self.list_agents, "POST": self.post_agent},
            "/v1/agents/{agent_id}/restart": {"POST": self.restart_agent},
            "/v1/agents/{agent_id}/logs": {"GET": self.logs},
            "/v1/tree": {"GET": self.tree},
            "/v1/events": {"GET": self.events},
            "/metrics": {"GET": self.get_metrics},
            "/openapi.json": {"GET": self.get_openapi},
            "/": {"GET": self.dashboard},
            "/static/{name}": {"GET": self.dashboard},
        }
        # One route per path, so a 405 lists every method the path has in ``Allow``.
        return [
            Route(path, _dispatch(methods), methods=list(methods))
            for path, methods in by_path.items()
        ]


Endpoint = Callable[[Request], Awaitable[Response]]


def _dispatch(methods: dict[str, Endpoint]) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        return await methods[request.method](request)

    return endpoint


def _tail(path: str, lines: int) -> str:
    """The last *lines* lines of a log file, reading only its end."""
    if lines == 0:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            block = min(size, max(lines * 200, 4096))
            while True:
                f.seek(size - block)
                data = f.read(block)
                if data.count(b"\n") > lines or block == size:
                    break
                block = min(size, block * 4)
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:]) + ("\n" if text.endswith("\n") else "")


def create_app(
    service: AgentService,
    tokens: Tokens,
    hub: EventHub,
    metrics: Metrics,
    *,
    hosts: set[str],
    max_body: int = 1 << 20,
) -> ASGIApp:
    """The ASGI app of the API for *service*."""
    api = Api(service, tokens, hub, metrics)
    router = Router(routes=api.routes(), default=not_found)
    return Gate(
        Methods(router), tokens, metrics, hosts=hosts, max_body=max_body, tracing=service.tracing
    )
