"""Children as data: what to run (``ChildSpec``), how it is doing (``ChildInfo``), what a
running child sees (``ChildContext``), and the protocols a node sees of its runtime.

The kernel's imports run one way: ``_child`` <- ``_slot`` <- ``_supervisor`` <- ``_runtime``;
the runtime is seen below it only through :class:`RuntimeView`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Protocol, TypedDict

import anyio

from ._events import EventLog
from ._ids import validate_id
from ._policy import Outcome, Restart, Shutdown
from ._registry import Registry


class _Ignore:
    __slots__ = ()

    def __repr__(self) -> str:
        return "IGNORE"


#: Return this from a start function, before calling ``ctx.started()``, to decline to start
#: (OTP's ``ignore``): nothing runs and the start of siblings goes on. The spec is kept,
#: except a temporary child's, which is dropped as OTP does.
IGNORE: Final = _Ignore()

StartFn = Callable[["ChildContext"], Awaitable[Any]]


class ChildKind(StrEnum):
    """OTP's child ``type``: what ``count_children`` counts and events render."""

    WORKER = "worker"
    SUPERVISOR = "supervisor"


# The default shutdown of a worker; a supervisor given no shutdown gets INFINITY instead
# (OTP's defaults). An identity check, so an explicit Shutdown(5.0) is kept as given.
_WORKER_SHUTDOWN: Final = Shutdown(5.0)


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """What to run under a supervisor, and how to treat it when it exits.

    *start* is ``async def start(ctx: ChildContext)``: it calls ``ctx.started(value)``
    once it is up (the value is what :meth:`Runtime.whereis` returns), then runs until
    done. Returning is a normal exit, raising an abnormal one. A ``kind=SUPERVISOR``
    child given no *shutdown* gets ``Shutdown.INFINITY``, OTP's default for supervisors.
    """

    id: str
    start: StartFn
    restart: Restart = Restart.PERMANENT
    shutdown: Shutdown = _WORKER_SHUTDOWN
    timeout: float | None = None  #: seconds from each start to the node's deadline
    significant: bool = False
    kind: ChildKind = ChildKind.WORKER  #: as OTP's ``type``
    level: str | None = None  #: L1/L2/L3 where the child is an agent
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_id(self.id, "child id")
        object.__setattr__(self, "restart", Restart(self.restart))
        object.__setattr__(self, "kind", ChildKind(self.kind))
        if self.kind is ChildKind.SUPERVISOR and self.shutdown is _WORKER_SHUTDOWN:
            object.__setattr__(self, "shutdown", Shutdown.INFINITY)
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


@dataclass(frozen=True, slots=True)
class ChildInfo:
    """A snapshot of one child, as ``which_children`` reports it."""

    id: str
    path: str
    state: ChildState
    kind: ChildKind
    restart: Restart
    level: str | None
    incarnation: int
    restarts: int
    #: How the latest *ended* incarnation ended, also while a newer one runs.
    last_outcome: Outcome | None
    reason: str | None  #: the reason of that ended incarnation
    started_at: float | None  #: wall clock (``time.time()``)
    ended_at: float | None
    value: Any
    #: Between incarnations and maybe started again: its exit not yet decided on, or a
    #: restart waiting out its backoff. False once it has ended for good.
    restart_pending: bool = False


@dataclass(frozen=True, slots=True)
class ChildCounts:
    """``count_children``: OTP's specs/active/supervisors/workers."""

    specs: int
    active: int
    supervisors: int
    workers: int


class RuntimeView(Protocol):
    """What a child and a supervisor see of their runtime (``ctx.runtime``).

    A protocol, so this module does not import the runtime that imports it.
    """

    @property
    def name(self) -> str: ...
    @property
    def events(self) -> EventLog: ...
    @property
    def registry(self) -> Registry[Any, Any]: ...
    def __contains__(self, child_id: object) -> bool: ...
    def whereis(self, child_id: str) -> Any: ...
    def info(self, child_id: str) -> ChildInfo: ...
    def ids(self) -> list[str]: ...
    def tree(self) -> dict[str, Any]: ...
    async def start_child(self, spec: ChildSpec) -> Any: ...
    async def terminate(self, child_id: str) -> None: ...
    async def restart(self, child_id: str) -> Any: ...


