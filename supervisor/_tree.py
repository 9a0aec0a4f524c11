"""The supervisor node: a task group per node, ordered start, restart loop, ordered shutdown.

Each child incarnation runs in its own *shielded* cancel scope inside the node's task
group. Shielding means cancellation from above never reaches a child directly: when a
node stops (terminated, timed out, or escalating) it stops its children itself, in reverse
start order, each to its shutdown spec, and only then unwinds. That gives OTP's ordering
("children first, newest first") on top of structured concurrency, which would otherwise
cancel every task of a group at the same instant.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, Protocol, TypedDict, Unpack

import anyio
from anyio.abc import TaskGroup

from ._errors import (
    AlreadyPresent,
    AlreadyStarted,
    InvalidTransition,
    MaxChildren,
    NotFound,
    RestartIntensityExceeded,
    Running,
    StartError,
    SupervisorClosed,
    describe,
)
from ._ids import validate_id
from ._policy import (
    AutoShutdown,
    Backoff,
    Intensity,
    Outcome,
    Restart,
    Shutdown,
    Strategy,
    should_restart,
)

if TYPE_CHECKING:
    from ._runtime import Runtime


class _Ignore:
    __slots__ = ()

    def __repr__(self) -> str:
        return "IGNORE"


#: Return this from a start function, before calling ``ctx.started()``, to decline to start
#: (OTP's ``ignore``): the spec is kept, nothing runs, and the start of siblings goes on.
IGNORE: Final = _Ignore()

StartFn = Callable[["ChildContext"], Awaitable[Any]]

_EXIT_EVENTS: Final = {
    Outcome.NORMAL: "exited",
    Outcome.ERROR: "exited",
    Outcome.SHUTDOWN: "terminated",
    Outcome.TIMEOUT: "timed_out",
}


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """What to run under a supervisor, and how to treat it when it exits.

    *start* is ``async def start(ctx: ChildContext)``: it calls ``ctx.started(value)``
    once it is up (the value is what :meth:`Runtime.whereis` returns), then runs until
    done. Returning is a normal exit, raising an abnormal one.
    """

    id: str
    start: StartFn
    restart: Restart = Restart.PERMANENT
    shutdown: Shutdown = Shutdown(5.0)
    timeout: float | None = None  #: seconds from each start to the node's deadline
    significant: bool = False
    kind: str = "worker"  #: "worker" or "supervisor", as OTP's ``type``
    level: str | None = None  #: L1/L2/L3 where the child is an agent
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_id(self.id, "child id")
        object.__setattr__(self, "restart", Restart(self.restart))
        object.__setattr__(self, "shutdown", Shutdown.parse(self.shutdown))
        if self.significant and self.restart is Restart.PERMANENT:
            raise ValueError("a significant child must be transient or temporary (as in OTP)")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("timeout must be > 0 seconds")


class SpecOptions(TypedDict, total=False):
    """The keyword options every child-spec builder passes through to :class:`ChildSpec`."""

    restart: Restart
    shutdown: Shutdown
    timeout: float | None
    significant: bool
    level: str | None


class ChildState(StrEnum):
    """Lifecycle of a child slot; transitions are guarded by :data:`_TRANSITIONS`."""

    STOPPED = "stopped"  #: spec present, nothing running (never started, ignored, ended)
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"


_TRANSITIONS: Final[dict[ChildState, frozenset[ChildState]]] = {
    ChildState.STOPPED: frozenset({ChildState.STARTING}),
    ChildState.STARTING: frozenset({ChildState.RUNNING, ChildState.STOPPED, ChildState.STOPPING}),
    ChildState.RUNNING: frozenset({ChildState.STOPPING, ChildState.STOPPED}),
    ChildState.STOPPING: frozenset({ChildState.STOPPED}),
}


@dataclass(frozen=True, slots=True)
class ChildInfo:
    """A snapshot of one child, as ``which_children`` reports it."""

    id: str
    path: str
    state: ChildState
    kind: str
    restart: Restart
    level: str | None
    incarnation: int
    restarts: int
    outcome: Outcome | None  #: how the latest ended incarnation ended
    reason: str | None
    started_at: float | None  #: wall clock (``time.time()``)
    ended_at: float | None
    value: Any


@dataclass(frozen=True, slots=True)
class ChildCounts:
    """``count_children``: OTP's specs/active/supervisors/workers."""

    specs: int
    active: int
    supervisors: int
    workers: int


