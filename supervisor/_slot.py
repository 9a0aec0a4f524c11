"""The records a supervisor keeps per child: slot, incarnation, milestones, pending restart.

A running child sees them only through its :class:`ChildContext`."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

import anyio

from ._child import ChildContext, ChildInfo, ChildSpec, ChildState, RuntimeView
from ._errors import InvalidTransition, describe
from ._policy import Outcome

_TRANSITIONS: Final[dict[ChildState, frozenset[ChildState]]] = {
    ChildState.STOPPED: frozenset({ChildState.STARTING}),
    ChildState.STARTING: frozenset({ChildState.RUNNING, ChildState.STOPPED, ChildState.STOPPING}),
    ChildState.RUNNING: frozenset({ChildState.STOPPING, ChildState.STOPPED}),
    ChildState.STOPPING: frozenset({ChildState.STOPPED}),
}


class Milestone:
    """A one-shot point in a lifecycle: callbacks run synchronously when it is reached.

    Ordered start and ordered stop chain through these callbacks: the next sibling is
    started (or stopped) by the previous one's milestone, in the same scheduler batch,
    instead of waking the supervisor in between. That halves the scheduling round trips
    of a cascade while keeping OTP's strict one-at-a-time order. Callbacks are kernel
    code that must not raise: each chain routes its own errors to the task awaiting it.
    """

    __slots__ = ("_callbacks", "_event", "reached")

    def __init__(self) -> None:
        self.reached = False
        self._event: anyio.Event | None = None  # made only when someone awaits
        self._callbacks: list[Callable[[], None]] = []

    def reach(self) -> None:
        if self.reached:
            return
        self.reached = True
        if self._event is not None:
            self._event.set()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def then(self, callback: Callable[[], None]) -> None:
        if self.reached:
            callback()
        else:
            self._callbacks.append(callback)

    async def wait(self) -> None:
        if not self.reached:
            if self._event is None:
                self._event = anyio.Event()
            await self._event.wait()


class Incarnation:
    """One run of a child: its scope, milestones and outcome."""

    __slots__ = (
        "cleanup_deadline",
        "cleanup_scopes",
        "ended_at",
        "finished",
        "ignored",
        "number",
        "outcome",
        "reason",
        "scope",
        "settled",
        "started",
        "started_at",
        "stop_requested",
        "value",
    )

    def __init__(self, number: int, deadline: float, grace: float) -> None:
        self.number = number
        self.scope = anyio.CancelScope(shield=True, deadline=deadline)
        self.settled = Milestone()  # started, or ended before it could
        self.finished = Milestone()
        self.started = False
        self.ignored = False
        self.stop_requested = False
        self.value: Any = None
        self.outcome: Outcome | None = None
        self.reason: BaseException | str | None = None
        self.started_at: float | None = None
        self.ended_at: float | None = None
        # The node's own deadline is a stop too: its cleanup gets the shutdown spec's
        # grace after it, never more.
        self.cleanup_deadline = deadline + grace if deadline != math.inf else math.inf
        self.cleanup_scopes: list[anyio.CancelScope] = []

    def request_stop(self, grace: float) -> None:
        """Cancel the run and bound its cleanup to *grace* seconds from now."""
        self.stop_requested = True
        self.cleanup_deadline = min(self.cleanup_deadline, anyio.current_time() + grace)
        for scope in self.cleanup_scopes:
            scope.deadline = self.cleanup_deadline
        self.scope.cancel()


class PendingRestart:
    """A restart scheduled for a group of slots: cancellable while it stops the group's
    other members and waits out its backoff (OTP-9549)."""

    __slots__ = ("failed", "members", "scope")

    def __init__(self, failed: ChildSlot, members: list[ChildSlot]) -> None:
        self.failed = failed
        self.members = members
        self.scope = anyio.CancelScope()
        for member in members:
            member.pending = self

    def drop(self, slot: ChildSlot) -> None:
        """Take *slot* out of this restart; cancel the restart if no member is left."""
        if slot.pending is self:
            slot.pending = None
        if slot in self.members:
            self.members.remove(slot)
        if not self.members:
            self.scope.cancel()

    def cancel(self) -> None:
        for member in self.members:
            if member.pending is self:
                member.pending = None
        self.members = []
        self.scope.cancel()


class ChildSlot:
    """A child slot in a supervisor: a spec, its current incarnation, and its place."""

    __slots__ = (
        "current",
        "deciding",
        "events",
        "incarnations",
        "last_outcome",
        "last_reason",
        "parent_id",
        "path",
        "pending",
        "restarts",
        "runtime",
        "spec",
        "state",
    )

    def __init__(
        self, spec: ChildSpec, parent_path: str, parent_id: str, runtime: RuntimeView
    ) -> None:
        self.spec = spec
        self.path = f"{parent_path}/{spec.id}"
        self.parent_id = parent_id
        self.runtime = runtime
        self.events = runtime.events
        self.state = ChildState.STOPPED
        self.current: Incarnation | None = None
        self.incarnations = 0
        self.restarts = 0
        # How the latest ended incarnation ended: kept across restarts for status.
        self.last_outcome: Outcome | None = None
        self.last_reason: BaseException | str | None = None
        # The scope of a restart waiting on its backoff, cancellable.
        self.pending: PendingRestart | None = None
        # An unrequested exit queued for the supervisor's control loop, not decided on yet.
        self.deciding = False

    def move(self, new: ChildState) -> None:
        if new not in _TRANSITIONS[self.state]:
            raise InvalidTransition(f"{self.path}: {self.state} -> {new}")
        self.state = new

    @property
    def live(self) -> bool:
        return self.current is not None and not self.current.finished.reached

    def emit(self, event: str, inc: Incarnation, **fields: Any) -> None:
        """Emit *event* with this child's id, parent, level, path, incarnation and kind."""
        events = self.events
        if not events.active:
            return
        spec = self.spec
        events.emit(
            event,
            agent_id=spec.id,
            parent_id=self.parent_id,
            level=spec.level,
            path=self.path,
            incarnation=inc.number,
            kind=str(spec.kind),
            **spec.meta,
            **fields,
        )

    def context(self, inc: Incarnation) -> ChildContext:
        return ChildContext._create(self, inc)

    def info(self) -> ChildInfo:
        inc = self.current
        return ChildInfo(
            id=self.spec.id,
            path=self.path,
            state=self.state,
            kind=self.spec.kind,
            restart=self.spec.restart,
            level=self.spec.level,
            incarnation=self.incarnations,
            restarts=self.restarts,
            last_outcome=self.last_outcome,
            reason=describe(self.last_reason) or None,
            started_at=inc.started_at if inc else None,
            ended_at=inc.ended_at if inc else None,
            value=self.value(),
            restart_pending=self.deciding or self.pending is not None,
        )

    def value(self) -> Any:
        """The running incarnation's ``started()`` value, else ``None``."""
        inc = self.current
        return inc.value if inc is not None and self.state is ChildState.RUNNING else None
