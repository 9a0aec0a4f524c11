"""Serving the API: Hypercorn inside the coordinator's own task group, on trio or asyncio.

We bind the socket ourselves (so port 0 works the same on both backends and we know the
port before anyone can call) and accept on it ourselves, at most ``http_max_connections``
at once (:mod:`._conns`); Hypercorn serves HTTP on each connection. ``<home>/http.json``
is written once it answers; on shutdown every event stream ends first, so the open
connections finish at once instead of waiting out the graceful timeout.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket

import anyio
from anyio.abc import TaskStatus
from hypercorn.config import Config

from supervisor.protocol import HTTP_FILE, AgentSpec, write_atomic

from .._service import AgentService
from ._app import create_app
from ._auth import Tokens, load_operator_token
from ._conns import Connections
from ._metrics import Metrics
from ._stream import EventHub

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


def allowed_hosts(host: str, port: int, names: list[str]) -> set[str]:
    """The ``Host`` values the API answers (any other gets 421: DNS rebinding).

    The bound address and ``localhost``; for a loopback bind the loopback addresses; for a
    wildcard (``0.0.0.0``, ``::``) every address of this machine (read at start); and the
    operator's *names* (setting ``http_hosts``). Each bare and with ``:port``.
    """
    ip = ipaddress.ip_address(host)
    addresses = {host}
    if ip.is_loopback or ip.is_unspecified:
        addresses |= {"127.0.0.1", "::1"}
    if ip.is_unspecified:  # a "::" bind takes IPv4 too (dual stack)
        addresses |= local_addresses(v6=ip.version == 6)
    bare = {f"[{a}]" if ":" in a else a for a in addresses}
    bare |= {"localhost", *(name.lower() for name in names)}
    return bare | {f"{name}:{port}" for name in bare}


def agent_url(host: str, port: int, names: list[str]) -> str:
    """The URL agents (and ``http.json``) get: never a wildcard, which no client can use
    as a ``Host``. A wildcard bind gives the first of *names*, else loopback."""
    ip = ipaddress.ip_address(host)
    if ip.is_unspecified:
        host = names[0] if names else ("::1" if ip.version == 6 else "127.0.0.1")
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def local_addresses(*, v6: bool) -> set[str]:
    """This machine's own IPv4 addresses (and IPv6 ones if *v6*), from ``/proc``."""
    found: set[str] = set()
    try:  # IPv4: the fib_trie's "/32 host LOCAL" entries (aliases included)
        with open("/proc/net/fib_trie", encoding="ascii") as f:
            last = ""
            for line in f:
                text = line.strip()
                if text.startswith("|-- "):
                    last = text[4:]
                elif text.startswith("/32 host LOCAL") and last:
                    found.add(last)
    except OSError:
        pass
    if v6:
        try:
            with open("/proc/net/if_inet6", encoding="ascii") as f:
                for line in f:
                    found.add(str(ipaddress.IPv6Address(int(line.split()[0], 16))))
        except (OSError, ValueError, IndexError):
            pass
    if not found:  # no /proc: what the host name resolves to
        try:
            infos = socket.getaddrinfo(socket.gethostname(), None)
        except OSError:
            infos = []
        found = {str(info[4][0]) for info in infos if v6 or info[0] == socket.AF_INET}
    return found


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
        self._names = list(settings.http_hosts)
        self._max_body = settings.http_max_body
        self._read_timeout = settings.http_read_timeout
        self.connections = Connections(settings.http_max_connections)

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
        self.url = agent_url(self.host, port, self._names)
        app = create_app(
            self.service,
            self.tokens,
            self.hub,
            self.metrics,
            hosts=allowed_hosts(self.host, port, self._names),
            max_body=self._max_body,
        )
        config = Config()
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
                    await self.connections.serve(app, config, sock, stop)
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