class _Milestone:
    """A one-shot point in a lifecycle: callbacks run synchronously when it is reached.

    Ordered start and ordered stop chain through these callbacks: the next sibling is
    started (or stopped) by the previous one's milestone, in the same scheduler batch,
    instead of waking the supervisor in between. That halves the scheduling round trips
    of a cascade while keeping OTP's strict one-at-a-time order.
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


class _Incarnation:
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

    def __init__(self, number: int, deadline: float) -> None:
        self.number = number
        self.scope = anyio.CancelScope(shield=True, deadline=deadline)
        self.settled = _Milestone()  # started, or ended before it could
        self.finished = _Milestone()
        self.started = False
        self.ignored = False
        self.stop_requested = False
        self.value: Any = None
        self.outcome: Outcome | None = None
        self.reason: BaseException | str | None = None
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.cleanup_deadline = math.inf
        self.cleanup_scopes: list[anyio.CancelScope] = []


class _Child:
    """A child slot in a supervisor: a spec and its current incarnation."""

    __slots__ = (
        "current",
        "incarnations",
        "last_outcome",
        "last_reason",
        "path",
        "restarts",
        "spec",
        "state",
    )

    def __init__(self, spec: ChildSpec, path: str) -> None:
        self.spec = spec
        self.path = path
        self.state = ChildState.STOPPED
        self.current: _Incarnation | None = None
        self.incarnations = 0
        self.restarts = 0
        # How the latest ended incarnation ended: kept across restarts for status.
        self.last_outcome: Outcome | None = None
        self.last_reason: BaseException | str | None = None

    def move(self, new: ChildState) -> None:
        if new not in _TRANSITIONS[self.state]:
            raise InvalidTransition(f"{self.path}: {self.state} -> {new}")
        self.state = new

    @property
    def live(self) -> bool:
        return self.current is not None and not self.current.finished.reached

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
            outcome=self.last_outcome,
            reason=describe(self.last_reason) or None,
            started_at=inc.started_at if inc else None,
            ended_at=inc.ended_at if inc else None,
            value=inc.value if inc and self.state is ChildState.RUNNING else None,
        )


class NodeContext(Protocol):
    """What a supervisor needs to know about the node it serves."""

    @property
    def id(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def level(self) -> str | None: ...
    @property
    def runtime(self) -> Runtime: ...


class ChildContext:
    """Handed to a child's start function: who it is, and how to report and clean up."""

    __slots__ = ("_child", "_inc", "supervisor")

    def __init__(self, supervisor: Supervisor, child: _Child, inc: _Incarnation) -> None:
        self.supervisor = supervisor
        self._child = child
        self._inc = inc

    @property
    def id(self) -> str:
        return self._child.spec.id

    @property
    def path(self) -> str:
        return self._child.path

    @property
    def level(self) -> str | None:
        return self._child.spec.level

    @property
    def spec(self) -> ChildSpec:
        return self._child.spec

    @property
    def incarnation(self) -> int:
        return self._inc.number

    @property
    def runtime(self) -> Runtime:
        return self.supervisor.runtime

    @property
    def parent_id(self) -> str:
        return self.supervisor.id

    @property
    def deadline(self) -> float:
        """The node's deadline on the runtime clock (``inf`` for none)."""
        return self._inc.scope.deadline

    @property
    def shutdown(self) -> Shutdown:
        return self._child.spec.shutdown

    @property
    def stop_requested(self) -> bool:
        return self._inc.stop_requested

    def emit(self, event: str, **fields: Any) -> None:
        """Emit a lifecycle event carrying this child's id, parent, level, path, incarnation."""
        self.supervisor._emit(event, self._child, self._inc, **fields)

    def started(self, value: Any = None) -> None:
        """Report that the child is up; its supervisor's ``start`` returns *value*."""
        inc = self._inc
        if inc.started:
            raise RuntimeError(f"{self.path}: started() called twice")
        inc.started = True
        inc.value = value
        inc.started_at = time.time()
        if self._child.state is ChildState.STARTING:  # not when a stop came first
            self._child.move(ChildState.RUNNING)
        self.supervisor._emit("started", self._child, inc)
        inc.settled.reach()

    def shielded(self) -> anyio.CancelScope:
        """A shielded scope for cleanup, cut off when the shutdown spec's grace runs out.

        Use it around cleanup that must run after cancellation::

            try:
                ...
            finally:
                with ctx.shielded():
                    await release()
        """
        scope = anyio.CancelScope(shield=True, deadline=self._inc.cleanup_deadline)
        self._inc.cleanup_scopes.append(scope)
        return scope


