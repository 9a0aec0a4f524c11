"""The API's front door, pure ASGI: Host check (421), token (401), body cap (413), and
every error as RFC 9457 problem+json (also Starlette's 404 and 405).

Pure ASGI (no BaseHTTPMiddleware): it adds no task and no copy to the hot path.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Final

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .._callers import Caller
from .._tracing import Tracing
from ._auth import Tokens
from ._metrics import Metrics
from ._models import Problem

PROBLEM: Final = "application/problem+json"
#: Not traced: a stream that lasts for hours, and scrapes.
_UNTRACED: Final = frozenset({"/v1/events", "/metrics"})
#: Served without a token: the page holds no data; every API call it makes needs one.
_PUBLIC: Final = frozenset(
    {"/v1/health", "/", "/static/index.html", "/static/app.js", "/static/style.css"}
)


class ApiError(Exception):
    """Raised by a route: answered as a problem by the gate."""

    def __init__(
        self, status: int, title: str, detail: str | None = None, field: str | None = None
    ):
        super().__init__(detail or title)
        self.problem = Problem(title=title, status=status, detail=detail, field=field)


def problem(
    status: int, title: str, detail: str | None = None, field: str | None = None
) -> Response:
    body = Problem(title=title, status=status, detail=detail, field=field)
    return Response(body.model_dump_json(exclude_none=True), status, media_type=PROBLEM)


class Gate:
    """Pure-ASGI front: Host check (421), auth (401), body cap (413), problem+json errors.

    Pure ASGI (no BaseHTTPMiddleware): it adds no task and no copy to the hot path.
    """

    def __init__(
        self,
        app: ASGIApp,
        tokens: Tokens,
        metrics: Metrics,
        *,
        hosts: set[str],
        max_body: int,
        tracing: Tracing | None = None,
    ) -> None:
        self.app = app
        #: Spans of the API's requests (None: tracing is off, and this costs one check).
        self.tracing = tracing
        self.tokens = tokens
        self.metrics = metrics
        self.hosts = hosts
        self.max_body = max_body
        self._timers: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        headers = {
            k: v for k, v in scope["headers"] if k in (b"host", b"authorization", b"content-length")
        }
        host = headers.get(b"host", b"").decode("latin-1").lower()
        if host not in self.hosts:
            await problem(421, "Misdirected request", f"host {host!r} is not served here")(
                scope, receive, send
            )
            return
        path: str = scope["path"]
        who = None
        if path not in _PUBLIC:  # a wrong method on a public path is a 405, not a 401
            auth = headers.get(b"authorization")
            who = self.tokens.who(auth.decode("latin-1") if auth else None)
            if who is None:
                response = problem(401, "Unauthorized", "a valid Bearer token is required")
                response.headers["WWW-Authenticate"] = 'Bearer realm="ziggie"'
                await response(scope, receive, send)
                return
            scope["ziggie.principal"] = who
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > self.max_body
            except ValueError:
                too_big = True
            if too_big:
                await problem(413, "Content too large", f"the limit is {self.max_body} bytes")(
                    scope, receive, send
                )
                return
        receive = _capped(receive, self.max_body)
        if self.tracing is None or who is None or path in _UNTRACED:
            await self._serve(scope, receive, send, t0)
        else:
            await self._traced(self.tracing, who, scope, receive, send, t0)

    async def _traced(
        self, tracing: Tracing, who: Caller, scope: Scope, receive: Receive, send: Send, t0: float
    ) -> None:
        """Serve within the request's span: a child of the caller's ``traceparent``
        header, else (an agent's call) of the agent's own span."""
        headers = dict(scope["headers"])
        state = headers.get(b"tracestate")
        method: str = scope["method"]
        status = 0

        async def sent(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with tracing.request(
            "http",
            who,
            method,
            traceparent=headers.get(b"traceparent", b"").decode("latin-1") or None,
            tracestate=state.decode("latin-1") if state else None,
            server=True,
        ) as span:
            await self._serve(scope, receive, sent, t0)
            route = getattr(scope.get("route"), "path", None)
            span.rename(f"{method} {route}" if route else method)
            span.set("http.request.method", method)
            span.set("http.route", route)
            span.set("url.path", scope["path"])
            span.set("http.response.status_code", status)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, t0: float) -> None:
        try:
            await self.app(scope, receive, send)
        except ApiError as exc:
            body = exc.problem.model_dump_json(exclude_none=True)
            await Response(body, exc.problem.status, media_type=PROBLEM)(scope, receive, send)
        except _TooLarge:
            await problem(413, "Content too large", f"the limit is {self.max_body} bytes")(
                scope, receive, send
            )
        except Exception as exc:  # a bug: still a problem+json answer, never a bare 500
            with contextlib.suppress(Exception):  # unless the response had already begun
                await problem(500, "Internal error", type(exc).__name__)(scope, receive, send)
        finally:
            key = (scope["method"], getattr(scope.get("route"), "path", "unmatched"))
            timer = self._timers.get(key)
            if timer is None:  # labels() takes a lock and builds a key: once per route
                timer = self._timers[key] = self.metrics.requests.labels(*key)
            timer.observe(time.perf_counter() - t0)


class _TooLarge(Exception):
    pass


def _capped(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def wrapped() -> Any:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _TooLarge
        return message

    return wrapped


async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
    await problem(404, "Not found", f"no route {scope['path']!r}")(scope, receive, send)


class Methods:
    """Turns Starlette's plain-text 405 into problem+json."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_wrapper(message: Any) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                allow = [v for k, v in message.get("headers", []) if k == b"allow"]
                response = problem(405, "Method not allowed", f"{scope['method']} {scope['path']}")
                if allow:
                    response.headers["Allow"] = allow[0].decode()
                scope["ziggie.replaced"] = True
                await response(scope, receive, send)
                return
            if scope.get("ziggie.replaced"):
                return
            await send(message)

        await self.app(scope, receive, send_wrapper)
