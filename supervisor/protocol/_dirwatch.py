"""Files arriving in a directory: inotify awaited directly by the event loop, or polling.

The inotify fd is awaited with ``anyio.wait_readable``, with no thread hop (measured for the issue:
0.32 ms round trips, against 2.5-4 ms through ``watchfiles``). Where inotify is missing
(another OS, an exhausted watch limit) a polling watcher keeps the same interface.
"""

from __future__ import annotations

import os
from typing import Protocol

import anyio

try:  # Linux only
    from inotify_simple import INotify
    from inotify_simple import flags as _flags
except ImportError:  # pragma: no cover
    INotify = None

RESCAN = "*"
"""A name that means: events were lost (queue overflow), look at the whole directory."""


class Watcher(Protocol):
    async def wait(self) -> list[str]:
        """Wait until at least one file arrived; their names (or ``[RESCAN]``)."""
        ...

    def close(self) -> None: ...


class InotifyWatcher:
    """Reports files closed after writing in place, or renamed in (atomic writers)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        assert INotify is not None
        self._inotify = INotify(nonblocking=True)
        mask = _flags.CLOSE_WRITE | _flags.MOVED_TO | _flags.Q_OVERFLOW
        self._inotify.add_watch(os.fspath(directory), mask)

    async def wait(self) -> list[str]:
        while True:
            events = self._inotify.read(timeout=0)
            if events:
                if any(e.mask & _flags.Q_OVERFLOW for e in events):
                    return [RESCAN]
                return [e.name for e in events if e.name]
            await anyio.wait_readable(self._inotify.fileno())

    def close(self) -> None:
        self._inotify.close()


class PollingWatcher:
    """The fallback: compares directory listings every *interval* seconds."""

    def __init__(self, directory: str | os.PathLike[str], interval: float = 0.05) -> None:
        self._dir = directory
        self._interval = interval
        self._known = set(os.listdir(directory))

    async def wait(self) -> list[str]:
        while True:
            await anyio.sleep(self._interval)
            now = set(os.listdir(self._dir))
            new, self._known = now - self._known, now
            if new:
                return sorted(new)

    def close(self) -> None:
        pass


def watch_directory(directory: str | os.PathLike[str], *, polling: bool = False) -> Watcher:
    """The best watcher this system offers for *directory*."""
    if not polling and INotify is not None:
        try:
            return InotifyWatcher(directory)
        except OSError:  # pragma: no cover - e.g. fs.inotify.max_user_watches reached
            pass
    return PollingWatcher(directory)
