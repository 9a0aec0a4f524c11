"""Waiting on events, not on the clock: files watched with inotify, runtime events listened to.

Issue 11: no ``sleep`` as synchronisation and no ``while: sleep(0.01)`` polling in tests.
A condition on files is re-checked each time inotify reports a change in its directory;
a condition on the runtime each time the runtime emits an event.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
from inotify_simple import INotify
from inotify_simple import flags as iflags

_CHANGES = (
    iflags.CREATE
    | iflags.MODIFY
    | iflags.CLOSE_WRITE
    | iflags.MOVED_TO
    | iflags.MOVED_FROM
    | iflags.DELETE
    | iflags.ATTRIB
)


async def until_files(
    directories: list[Path], condition: Callable[[], bool], timeout: float = 20
) -> None:
    """Return once *condition()* holds, looking again at every change in *directories*."""
    with INotify(nonblocking=True) as ino:
        for directory in directories:
            ino.add_watch(os.fspath(directory), _CHANGES)
        with anyio.fail_after(timeout):
            while not condition():  # checked after the watch exists: no change slips by
                await anyio.wait_readable(ino.fileno())
                ino.read(timeout=0)


def until_files_sync(
    directories: list[Path], condition: Callable[[], bool], timeout: float = 60, what: str = ""
) -> None:
    """:func:`until_files` for code without an event loop (a blocking inotify read)."""
    import time

    deadline = time.monotonic() + timeout
    with INotify() as ino:
        for directory in directories:
            ino.add_watch(os.fspath(directory), _CHANGES)
        while not condition():
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {what or 'a condition'}"
            ino.read(timeout=int(left * 1000) + 1)


def until_gone_sync(
    pids: list[int], timeout: float = 20, what: str = "", *, strict: bool = True
) -> None:
    """Until every process of *pids* has ended: a pidfd per process (any process, not only
    our children) becomes readable when it terminates. Not *strict*: give up silently."""
    import select
    import time

    deadline = time.monotonic() + timeout
    fds = []
    try:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):  # gone already
                fds.append(os.pidfd_open(pid))
        for fd in fds:
            left = max(deadline - time.monotonic(), 0)
            ready, _, _ = select.select([fd], [], [], left)
            if not ready and not strict:
                return
            assert ready, f"timed out waiting for {what or 'processes to end'}"
    finally:
        for fd in fds:
            os.close(fd)


async def until_text(path: Path, condition: Callable[[str], bool], timeout: float = 20) -> str:
    """The text of *path* once *condition(text)* holds (the file may not exist yet)."""
    found: list[str] = []

    def check() -> bool:
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            return False
        found[:] = [text]
        return condition(text)

    await until_files([path.parent], check, timeout)
    return found[0]


class EventWaits:
    """The runtime's events as they happen; ``await waits.until(predicate)``."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self._changed = anyio.Event()

    def __call__(self, name: str, fields: dict[str, Any]) -> None:
        self.seen.append((name, fields))
        self._changed.set()
        self._changed = anyio.Event()

    async def until(self, condition: Callable[[], bool], timeout: float = 20) -> None:
        with anyio.fail_after(timeout):
            while not condition():
                await self._changed.wait()

    async def event(self, name: str, agent_id: str, timeout: float = 20) -> dict[str, Any]:
        """The first event *name* of *agent_id* (already seen, or the next one)."""

        def found() -> dict[str, Any] | None:
            for seen_name, fields in self.seen:
                if seen_name == name and fields.get("agent_id") == agent_id:
                    return fields
            return None

        await self.until(lambda: found() is not None, timeout)
        result = found()
        assert result is not None
        return result


@contextmanager
def event_waits(rt: Any) -> Iterator[EventWaits]:
    """Listen to *rt*'s events for the block."""
    waits = EventWaits()
    with rt.events.listen(waits):
        yield waits