class NodeContext(Protocol):
    """What a supervisor needs to know about the node it serves (a ``ChildContext``)."""

    @property
    def id(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def level(self) -> str | None: ...
    @property
    def runtime(self) -> RuntimeView: ...
    @property
    def parent_id(self) -> str | None: ...
    @property
    def incarnation(self) -> int: ...


class _Reachable(Protocol):
    def reach(self) -> None: ...


class _Run(Protocol):
    """What a context uses of an incarnation (``_slot.Incarnation``)."""

    number: int
    started: bool
    value: Any
    started_at: float | None
    stop_requested: bool
    cleanup_deadline: float
    cleanup_scopes: list[anyio.CancelScope]
    scope: anyio.CancelScope

    @property
    def settled(self) -> _Reachable: ...


class _Slot(Protocol):
    """What a context uses of a child slot (``_slot.ChildSlot``)."""

    spec: ChildSpec
    path: str
    parent_id: str
    runtime: RuntimeView
    state: ChildState

    def move(self, new: ChildState) -> None: ...
    def emit(self, event: str, inc: Any, **fields: Any) -> None: ...


class ChildContext:
    """Handed to a child's start function: who it is, and how to report and clean up.

    Only the kernel makes one (there is no public constructor).
    """

    __slots__ = ("_inc", "_slot")
    _slot: _Slot
    _inc: _Run

    def __init__(self) -> None:
        raise TypeError("ChildContext has no public constructor: the supervisor makes it")

    @classmethod
    def _create(cls, slot: _Slot, inc: _Run) -> ChildContext:
        """The kernel's constructor (trio's ``NoPublicConstructor._create`` habit)."""
        ctx = object.__new__(cls)
        ctx._slot = slot
        ctx._inc = inc
        return ctx

    @property
    def id(self) -> str:
        return self._slot.spec.id

    @property
    def path(self) -> str:
        return self._slot.path

    @property
    def level(self) -> str | None:
        return self._slot.spec.level

    @property
    def spec(self) -> ChildSpec:
        return self._slot.spec

    @property
    def incarnation(self) -> int:
        return self._inc.number

    @property
    def runtime(self) -> RuntimeView:
        return self._slot.runtime

    @property
    def parent_id(self) -> str:
        return self._slot.parent_id

    @property
    def deadline(self) -> float:
        """The node's deadline on the runtime clock (``inf`` for none)."""
        return self._inc.scope.deadline

    @property
    def shutdown(self) -> Shutdown:
        return self._slot.spec.shutdown

    @property
    def stop_requested(self) -> bool:
        return self._inc.stop_requested

    def emit(self, event: str, **fields: Any) -> None:
        """Emit a lifecycle event carrying this child's id, parent, level, path, incarnation."""
        self._slot.emit(event, self._inc, **fields)

    def started(self, value: Any = None) -> None:
        """Report that the child is up; its supervisor's ``start`` returns *value*."""
        inc = self._inc
        if inc.started:
            raise RuntimeError(f"{self.path}: started() called twice")
        inc.started = True
        inc.value = value
        inc.started_at = time.time()
        slot = self._slot
        if slot.state is ChildState.STARTING:  # not when a stop came first
            slot.move(ChildState.RUNNING)
        slot.emit("started", inc)
        inc.settled.reach()

    def shielded(self) -> anyio.CancelScope:
        """A shielded scope for cleanup, cut off when the shutdown spec's grace runs out.

        The grace counts from whichever stop comes first: terminate, the parent's stop,
        or the node's own deadline. Use it around cleanup that must run after
        cancellation::

            try:
                ...
            finally:
                with ctx.shielded():
                    await release()
        """
        scope = anyio.CancelScope(shield=True, deadline=self._inc.cleanup_deadline)
        self._inc.cleanup_scopes.append(scope)
        return scope
