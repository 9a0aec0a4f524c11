"""A cgroup v2 per agent incarnation, where the host allows it: atomic kill and limits.

At first use the runtime looks for a writable cgroup2 hierarchy (from
``/proc/self/mountinfo``, never an assumed path) and makes its own cgroup under the one it
runs in: ``<mount><own>/ziggie-<token>``. Each process agent's incarnation then runs in a
child cgroup of that, joined **before exec** by a shim: ``preexec_fn`` would make CPython
fork instead of vfork (12x slower spawns, measured). The shim is ``ziggie-cgexec``
(``cgexec.c``, built by ``make``: static, no libc, one tiny exec) or, where it was not
built, ``/bin/sh`` (``echo $$ > cgroup.procs && exec "$@"``: a dynamically linked exec,
about 1.5x a bare Popen loop). A stop then ends with one write to ``cgroup.kill`` and is
verified by the ``populated 0`` notice in ``cgroup.events`` (inotify), not by a /proc
sweep. Where no such hierarchy is usable (or ``ZIGGIE_CGROUPS=off``), everything falls
back to process groups, markers and the sweep.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import anyio
import psutil

from . import _watchdog

try:  # Linux only
    from inotify_simple import INotify
    from inotify_simple import flags as _flags
except ImportError:  # pragma: no cover
    INotify = None

_SAFE = re.compile(r"[^A-Za-z0-9._-]")
#: Controllers a spec's ``limits`` maps onto, and the files they write.
LIMIT_FILES: Final = {"memory": "memory.max", "cpu": "cpu.max", "pids": "pids.max"}


class CgroupError(OSError):
    """A cgroup could not be made or used as asked (e.g. a limit's controller is missing)."""


def cgroup2_mount(mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """Where the cgroup2 hierarchy is mounted, if anywhere."""
    try:
        with open(mountinfo, encoding="utf-8") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    return left.split()[4]
    except OSError:
        return None
    return None


def own_cgroup(cgroup_file: str = "/proc/self/cgroup") -> str | None:
    """This process's cgroup in the v2 hierarchy (the ``0::`` line)."""
    try:
        with open(cgroup_file, encoding="utf-8") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        return None
    return None


@dataclass(slots=True)
class Cgroups:
    """The runtime's own cgroup, parent of every agent incarnation's."""

    path: Path
    controllers: frozenset[str]

    def child(self, name: str) -> AgentCgroup:
        path = f"{self.path}/{_SAFE.sub('_', name)}"  # strings: this is on every spawn
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o755)
        return AgentCgroup(path)


def _read(path: str) -> bytes:
    """One small kernel file, without pathlib or text layers: a stop reads several."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


class AgentCgroup:
    """One incarnation's cgroup."""

    __slots__ = ("_events", "_kill", "_procs", "path")

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._procs = f"{path}/cgroup.procs"
        self._events = f"{path}/cgroup.events"
        self._kill = f"{path}/cgroup.kill"

    def __repr__(self) -> str:
        return f"AgentCgroup({str(self.path)!r})"

    @property
    def procs_file(self) -> str:
        return self._procs

    def pids(self) -> set[int]:
        try:
            return {int(x) for x in _read(self._procs).split()}
        except OSError:
            return set()

    def populated(self) -> bool:
        """From ``cgroup.events``; a cgroup that is gone is empty, one that cannot be read
        (no fds left, say) counts as populated: empty is never assumed."""
        try:
            return b"populated 1" in _read(self._events)
        except FileNotFoundError:
            return False
        except OSError:
            return True

    def kill(self) -> None:
        """SIGKILL every process in the cgroup, atomically (forks included)."""
        with contextlib.suppress(FileNotFoundError):
            fd = os.open(self._kill, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, b"1")
            finally:
                os.close(fd)

    async def wait_empty(self, timeout: float) -> bool:  # noqa: ASYNC109 - a stop's bound
        """Until ``populated 0`` (inotify on ``cgroup.events``); False if *timeout* ran out."""
        if not self.populated():
            return True
        if INotify is None:  # pragma: no cover - inotify is what makes this event-driven
            return False
        # Pooled: closing an inotify instance costs ~0.5 ms (measured), a watch ~10 us.
        try:
            ino = _INOTIFY_POOL.pop() if _INOTIFY_POOL else INotify(nonblocking=True)
        except OSError:  # no inotify instance to be had (EMFILE): ask every 10 ms instead
            return await self._poll_empty(timeout)
        try:
            wd = ino.add_watch(self._events, _flags.MODIFY)  # before the check: no lost wake-up
        except OSError as exc:
            _INOTIFY_POOL.append(ino)
            if isinstance(exc, FileNotFoundError):  # removed: nothing can be in it
                return True
            return await self._poll_empty(timeout)  # no watch to be had (ENOSPC)
        try:
            with anyio.move_on_after(timeout):
                while self.populated():
                    await anyio.wait_readable(ino.fileno())
                    ino.read(timeout=0)
                return True
        finally:
            with contextlib.suppress(OSError):
                ino.rm_watch(wd)
            with contextlib.suppress(OSError):
                ino.read(timeout=0)  # drain, so the next user starts clean
            _INOTIFY_POOL.append(ino)
        return not self.populated()

    async def _poll_empty(self, timeout: float) -> bool:  # noqa: ASYNC109 - a stop's bound
        """:meth:`wait_empty` where inotify is out of resources: slower, never wrong."""
        with anyio.move_on_after(timeout):
            # ASYNC110: with no inotify to be had, polling is the only way left.
            while self.populated():  # noqa: ASYNC110
                await anyio.sleep(0.01)
            return True
        return not self.populated()

    def limit(self, limits: dict[str, str]) -> None:
        """Write ``memory.max``/``cpu.max``/``pids.max``; refuse a missing controller."""
        for name, value in limits.items():
            target = self.path / LIMIT_FILES[name]
            if not target.exists():
                raise CgroupError(f"limits.{name}: the {name} controller is not enabled here")
            target.write_text(value)

    def oom_killed(self) -> bool:
        try:
            text = (self.path / "memory.events").read_text()
        except OSError:
            return False
        match = re.search(r"^oom_kill (\d+)", text, re.M)
        return bool(match and int(match.group(1)) > 0)

    def cpu_seconds(self) -> float | None:
        try:
            text = (self.path / "cpu.stat").read_text()
        except OSError:
            return None
        match = re.search(r"^usage_usec (\d+)", text, re.M)
        return int(match.group(1)) / 1e6 if match else None

    def memory_bytes(self) -> int | None:
        try:
            return int((self.path / "memory.current").read_text())
        except (OSError, ValueError):
            return None

    def usage(self, also: set[int]) -> dict[str, float]:
        """``cpu.stat`` and ``memory.current`` (where the memory controller is on; else
        the RSS of its processes), and its process count, with *also* counted in."""
        pids = self.pids() | also
        mem = self.memory_bytes()
        if mem is None:
            mem = 0
            for pid in pids:
                with contextlib.suppress(psutil.Error):
                    mem += psutil.Process(pid).memory_info().rss
        cpu = self.cpu_seconds() or 0.0
        return {"cpu_seconds": round(cpu, 3), "rss_bytes": float(mem), "processes": len(pids)}

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.rmdir()


_state: dict[str, Cgroups | None] = {}
#: Idle inotify instances for :meth:`AgentCgroup.wait_empty` (one per concurrent stop).
_INOTIFY_POOL: list[Any] = []


def runtime_cgroups(token: str) -> Cgroups | None:
    """This runtime's cgroups (made at first call), or None where the host does not allow.

    ``ZIGGIE_CGROUPS=off`` forces the fallback; ``ZIGGIE_CGROUP_BASE`` names a delegated
    cgroup directory to use instead of the one this process runs in.
    """
    if token in _state:
        return _state[token]
    found: Cgroups | None = None
    if os.environ.get("ZIGGIE_CGROUPS", "auto") != "off":
        found = _open(token)
    _state[token] = found
    return found


def _open(token: str) -> Cgroups | None:
    base_env = os.environ.get("ZIGGIE_CGROUP_BASE")
    if base_env:
        base = Path(base_env)
    else:
        mount, own = cgroup2_mount(), own_cgroup()
        if mount is None or own is None:
            return None
        base = Path(mount + own.rstrip("/"))
    path = base / f"ziggie-{_SAFE.sub('_', token)}"
    try:
        path.mkdir(mode=0o755, exist_ok=True)
        if not (path / "cgroup.kill").exists():  # Linux < 5.14: no atomic kill
            path.rmdir()
            return None
        probe = path / "probe"
        probe.mkdir(exist_ok=True)
        probe.rmdir()
        controllers = frozenset((path / "cgroup.controllers").read_text().split())
    except OSError:
        return None
    atexit.register(_remove_tree, path)  # a clean exit leaves no empty cgroups behind
    return Cgroups(path, controllers)


def _remove_tree(path: Path) -> None:
    for child in sorted(path.glob("*/"), reverse=True):
        with contextlib.suppress(OSError):
            child.rmdir()
    with contextlib.suppress(OSError):
        path.rmdir()


def mechanism(token: str) -> str:
    """``"cgroup2 <path>"`` or ``"process groups + /proc sweep"``: what stops use."""
    found = runtime_cgroups(token)
    return f"cgroup2 {found.path}" if found else "process groups + /proc sweep"


_incarnations = itertools.count(1)


def stop_mechanism() -> str:
    """How this runtime stops agents: ``cgroup2 <path>`` or the process-group fallback."""
    return mechanism(_watchdog.token())


def cgroup_controllers() -> frozenset[str] | None:
    """The cgroup v2 controllers agents can be limited by here (None: no cgroups)."""
    found = runtime_cgroups(_watchdog.token())
    return None if found is None else found.controllers


def agent_cgroup(agent_id: str) -> AgentCgroup | None:
    cgs = runtime_cgroups(_watchdog.token())
    if cgs is None:
        return None
    _watchdog.watch_cgroup(str(cgs.path))  # killed whole if this runtime dies
    return cgs.child(f"{agent_id}.{next(_incarnations)}")
