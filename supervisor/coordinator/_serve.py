"""A coordinator: the service, recovery, and its transports, in a program or as ``serve``.

``open_coordinator`` is the embedded form (inside your own runtime); :func:`serve_home`
is what ``ziggie serve`` runs: the home's lock, a runtime, the coordinator, and a clean
stop on SIGINT/SIGTERM.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import resource
import signal
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
from anyio.abc import TaskStatus

from actors import become_subreaper, spawn_mechanism, stop_mechanism
from supervisor import Runtime, StopOrder, ZiggieError, json_events, open_runtime
from supervisor.protocol import HTTP_FILE, LOCK_NAME

if TYPE_CHECKING:
    from ._http import HttpTransport

from ._confinement import mechanism
from ._filequeue import FileQueue
from ._housekeeping import housekeeping
from ._recovery import recover_agents
from ._runners import Runner
from ._service import AgentService
from ._settings import Settings
from ._tracing import open_tracer, trace_config


class CoordinatorRunning(ZiggieError):
    """Another coordinator already serves this home."""


class HomeUnusable(ZiggieError, ValueError):
    """The home cannot be a coordinator's home (a file, or a directory we may not use)."""


def prepare_home(home: Path) -> None:
    """Create *home* (0700) if needed, or say in one line why it cannot be one."""
    if home.exists() and not home.is_dir():
        raise HomeUnusable(f"home {str(home)!r} is not a directory")
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise HomeUnusable(f"home {str(home)!r}: {exc.strerror or exc}") from None


class HttpUnavailable(ZiggieError, ValueError):
    """``http`` was asked for, but the optional HTTP extra is not installed."""