def _restart_group(strategy: Strategy, children: list[_Child], failed: _Child) -> list[_Child]:
    if strategy is Strategy.ONE_FOR_ONE:
        return [failed]
    if strategy is Strategy.ONE_FOR_ALL:
        return list(children)
    return children[children.index(failed) :]


class Supervisor:
    """A supervisor node. Create one with :func:`open_supervisor` or :func:`supervisor_spec`."""

    def __init__(
        self,
        node: NodeContext,
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        backoff: Backoff | None = None,
        auto_shutdown: AutoShutdown = AutoShutdown.NEVER,
        max_children: int | None = None,
    ) -> None:
        self.id = node.id
        self.path = node.path
        self.level = node.level
        self.runtime = node.runtime
        self.strategy = Strategy(strategy)
        self.intensity = Intensity(max_restarts, max_seconds)
        self.backoff = backoff
        self.auto_shutdown = AutoShutdown(auto_shutdown)
        self.max_children = max_children
        self._children: list[_Child] = []
        self._by_id: dict[str, _Child] = {}
        self._lock = anyio.Lock()
        self._tg: TaskGroup | None = None
        self._exits_tx, self._exits_rx = anyio.create_memory_object_stream[
            tuple[_Child, _Incarnation]
        ](math.inf)
        self._control = anyio.CancelScope()
        self._closing = False
        self._stopped = anyio.Event()

    # -- public API (OTP's supervisor functions) ---------------------------------------

    async def start_child(self, spec: ChildSpec) -> Any:
        """Add *spec* and start it; return its ``started()`` value (``IGNORE`` if ignored)."""
        async with self._lock:
            self._check_open(spec.id)
            existing = self._by_id.get(spec.id)
            if existing is not None:
                raise (AlreadyStarted if existing.live else AlreadyPresent)(spec.id)
            if self.max_children is not None and self._active() >= self.max_children:
                raise MaxChildren(
                    spec.id, f"max_children ({self.max_children}) reached under {self.path!r}"
                )
            child = self._add(spec)
            try:
                return await self._start(child)
            except StartError:
                self._remove(child)
                raise

    async def terminate_child(self, child_id: str) -> None:
        """Stop a child (its subtree first); a temporary child's spec is deleted too.

        The supervisor stays available while the child drains: other calls are not held
        up by a slow shutdown (an agent may take its whole grace period).
        """
        async with self._lock:
            child = self._get(child_id)
            inc = self._request_stop(child)
        if inc is not None:
            await inc.finished.wait()
        async with self._lock:
            if child.spec.restart is Restart.TEMPORARY and not child.live:
                self._remove(child)

    async def restart_child(self, child_id: str, *, stop_first: bool = False) -> Any:
        """Start a stopped child again; returns its ``started()`` value.

        A running child is refused (:class:`Running`), as in OTP, unless *stop_first*:
        then it is stopped (its subtree first) and started afresh, spec kept.
        """
        async with self._lock:
            self._check_open(child_id)
            child = self._get(child_id)
            if child.live:
                if not stop_first:
                    raise Running(child_id, f"child {child_id!r} is running")
                await self._stop(child)
            child.restarts += 1
            result = await self._start(child)
            assert child.current is not None
            self._emit("restarted", child, child.current, restarts=child.restarts)
            return result

    async def delete_child(self, child_id: str) -> None:
        """Forget a stopped child's spec."""
        async with self._lock:
            child = self._get(child_id)
            if child.live:
                raise Running(child_id, f"child {child_id!r} is running")
            self._remove(child)

    def which_children(self) -> list[ChildInfo]:
        """Snapshots of every child, in start order."""
        return [c.info() for c in self._children]

    def count_children(self) -> ChildCounts:
        sup = sum(1 for c in self._children if c.spec.kind == "supervisor")
        return ChildCounts(
            specs=len(self._children),
            active=self._active(),
            supervisors=sup,
            workers=len(self._children) - sup,
        )

    def child(self, child_id: str) -> ChildInfo:
        return self._get(child_id).info()

    @property
    def closing(self) -> bool:
        return self._closing

    # -- internals -------------------------------------------------------------------

    def _active(self) -> int:
        return sum(1 for c in self._children if c.live)

    def _check_open(self, child_id: str) -> None:
        if self._closing:
            raise SupervisorClosed(child_id, f"supervisor {self.path!r} is shutting down")

    def _get(self, child_id: str) -> _Child:
        child = self._by_id.get(child_id)
        if child is None:
            raise NotFound(child_id, f"no child {child_id!r} under {self.path!r}")
        return child

    def _add(self, spec: ChildSpec) -> _Child:
        child = _Child(spec, f"{self.path}/{spec.id}")
        self.runtime._register(child, self)
        self._children.append(child)
        self._by_id[spec.id] = child
        return child

    def _remove(self, child: _Child) -> None:
        if self._by_id.get(child.spec.id) is child:
            del self._by_id[child.spec.id]
            self._children.remove(child)
            self.runtime._unregister(child)

    def _emit(self, event: str, child: _Child, inc: _Incarnation, **fields: Any) -> None:
        events = self.runtime.events
        if not (events.enabled or events._listeners):
            return
        spec = child.spec
        events.emit(
            event,
            agent_id=spec.id,
            parent_id=self.id,
            level=spec.level,
            path=child.path,
            incarnation=inc.number,
            kind=spec.kind,
            **spec.meta,
            **fields,
        )

    def _spawn(self, child: _Child) -> _Incarnation:
        """Schedule a new incarnation of *child* (synchronous: chains call it)."""
        assert self._tg is not None
        child.move(ChildState.STARTING)
        child.incarnations += 1
        timeout = child.spec.timeout
        deadline = math.inf if timeout is None else anyio.current_time() + timeout
        inc = _Incarnation(child.incarnations, deadline)
        child.current = inc
        self._tg.start_soon(self._run, child, inc, name=child.path)
        return inc

    def _settle(self, child: _Child, inc: _Incarnation) -> Any:
        """The result of a settled start: its value, ``IGNORE``, or :class:`StartError`."""
        if inc.ignored:
            self._emit("ignored", child, inc)
            return IGNORE
        if not inc.started:
            self._emit("start_failed", child, inc, reason=describe(inc.reason))
            raise StartError(child.spec.id, inc.reason or "exited before it started")
        return inc.value

    async def _start(self, child: _Child) -> Any:
        """Run a new incarnation and wait until it reports started (or fails to)."""
        inc = self._spawn(child)
        await inc.settled.wait()
        return self._settle(child, inc)

    async def _start_all(self, children: Iterable[_Child]) -> None:
        """Start *children* one at a time, in order; raise the first :class:`StartError`.

        Each child is spawned from its predecessor's ``settled`` milestone, so a long list
        starts without waking the supervisor between children.
        """
        pending = deque(children)
        done = anyio.Event()
        failure: list[StartError] = []
        current: list[tuple[_Child, _Incarnation]] = []

        def advance() -> None:
            if current:
                try:
                    self._settle(*current.pop())
                except StartError as exc:
                    failure.append(exc)
                    pending.clear()
            if not pending or self._closing:
                done.set()
                return
            child = pending.popleft()
            inc = self._spawn(child)
            current.append((child, inc))
            inc.settled.then(advance)

        advance()
        await done.wait()
        if failure:
            raise failure[0]

    async def _run(self, child: _Child, inc: _Incarnation) -> None:
        ctx = ChildContext(self, child, inc)
        outcome = Outcome.NORMAL
        reason: BaseException | str | None = None
        with inc.scope:
            try:
                result = await child.spec.start(ctx)
            except Exception as exc:
                outcome, reason = Outcome.ERROR, exc
            else:
                if not inc.started:
                    if result is IGNORE:
                        inc.ignored = True
                    else:
                        outcome, reason = Outcome.ERROR, "returned before calling started()"
        # Only synchronous code from here: the task may sit in a cancelled scope.
        if inc.stop_requested:
            if outcome is Outcome.NORMAL:
                outcome = Outcome.SHUTDOWN
        elif outcome is Outcome.NORMAL and inc.scope.cancel_called:
            outcome, reason = Outcome.TIMEOUT, "deadline passed"
        inc.outcome, inc.reason = outcome, reason
        child.last_outcome, child.last_reason = outcome, reason
        inc.ended_at = time.time()
        child.move(ChildState.STOPPED)
        if inc.started:
            self._emit(
                _EXIT_EVENTS[outcome],
                child,
                inc,
                outcome=str(outcome),
                reason=describe(reason) or None,
            )
            if not inc.stop_requested:
                self._exits_tx.send_nowait((child, inc))
        inc.finished.reach()
        inc.settled.reach()

    def _request_stop(self, child: _Child) -> _Incarnation | None:
        """Cancel the current incarnation to its shutdown spec; None if nothing runs."""
        inc = child.current
        if inc is None or inc.finished.reached:
            return None
        if not inc.stop_requested:
            inc.stop_requested = True
            grace = child.spec.shutdown.grace
            inc.cleanup_deadline = anyio.current_time() + grace
            for scope in inc.cleanup_scopes:
                scope.deadline = inc.cleanup_deadline
            child.move(ChildState.STOPPING)
            self._emit("stop_requested", child, inc, shutdown=str(child.spec.shutdown))
            inc.scope.cancel()
        return inc

    async def _stop(self, child: _Child) -> None:
        """Stop the current incarnation and wait until it is gone (its subtree first)."""
        inc = self._request_stop(child)
        if inc is not None:
            await inc.finished.wait()

    async def _stop_all(self, children: Iterable[_Child]) -> None:
        """Stop *children* newest first, each only after the one before it is gone."""
        pending = deque(reversed(list(children)))
        done = anyio.Event()

        def advance() -> None:
            while pending:
                inc = self._request_stop(pending.popleft())
                if inc is not None:
                    inc.finished.then(advance)
                    return
            done.set()

        advance()
        await done.wait()

    async def _control_loop(self) -> None:
        with self._control:
            async for child, inc in self._exits_rx:
                if child.current is not inc or self._closing:
                    continue
                async with self._lock:
                    if child.current is not inc or self._closing:
                        continue
                    await self._handle_exit(child, inc)
                if self._auto_shutdown_due(child):
                    self.runtime.events.emit("auto_shutdown", agent_id=self.id, path=self.path)
                    self._closing = True
                    assert self._tg is not None
                    self._tg.cancel_scope.cancel()
                    return

    def _auto_shutdown_due(self, exited: _Child) -> bool:
        if self.auto_shutdown is AutoShutdown.NEVER or not exited.spec.significant:
            return False
        if exited.live:  # it was restarted
            return False
        if self.auto_shutdown is AutoShutdown.ANY_SIGNIFICANT:
            return True
        return not any(c.live for c in self._children if c.spec.significant)

    async def _handle_exit(self, child: _Child, inc: _Incarnation) -> None:
        assert inc.outcome is not None
        if not should_restart(child.spec.restart, inc.outcome):
            if child.spec.restart is Restart.TEMPORARY:
                self._remove(child)
            return
        failed = child
        reason = inc.reason
        while True:
            if self.intensity.record(anyio.current_time()):
                self.runtime.events.emit(
                    "escalated",
                    agent_id=self.id,
                    path=self.path,
                    level=self.level,
                    child_id=failed.spec.id,
                    reason=describe(reason),
                    max_restarts=self.intensity.max_restarts,
                    max_seconds=self.intensity.max_seconds,
                )
                raise RestartIntensityExceeded(
                    self.path,
                    failed.spec.id,
                    self.intensity.max_restarts,
                    self.intensity.max_seconds,
                ) from (reason if isinstance(reason, BaseException) else None)
            if self.backoff is not None:
                await anyio.sleep(self.backoff.delay(self.intensity.recent))
            group = _restart_group(self.strategy, self._children, failed)
            await self._stop_all(c for c in group if c is not failed)
            for member in group:
                if member is not failed and member.spec.restart is Restart.TEMPORARY:
                    # OTP: a temporary sibling is never restarted, only deleted.
                    self._remove(member)
            group = [m for m in group if m.spec.id in self._by_id]
            try:
                for member in group:
                    member.restarts += 1
                await self._start_all(group)
                for member in group:
                    assert member.current is not None
                    self._emit("restarted", member, member.current, restarts=member.restarts)
                return
            except StartError as exc:
                # A failed restart is another crash, counted against the intensity
                # (OTP's try_again); what did start of the group is stopped first.
                reason = exc
                await self._stop_all(c for c in group if c.live)

    async def _shutdown(self) -> None:
        """Stop every child, newest first, until none is left (shielded by the caller)."""
        self._closing = True
        self._control.cancel()
        while live := [c for c in self._children if c.live]:
            await self._stop_all(live)
        # The subtree is gone with this node: a restart of the node builds it anew.
        for child in self._children:
            self.runtime._unregister(child)
        self._exits_tx.close()
        self._exits_rx.close()
        self._stopped.set()

    async def wait_stopped(self) -> None:
        """Return once this supervisor has stopped all its children for good."""
        await self._stopped.wait()


