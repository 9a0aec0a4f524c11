"""Reading ``/proc`` directly: one pass costs ~1 ms where psutil's objects cost more.

Plus the pidfd waits that make exits awaitable without polling or PID-reuse races.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import anyio
import psutil

from ._watchdog import TOKEN_VAR, env_has

MARKER = "ZIGGIE_AGENT_ID"


@dataclass(frozen=True, slots=True)
class Stat:
    pid: int
    ppid: int
    pgid: int
    zombie: bool
    start: int = 0  #: start time in clock ticks since boot: with the pid, one process


_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def boot_ticks() -> int:
    """Now, on the clock of :attr:`Stat.start` (``CLOCK_BOOTTIME`` in clock ticks,
    truncated as the kernel does): a process started after this call has ``start >=``."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME) * _TICKS_PER_SECOND // 1_000_000_000


def read_stat(pid: int) -> Stat | None:
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except OSError:
        return None
    try:
        data = os.read(fd, 1024)
    except OSError:
        return None
    finally:
        os.close(fd)
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = data[data.rindex(b")") + 2 :].split()
    return Stat(pid, int(fields[1]), int(fields[2]), fields[0] == b"Z", int(fields[19]))


def all_stats() -> dict[int, Stat]:
    stats = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = read_stat(int(name))
            if st is not None:
                stats[st.pid] = st
    return stats


def children(pid: int) -> list[int]:
    """Direct children of *pid*, from ``/proc/<pid>/task/<tid>/children`` (cheap, but
    may miss a child forked at that very moment: a full scan verifies in the end)."""
    kids: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tids:
        try:
            fd = os.open(f"/proc/{pid}/task/{tid}/children", os.O_RDONLY)
        except OSError:
            continue
        try:
            kids.extend(int(x) for x in os.read(fd, 1 << 16).split())
        except OSError:
            pass
        finally:
            os.close(fd)
    return kids


#: Whether this kernel lists children in /proc (CONFIG_PROC_CHILDREN); else scan all /proc.
CHILD_LISTS = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def subtree(root: int) -> set[int]:
    found: set[int] = set()
    stack = [root]
    while stack:
        for kid in children(stack.pop()):
            if kid not in found:
                found.add(kid)
                stack.append(kid)
    return found


def descendants(stats: Mapping[int, Stat], root: int) -> set[int]:
    by_parent: dict[int, list[int]] = {}
    for st in stats.values():
        by_parent.setdefault(st.ppid, []).append(st.pid)
    found: set[int] = set()
    stack = [root]
    while stack:
        for kid in by_parent.get(stack.pop(), ()):
            if kid not in found:
                found.add(kid)
                stack.append(kid)
    return found


def has_marker(pid: int, agent_id: str, token: str | None = None) -> bool:
    """True if process *pid* was started with ``ZIGGIE_AGENT_ID=agent_id`` (and, given a
    *token*, ``ZIGGIE_RUNTIME=token``: the same id under another runtime is not ours)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
    except OSError:
        return False
    return env_has(env, MARKER, agent_id) and (token is None or env_has(env, TOKEN_VAR, token))


def pidfd_open(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # pragma: no cover - old kernels / other OSes
        return None


async def wait_gone(pids: Iterable[int]) -> None:
    """Wait until every pid has exited (a zombie counts as exited)."""
    fds = []
    for pid in pids:
        fd = pidfd_open(pid)
        if fd is not None:
            fds.append(fd)
    try:
        for fd in fds:
            await anyio.wait_readable(fd)
    finally:
        for fd in fds:
            os.close(fd)


def process_start_time(pid: int) -> float | None:
    """psutil's create time of *pid*, to tell a live agent from a reused pid."""
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


@dataclass(frozen=True, slots=True)
class Marked:
    """A live process carrying an agent's marker: whose it is, and which runtime's."""

    pid: int
    agent_id: str
    token: str | None  #: the ``ZIGGIE_RUNTIME`` token of the runtime that started it
    started: float | None  #: psutil's create time, to tell it from a reused pid


def _env_value(env: bytes, name: str) -> str | None:
    prefix = name.encode() + b"="
    for item in env.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix) :].decode(errors="replace")
    return None


def marked_processes(token: str | None = None) -> list[Marked]:
    """Every live process on the host that carries an agent marker (of runtime *token*).

    What a crashed runtime left behind is no longer anyone's descendant: only its markers
    say whose it was. Deciding which of these are *yours* is the caller's policy.
    """
    me = os.getpid()
    found: list[Marked] = []
    for pid, st in all_stats().items():
        if pid == me or st.zombie:
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        agent = _env_value(env, MARKER)
        if agent is None:
            continue
        owner = _env_value(env, TOKEN_VAR)
        if token is not None and owner != token:
            continue
        found.append(Marked(pid, agent, owner, process_start_time(pid)))
    return found
