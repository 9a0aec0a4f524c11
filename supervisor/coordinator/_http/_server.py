"""Serving the API: Hypercorn inside the coordinator's own task group, on trio or asyncio.

We bind the socket ourselves (so port 0 works the same on both backends and we know the
port before anyone can call), hand it to Hypercorn as ``fd://``, write ``<home>/http.json``
once it answers, and on shutdown end every event stream first, so Hypercorn returns at
once instead of waiting out its graceful timeout.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
from typing import Any

import anyio
import sniffio
from anyio.abc import TaskStatus
from hypercorn.config import Config

from supervisor.protocol import AgentSpec, write_atomic

from .._service import AgentService
from ._app import create_app
from ._auth import Tokens, load_operator_token
from ._metrics import Metrics
from ._stream import EventHub

HTTP_FILE = "http.json"
#: How long a clean stop waits for Hypercorn to close its connections.
_STOP_SECONDS = 2.0


class HttpRefused(ValueError):
    """The API cannot be served as asked (a public address without ``--http-public``)."""


def parse_bind(bind: str, *, public: bool = False) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 as ``[::1]:PORT``); anything but loopback needs *public*."""
    host, sep, port_text = bind.rpartition(":")
    if not sep or not port_text.isdigit():
        raise HttpRefused(f"--http {bind!r}: expected HOST:PORT, e.g. 127.0.0.1:0")
    host = host.strip("[]") or "127.0.0.1"
    port = int(port_text)
    if port > 65535:
        raise HttpRefused(f"--http {bind!r}: port out of range")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        raise HttpRefused(f"--http {bind!r}: the host must be an IP address") from None
    if not loopback and not public:
        raise HttpRefused(
            f"--http {bind!r} is not a loopback address: pass --http-public to serve beyond"
            " this machine (every route but /v1/health still needs a token)"
        )
    return host, port


def _hosts(host: str, port: int) -> set[str]:
    named = f"[{host}]" if ":" in host else host
    names = {named, "localhost"}
    if ipaddress.ip_address(host).is_loopback:
        names |= {"127.0.0.1", "[::1]"}
    return names | {f"{name}:{port}" for name in names}


class HttpTransport:
    """The REST API of one coordinator; ``agent_env`` gives each agent its URL and token."""

    def __init__(self, service: AgentService, bind: str, *, public: bool = False) -> None:
        self.service = service
        settings = service.settings
        self.host, self.port = parse_bind(bind, public=public)
        self.tokens = Tokens(
            load_operator_token(service.home.root, os.environ.get("ZIGGIE_API_TOKEN"))
        )
        self.hub = EventHub(
            service.journal.path,
            retention=settings.event_retention,
            retention_bytes=settings.event_retention_bytes,
        )
        self.metrics = Metrics(service)
        self.url = ""
        self._max_body = settings.http_max_body
        self._read_timeout = settings.http_read_timeout

    @property
    def operator_token(self) -> str:
        return self.tokens._operator.decode()

    def agent_env(self, spec: AgentSpec) -> dict[str, str]:
        """``ZIGGIE_URL`` and a fresh ``ZIGGIE_AGENT_TOKEN`` for the agent being deployed."""
        if not self.url:
            return {}
        return {"ZIGGIE_URL": self.url, "ZIGGIE_AGENT_TOKEN": self.tokens.issue(spec.id)}

    async def _sample_usage(self) -> None:
        """CPU and RSS of running agents, sent to event-stream subscribers (not kept).

        Only while someone listens; the interval grows with the number of agents, so the
        sampling never costs more than a few percent of a core.
        """
        while True:
            usage = {}
            if self.hub.subscribers:
                t0 = anyio.current_time()
                usage = await self.service.usage.of_running()
                if usage:
                    self.hub.broadcast("usage", json.dumps({"agents": usage}))
                spent = anyio.current_time() - t0
                await anyio.sleep(max(_USAGE_EVERY, spent * 10))
            else:
                await anyio.sleep(_USAGE_EVERY)

    async def serve(self, *, task_status: TaskStatus[str] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``task_status.started(url)`` once it answers."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(1024)
        sock.setblocking(False)
        port = sock.getsockname()[1]
        named = f"[{self.host}]" if family == socket.AF_INET6 else self.host
        self.url = f"http://{named}:{port}"
        app = create_app(
            self.service,
            self.tokens,
            self.hub,
            self.metrics,
            hosts=_hosts(self.host, port),
            max_body=self._max_body,
        )
        config = Config()
        # Hypercorn owns (and closes) a duplicate; ours is closed below.
        config.bind = [f"fd://{os.dup(sock.fileno())}"]
        config.errorlog = None
        config.accesslog = None
        config.graceful_timeout = 1.0
        config.read_timeout = int(self._read_timeout) or None  # slow-loris: bounded reads
        # A cut-off read still waits out the keep-alive timer before the socket closes.
        config.keep_alive_timeout = min(5.0, self._read_timeout or 5.0)
        stop = anyio.Event()
        done = anyio.Event()
        server = anyio.CancelScope(shield=True)  # it stops on `stop`, not by cancellation

        async def run() -> None:
            try:
                with server:
                    await _run_hypercorn(app, config, stop.wait)
            finally:
                done.set()

        home = self.service.home.root
        events = self.service.rt.events
        try:
            with events.listen(self.hub.on_event), events.listen(self.metrics.on_event):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(run)
                    tg.start_soon(self._sample_usage)
                    write_atomic(
                        home / HTTP_FILE, json.dumps({"url": self.url, "pid": os.getpid()})
                    )
                    events.emit("http_ready", url=self.url)
                    task_status.started(self.url)
                    try:
                        await anyio.sleep_forever()
                    finally:
                        with anyio.CancelScope(shield=True):
                            # Streams end first: then Hypercorn has nothing to wait for.
                            self.hub.close()
                            stop.set()
                            with anyio.move_on_after(_STOP_SECONDS):
                                await done.wait()
                            server.cancel()  # bounded: whatever is left is cut
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(home / HTTP_FILE)
            sock.close()


_USAGE_EVERY = 2.0


async def _run_hypercorn(app: Any, config: Config, trigger: Any) -> None:
    if sniffio.current_async_library() == "trio":
        from hypercorn.trio import serve as trio_serve

        await trio_serve(app, config, shutdown_trigger=trigger)
    else:
        from hypercorn.asyncio import serve as asyncio_serve

        await asyncio_serve(app, config, shutdown_trigger=trigger)