class Coordinator:
    """One home's service with its transports (today: the file queue)."""

    def __init__(
        self,
        runtime: Runtime,
        settings: Settings,
        *,
        runners: Mapping[str, Runner] | None = None,
    ) -> None:
        self.service = AgentService(runtime, settings, runners=runners)
        tracing = trace_config(settings)  # off unless asked for: then, and only then, the SDK
        #: How spans leave (``"otlp http/protobuf"``), for ``coordinator_ready``; None: off.
        self.tracing = tracing and f"{','.join(tracing.exporters)} {tracing.protocol}"
        if tracing is not None:
            self.service.tracing = open_tracer(tracing, self.service.journal)
            self.service.agent_env.append(self.service.tracing.agent_env)
        self.http: HttpTransport | None = None
        if settings.http is not None:
            try:
                from ._http import HttpTransport
            except ImportError as exc:  # the optional extra is missing
                raise HttpUnavailable(
                    "the HTTP API needs the 'http' extra: pip install 'ziggie[http]'"
                    f" ({exc.name} is missing)"
                ) from exc
            self.http = HttpTransport(self.service, settings.http, public=settings.http_public)
            self.service.agent_env.append(self.http.agent_env)
        if settings.ray is not None:
            from ._ray import RayEngine

            check_ray(settings)  # refused at once, with the extra to install, without Ray
            self.service.ray = RayEngine(settings.ray, token=self.service.token)
        self.filequeue = FileQueue(self.service)  # last: it holds a lock from now on

    @property
    def url(self) -> str | None:
        """The API's URL once it serves (None without ``http``)."""
        return self.http.url if self.http is not None and self.http.url else None

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve the API, recover, then serve the file queue, until cancelled.

        The API comes first: agents recovery restarts get its URL and a token, as any
        other agent does. Requests wait until recovery is done (no deploy can race a
        recovering id). On the way out, the agents are stopped and recorded while the
        journal is still open (issue 10, item 6): a clean stop must not read as a crash.
        """
        service = self.service
        # We hold the home's lock: an http.json there is a dead coordinator's.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(service.home.root / HTTP_FILE)
        tracing = service.tracing
        try:
            with (
                service.rt.events.listen(service.on_event),
                service.rt.events.listen(tracing.on_event) if tracing else nullcontext(),
            ):
                try:
                    if service.ray is not None:  # a head starts in seconds: off the loop
                        await anyio.to_thread.run_sync(service.ray.connect)
                        service.rt.events.emit(
                            "ray_connected", address=service.ray.cluster, asked=service.ray.address
                        )
                    async with anyio.create_task_group() as tg:
                        service.recovered = anyio.Event()
                        try:
                            if self.http is not None:
                                await tg.start(self.http.serve)
                            await recover_agents(service)
                        finally:
                            service.recovered.set()
                        await tg.start(self.filequeue.serve)
                        tg.start_soon(housekeeping, service.settings)
                        service.rt.events.emit(
                            "coordinator_ready",
                            home=str(service.home.root),
                            url=self.url,
                            stops=stop_mechanism(),  # cgroup2, or the /proc sweep (issue 15)
                            spawns=spawn_mechanism(),  # how agents join their cgroups
                            confinement=mechanism(service.settings.confinement == "best_effort"),
                            ray=service.ray.cluster if service.ray else None,
                            tracing=self.tracing,
                        )
                        task_status.started()
                finally:
                    with anyio.CancelScope(shield=True):
                        await service.shutdown()
                        if service.ray is not None:
                            await anyio.to_thread.run_sync(service.ray.close)
        finally:
            self.filequeue.close()
            if tracing is not None:  # the last spans, within a bound (never if it is down)
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(tracing.close)
            service.close()


def check_http(settings: Settings) -> None:
    """Refuse, before anything starts, an ``http`` setting that cannot be served.

    Raises :class:`HttpUnavailable` without the extra, ``ValueError`` for a bad address.
    """
    if settings.http is None:
        return
    try:
        from ._http import parse_bind
    except ImportError as exc:
        raise HttpUnavailable(
            f"the HTTP API needs the 'http' extra: pip install 'ziggie[http]' ({exc.name})"
        ) from exc
    parse_bind(settings.http, public=settings.http_public)


def check_ray(settings: Settings) -> None:
    """Refuse, before anything starts, a ``ray`` setting without the extra installed."""
    if settings.ray is not None:
        from ._ray import import_ray

        import_ray()


@asynccontextmanager
async def open_coordinator(
    runtime: Runtime,
    settings: Settings,
    *,
    runners: Mapping[str, Runner] | None = None,
) -> AsyncIterator[Coordinator]:
    """Serve a home from inside a program (the embedded default), as a block.

    ::

        async with open_runtime() as rt, open_coordinator(rt, Settings(home=h)) as coord:
            ...  # agents (and their sub-agents) deploy through h/agent-queue
    """
    # It holds the home's lock as `serve` does: clients see that a coordinator serves
    # (they fail fast otherwise, issue 11), and no second coordinator serves the home.
    prepare_home(settings.home)
    with home_lock(settings.home) as mine:
        if not mine:
            raise CoordinatorRunning(f"a coordinator is already running at {settings.home}")
        coord = Coordinator(runtime, settings, runners=runners)
        async with anyio.create_task_group() as tg:
            await tg.start(coord.serve)
            try:
                yield coord
            finally:
                tg.cancel_scope.cancel()


@contextlib.contextmanager
def home_lock(home: Path) -> Iterator[bool]:
    """Yield True if we now hold *home*'s coordinator lock (so no coordinator runs there).

    The lock file holds the holder's pid; the lock itself dies with the process.
    """
    # Never through a link: the holder truncates it to write its pid there.
    fd = os.open(home / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def serve_home(settings: Settings, *, quiet: bool = False) -> None:
    """Serve *settings.home* in the foreground until SIGINT or SIGTERM (``ziggie serve``).

    Raises :class:`CoordinatorRunning` if another coordinator holds the home,
    :class:`HomeUnusable` if the home cannot be one (a file, say).
    """
    prepare_home(settings.home)
    with home_lock(settings.home) as mine:
        if not mine:
            raise CoordinatorRunning(f"a coordinator is already running at {settings.home}")
        if settings.subreaper:
            # Issue 10, item 7: an explicit choice of ``serve`` (setting ``subreaper``), so
            # agents' escapees re-parent to us; never a side effect of the first spawn.
            become_subreaper()
        raise_descriptor_limit()
        anyio.run(_serve, settings, quiet, backend="trio")


def raise_descriptor_limit() -> int:
    """Raise this process's soft ``RLIMIT_NOFILE`` to its hard limit; the new soft limit.

    The default soft limit (often 1024) is a guard for ``select()``, which nothing here
    uses; every connection, agent log, pipe and pidfd takes a descriptor, and a spawn
    that finds none left must not be the first sign. ``serve`` does it at start (an
    embedding program decides for itself); agents inherit the raised limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def _serve(settings: Settings, quiet: bool) -> None:
    events_file = settings.home / "events.jsonl"
    # Rotated by size as it is written (events_max_bytes), never left to grow until the
    # next prune.
    targets = (events_file,) if quiet else (sys.stderr, events_file)
    events = json_events(*targets, max_bytes=settings.events_max_bytes)
    # Agents are independent of each other: on exit all stop at once, each subtree first.
    async with open_runtime("ziggie", events=events, stop_order=StopOrder.CONCURRENT) as rt:
        coordinator = Coordinator(rt, settings)
        async with anyio.create_task_group() as tg:
            await tg.start(coordinator.serve)
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    events.emit("shutdown_requested", signal=signal.Signals(signum).name)
                    tg.cancel_scope.cancel()
                    break
    # Leaving open_runtime stopped every agent, children first, verified empty.
    events.emit("coordinator_stopped")