@asynccontextmanager
async def open_supervisor(
    node: NodeContext,
    children: Iterable[ChildSpec] = (),
    *,
    strategy: Strategy = Strategy.ONE_FOR_ONE,
    max_restarts: int = 3,
    max_seconds: float = 5.0,
    backoff: Backoff | None = None,
    auto_shutdown: AutoShutdown = AutoShutdown.NEVER,
    max_children: int | None = None,
) -> AsyncIterator[Supervisor]:
    """Run a supervisor for the node *node* (usually the ``ctx`` of a child) as a block.

    Children start in order, each awaited until started; if one fails the ones before it
    are stopped and :class:`StartError` says which failed. Leaving the block stops every
    child, newest first. Exceeding the restart intensity cancels the block and raises
    :class:`RestartIntensityExceeded` (inside an exception group) to the node's parent.
    """
    sup = Supervisor(
        node,
        strategy=strategy,
        max_restarts=max_restarts,
        max_seconds=max_seconds,
        backoff=backoff,
        auto_shutdown=auto_shutdown,
        max_children=max_children,
    )
    async with anyio.create_task_group() as tg:
        sup._tg = tg
        try:
            await sup._start_all([sup._add(spec) for spec in children])
            tg.start_soon(sup._control_loop, name=f"{sup.path}:control")
            yield sup
        finally:
            with anyio.CancelScope(shield=True):
                await sup._shutdown()


def supervisor_spec(
    id: str,
    children: Iterable[ChildSpec] = (),
    *,
    strategy: Strategy = Strategy.ONE_FOR_ONE,
    max_restarts: int = 3,
    max_seconds: float = 5.0,
    backoff: Backoff | None = None,
    auto_shutdown: AutoShutdown = AutoShutdown.NEVER,
    max_children: int | None = None,
    **options: Unpack[SpecOptions],
) -> ChildSpec:
    """A child spec whose child is a supervisor over *children*; its value is the node.

    Its shutdown defaults to ``Shutdown.INFINITY`` (OTP's default for supervisors): it
    takes as long as its children's own shutdown specs allow.
    """
    specs = tuple(children)
    options.setdefault("shutdown", Shutdown.INFINITY)

    async def start(ctx: ChildContext) -> None:
        async with open_supervisor(
            ctx,
            specs,
            strategy=strategy,
            max_restarts=max_restarts,
            max_seconds=max_seconds,
            backoff=backoff,
            auto_shutdown=auto_shutdown,
            max_children=max_children,
        ) as sup:
            ctx.started(sup)
            await anyio.sleep_forever()

    return ChildSpec(id=id, start=start, kind="supervisor", **options)
