"""Running children: one incarnation to its end whatever escapes it, and lists of them
started and stopped strictly in order, chained through milestones.

The supervisor decides (restarts, strategies, registry); these functions only run.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import anyio

from ._child import IGNORE, ChildState
from ._errors import describe
from ._exits import EXIT_EVENTS, classify, is_host_exit
from ._policy import Outcome
from ._slot import ChildSlot, Incarnation


class Owner(Protocol):
    """What an incarnation needs from its supervisor."""

    #: The backend's cancellation class, looked up once per supervisor (a hot path).
    cancelled: type[BaseException]

    def on_exit(self, child: ChildSlot, inc: Incarnation) -> None:
        """An ended incarnation that may be restarted: it had started, was not stopped
        on request, and did not end the host."""

    def on_host_exit(self, exc: BaseException) -> None:
        """A child raised the host's ``KeyboardInterrupt``/``SystemExit``."""


async def run_incarnation(child: ChildSlot, inc: Incarnation, owner: Owner) -> None:
    """Run one incarnation; it reaches its end in a ``finally`` whatever escapes it.

    Total: errors mixed with cancellation, ``BaseException`` subclasses and
    errors raised while stopping all end the incarnation. The host's ``KeyboardInterrupt``
    or ``SystemExit`` goes to ``owner.on_host_exit`` (the supervisor stops its tree, then
    raises it), not up this task: asyncio would let it escape the loop at once, with the
    tree running. Only a cancellation that is not ours propagates from here.
    """
    ctx = child.context(inc)
    outcome = Outcome.NORMAL
    reason: BaseException | str | None = None
    reraise: BaseException | None = None
    restartable = True
    try:
        with inc.scope:
            try:
                result = await child.spec.start(ctx)
            except owner.cancelled:
                # The common stop: let our own scope swallow its cancellation.
                if not inc.scope.cancel_called:  # not ours: the host cancels this task
                    outcome, restartable = Outcome.SHUTDOWN, False
                raise
            except BaseException as exc:
                outcome, reason, reraise = classify(exc, inc.scope.cancel_called)
            else:
                if not inc.started:
                    if result is IGNORE:
                        inc.ignored = True
                    else:
                        outcome, reason = Outcome.ERROR, "returned before calling started()"
    finally:
        restartable = restartable and reraise is None
        _end(child, inc, outcome, reason, owner if restartable else None)
    if reraise is not None:
        if is_host_exit(reraise):
            owner.on_host_exit(reraise)
            return
        raise reraise


def _end(
    child: ChildSlot,
    inc: Incarnation,
    outcome: Outcome,
    reason: BaseException | str | None,
    owner: Owner | None,
) -> None:
    """Record how *inc* ended and reach its milestones. Synchronous and total."""
    try:
        if inc.stop_requested:
            if outcome is Outcome.NORMAL:
                outcome = Outcome.SHUTDOWN
        elif outcome is Outcome.NORMAL and inc.scope.cancel_called:
            outcome, reason = Outcome.TIMEOUT, "deadline passed"
        inc.outcome, inc.reason = outcome, reason
        child.last_outcome, child.last_reason = outcome, reason
        inc.ended_at = time.time()
        child.state = ChildState.STOPPED  # from any state: this is the end
        if inc.started:
            if owner is not None and not inc.stop_requested:
                owner.on_exit(child, inc)  # first: the exit's listeners see it pending
            child.emit(
                EXIT_EVENTS[outcome], inc, outcome=str(outcome), reason=describe(reason) or None
            )
    finally:
        inc.finished.reach()
        inc.settled.reach()


async def start_in_order(
    children: Iterable[ChildSlot],
    spawn: Callable[[ChildSlot], Incarnation],
    settle: Callable[[ChildSlot, Incarnation], Any],
    closing: Callable[[], bool],
) -> None:
    """Start *children* one at a time, in order; raise the first error of *settle*.

    Each child is spawned from its predecessor's ``settled`` milestone, so a long list
    starts without waking the supervisor between children. The chain never raises into
    the child whose milestone runs it: its errors go to this task.
    """
    pending = deque(children)
    done = anyio.Event()
    failure: list[Exception] = []
    current: list[tuple[ChildSlot, Incarnation]] = []

    def advance() -> None:
        try:
            if current:
                settle(*current.pop())
            if pending and not closing():
                child = pending.popleft()
                inc = spawn(child)
                current.append((child, inc))
                inc.settled.then(advance)
                return
        except Exception as exc:
            failure.append(exc)
        done.set()

    advance()
    await done.wait()
    if failure:
        raise failure[0]


async def stop_in_order(
    children: Iterable[ChildSlot], request_stop: Callable[[ChildSlot], Incarnation | None]
) -> None:
    """Stop *children* newest first, each only after the one before it is gone."""
    pending = deque(reversed(list(children)))
    done = anyio.Event()
    failure: list[Exception] = []

    def advance() -> None:
        try:
            while pending:
                inc = request_stop(pending.popleft())
                if inc is not None:
                    inc.finished.then(advance)
                    return
        except Exception as exc:
            failure.append(exc)
        done.set()

    advance()
    await done.wait()
    if failure:
        raise failure[0]


async def stop_concurrently(
    children: Iterable[ChildSlot], request_stop: Callable[[ChildSlot], Incarnation | None]
) -> None:
    """Ask every one of *children* to stop at once (newest first), then wait for all."""
    stopping: list[Incarnation] = []
    failure: list[Exception] = []
    for child in reversed(list(children)):
        try:
            inc = request_stop(child)
        except Exception as exc:
            failure.append(exc)
            continue
        if inc is not None:
            stopping.append(inc)
    for inc in stopping:
        await inc.finished.wait()
    if failure:
        raise failure[0]
