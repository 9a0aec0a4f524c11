"""Being the child subreaper: orphans of our subtree re-parent to us, not to init; and
reaping them, once they are agents' members and dead (the duty that comes with it)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Final

import anyio

from ._procfs import CHILD_LISTS, Stat, all_stats, children, read_stat

_PR_SET_CHILD_SUBREAPER: Final = 36

_libc: ctypes.CDLL | None = None
_subreaper = False


def _prctl(option: int, arg: int) -> bool:
    global _libc
    if not sys.platform.startswith("linux"):
        return False
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return int(_libc.prctl(option, arg, 0, 0, 0)) == 0


def become_subreaper() -> bool:
    """Make this process the child subreaper of its descendants (Linux; idempotent).

    An explicit choice of the host, never a side effect of spawning:
    a subreaper inherits every orphan of its subtree, the host's own included. ``ziggie
    serve`` makes it by default (setting ``subreaper``). Without it, a stop still finds
    an agent's escapees by their marker and runtime token across ``/proc`` (a full scan
    instead of two child lists), but what they leave as zombies is init's to reap.
    """
    global _subreaper
    if not _subreaper:
        _subreaper = _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    return _subreaper


def is_subreaper() -> bool:
    """True once :func:`become_subreaper` succeeded in this process."""
    return _subreaper


#: Process groups of live agents, so a sweep reads the environment only of processes that
#: belong to no known agent group (the escapees), not of every descendant.
live_groups: dict[int, str] = {}
#: Every process ever seen as an agent's member, pid -> start time: only these are ours
#: to reap, so a host application's own subprocesses keep their exit statuses, also
#: when one of them gets a pid an agent's process once had.
seen_starts: dict[int, int] = {}


def remember(pids: Iterable[int], stats: Mapping[int, Stat] | None = None) -> None:
    for pid in pids:
        st = stats.get(pid) if stats is not None else read_stat(pid)
        if st is not None:
            seen_starts[pid] = st.start


def reap_orphans() -> list[int]:
    """Reap our zombie children that were agents' members (subreaper duty).

    A live agent leader is left to its own ``wait()``; so is any process we never saw as
    an agent's member (the host's own subprocesses).
    """
    me = os.getpid()
    pids = children(me) if CHILD_LISTS else [st.pid for st in all_stats().values()]
    reaped = []
    for pid in pids:
        seen = seen_starts.get(pid)
        if seen is None or pid in live_groups:
            continue
        st = read_stat(pid)
        if st is None:
            seen_starts.pop(pid, None)
            continue
        if st.start != seen:  # the pid was reused by a process we never saw start
            continue
        if st.zombie and st.ppid == me:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
                reaped.append(pid)
                seen_starts.pop(pid, None)
    return reaped


def hold(pids: Iterable[int], listed: Callable[[], set[int]]) -> dict[int, int]:
    """A pidfd for each of *pids* (zombies included), kept only where *listed* (the
    cgroup's list, read again after the opens) still names the pid: a pid that left it
    meanwhile may already belong to another process. See :func:`reap_held`."""
    held = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            held[pid] = os.pidfd_open(pid)
    if held:
        still = listed()
        for pid in [p for p in held if p not in still]:
            os.close(held.pop(pid))
    return held


async def reap_held(held: dict[int, int], *, wait: float) -> None:
    """Reap those of *held* that are our zombies, by pidfd: no pid-reuse race, and no
    ``/proc`` read. One still exiting (``populated 0`` comes a moment before the exit
    is complete) or not yet re-parented to us gets up to *wait* seconds for its pidfd;
    the others (not our children) are left be."""
    try:
        late = [fd for fd in held.values() if not _reap(fd)]
        if late and wait > 0:
            with anyio.move_on_after(wait):
                for fd in late:
                    await anyio.wait_readable(fd)  # exited (its orphans re-parented)
            for fd in late:
                _reap(fd)
    finally:
        for fd in held.values():
            os.close(fd)
        held.clear()


def _reap(fd: int) -> bool:
    """Reap the process behind pidfd *fd* if it is our zombie; False if it may still be
    ours to reap later (alive, or not yet re-parented to us)."""
    try:
        return os.waitid(os.P_PIDFD, fd, os.WEXITED | os.WNOHANG) is not None
    except ChildProcessError:
        return False
    except OSError:
        return True
