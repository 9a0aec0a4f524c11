"""Waiting for answer files: many waiters, one directory watch, no lost wake-up.

With a plain hand-over, the waiter reading the watch woke *one* other waiter when
it left, which could already be awake or about to return with its own answer; then
nobody read the watch any more and 460-730 of 1,000 concurrent calls timed out although
their answer files existed.

Here the watch has a reader role, and the invariant is kept on every path out of a wait:

    while anyone waits, either someone is reading the watch, or a waiter has been elected
    (its event set) and will, when it runs, read the watch or leave (and elect again).

- A waiter checks its files, then reads the watch itself if nobody does, else sleeps on
  its own event. The reader hands every name it reads to the waiter it belongs to.
- A reader stops reading once its own answer has been named (or it is cancelled); on
  *any* exit (answer, timeout, cancellation, error) a waiter that leaves while nobody
  reads elects the longest-waiting other waiter. An elected waiter that finds its answer
  leaves, and electing is again its exit's job: the role can never be dropped.

No background task, so a client used without ``async with`` works, on trio and asyncio,
and no task outlives the caller's. Lost inotify events (queue overflow) wake everyone,
who then look for themselves.
"""

from __future__ import annotations

import anyio

from supervisor.protocol import RESCAN, Watcher


class _Waiter:
    __slots__ = ("event", "named")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.named = False  # the reader saw this request's answer file arrive


class AnswerWaits:
    """The waiters of one client on one directory watch (one event loop at a time)."""

    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher
        self._waiters: dict[str, _Waiter] = {}  # insertion order: who waited longest
        self._reading = False

    def __len__(self) -> int:
        return len(self._waiters)

    def register(self, request_id: str) -> None:
        """Start waiting for *request_id* (before checking its files: no arrival slips)."""
        self._waiters[request_id] = _Waiter()

    async def next_change(self, request_id: str) -> None:
        """Return once *request_id*'s answer may have arrived (the caller re-checks)."""
        me = self._waiters[request_id]
        if me.named:  # named by a reader since we last looked: look again
            me.named = False
            me.event = anyio.Event()
            return
        if self._reading:
            await me.event.wait()
            me.event = anyio.Event()
            me.named = False
            return
        self._reading = True
        try:
            while not me.named:
                names = await self.watcher.wait()
                self._hand_out(names)
        finally:
            self._reading = False
        me.named = False
        me.event = anyio.Event()

    def unregister(self, request_id: str) -> None:
        """Stop waiting (answered, timed out, cancelled): never leave the watch unread."""
        self._waiters.pop(request_id, None)
        if not self._reading:
            self._elect()

    def _elect(self) -> None:
        # The longest-waiting waiter takes over the watch when it runs. If its event is set
        # already, it runs anyway (and reads, or leaves and elects in turn). O(1): this runs
        # once per answered request.
        for waiter in self._waiters.values():
            waiter.event.set()
            return

    def _hand_out(self, names: list[str]) -> None:
        waiters = self._waiters
        for name in names:
            if name == RESCAN:  # events were lost: everyone looks for itself
                for waiter in waiters.values():
                    waiter.named = True
                    waiter.event.set()
                return
            named = waiters.get(name.split(".", 1)[0])
            if named is not None:
                named.named = True
                named.event.set()
