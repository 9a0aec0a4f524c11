"""The supervisor node: a task group per node, ordered start, restarts, ordered shutdown.

Each child incarnation runs in its own *shielded* cancel scope inside the node's task
group. Shielding means cancellation from above never reaches a child directly: when a
node stops (terminated, timed out, or escalating) it stops its children itself, in reverse
start order, each to its shutdown spec, and only then unwinds. That gives OTP's ordering
("children first, newest first") on top of structured concurrency, which would otherwise
cancel every task of a group at the same instant.

Every state change is synchronous (no ``await`` inside), so the event loop serializes
them and no lock is held across a backoff, a child's start or a stop; a child's
:class:`ChildState` and its pending restart guard the operations that wait (as
OTP-9549: a supervisor busy restarting still answers calls).

Why this file is over 400 lines: the public API, the restart logic and the block
(``open_supervisor``) all change one child list and one closing state; split apart they
would reach into each other's privates. What does not need that state
already lives beside it: ``_lifecycle`` (running), ``_slot`` (records), ``_exits``.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, Final, Unpack

import anyio
from anyio.abc import TaskGroup

from ._child import (
    IGNORE,
    ChildContext,
    ChildCounts,
    ChildInfo,
    ChildKind,
    ChildSpec,
    ChildState,
    NodeContext,
    SpecOptions,
)
from ._errors import (
    AlreadyPresent,
    AlreadyStarted,
    AutoShutdownExit,
    MaxChildren,
    NotFound,
    RestartIntensityExceeded,
    Running,
    StartError,
    SupervisorClosed,
    describe,
)
from ._exits import sole
from ._lifecycle import run_incarnation, start_in_order, stop_concurrently, stop_in_order
from ._policy import (
    AutoShutdown,
    Intensity,
    Restart,
    Shutdown,
    StopOrder,
    Strategy,
    SupervisorOptions,
    should_restart,
)
from ._registry import Registry
from ._slot import ChildSlot, Incarnation, PendingRestart


def _restart_group(
    strategy: Strategy, children: list[ChildSlot], failed: ChildSlot
) -> list[ChildSlot]:
    if strategy is Strategy.ONE_FOR_ONE:
        return [failed]
    if strategy is Strategy.ONE_FOR_ALL:
        return list(children)
    return children[children.index(failed) :]


def _check_significant(spec: ChildSpec, auto_shutdown: AutoShutdown, where: str) -> None:
    """Refuse a significant child under a supervisor that would ignore the flag.

    OTP refuses the combination (``bad_combination``): a child marked significant whose
    supervisor never shuts itself down is a mistake to report, not a flag to drop.
    """
    if spec.significant and auto_shutdown is AutoShutdown.NEVER:
        raise ValueError(
            f"child {spec.id!r} is significant, but supervisor {where!r} has "
            "auto_shutdown=never (OTP's bad_combination): give the supervisor "
            "auto_shutdown=any_significant or all_significant, or drop significant"
        )


class Supervisor:
    """A supervisor node. Create one with :func:`open_supervisor` or :func:`supervisor_spec`."""

    def __init__(self, node: NodeContext, **options: Unpack[SupervisorOptions]) -> None:
        self.id = node.id
        self.path = node.path
        self.level = node.level
        self.runtime = node.runtime
        self._node = node
        self._registry: Registry[ChildSlot, Supervisor] = node.runtime.registry
        self.strategy = Strategy(options.get("strategy", Strategy.ONE_FOR_ONE))
        self.intensity = Intensity(options.get("max_restarts", 3), options.get("max_seconds", 5.0))
        self.backoff = options.get("backoff")
        self.auto_shutdown = AutoShutdown(options.get("auto_shutdown", AutoShutdown.NEVER))
        self.max_children = options.get("max_children")
        self.stop_order = StopOrder(options.get("stop_order", StopOrder.REVERSE))
        self._children: list[ChildSlot] = []
        self._by_id: dict[str, ChildSlot] = {}
        self._pending: set[PendingRestart] = set()
        self._tg: TaskGroup | None = None
        self._exits_tx, self._exits_rx = anyio.create_memory_object_stream[
            tuple[ChildSlot, Incarnation]
        ](math.inf)
        self._control = anyio.CancelScope()
        self._closing = False
        self._host_exit: BaseException | None = None
        self._auto_exit: AutoShutdownExit | None = None  # set once it shut itself down
        self.cancelled = anyio.get_cancelled_exc_class()

    # -- public API (OTP's supervisor functions) ---------------------------------------

    async def start_child(self, spec: ChildSpec) -> Any:
        """Add *spec* and start it; return its ``started()`` value (``IGNORE`` if ignored).

        A significant child is refused (``ValueError``) where ``auto_shutdown`` is never.
        """
        self._check_open(spec.id)
        _check_significant(spec, self.auto_shutdown, self.path)
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

        A restart waiting on its backoff is cancelled. The supervisor stays available
        while the child drains: other calls are not held up by a slow shutdown.
        """
        child = self._get(child_id)
        if child.pending is not None:
            child.pending.drop(child)
        await self._stop(child)
        if child.spec.restart is Restart.TEMPORARY and not child.live:
            self._remove(child)

    async def restart_child(self, child_id: str, *, stop_first: bool = False) -> Any:
        """Start a stopped child again; returns its ``started()`` value.

        A running child is refused (:class:`Running`), as in OTP, unless *stop_first*:
        then it is stopped (its subtree first) and started afresh, spec kept.
        """
        self._check_open(child_id)
        child = self._get(child_id)
        if child.live:
            if not stop_first:
                raise Running(child_id, f"child {child_id!r} is running")
            await self._stop(child)
            self._check_open(child_id)
            if child.live:  # another call started it meanwhile
                raise Running(child_id, f"child {child_id!r} is running")
        if child.pending is not None:  # start now instead of after the backoff
            child.pending.drop(child)
        child.restarts += 1
        inc = self._spawn(child)
        await inc.settled.wait()
        result = self._settle(child, inc)
        if result is not IGNORE:  # an ignored start is not a running child
            child.emit("restarted", inc, restarts=child.restarts)
        return result

    async def delete_child(self, child_id: str) -> None:
        """Forget a stopped child's spec (a pending restart of it is cancelled)."""
        child = self._get(child_id)
        if child.live:
            raise Running(child_id, f"child {child_id!r} is running")
        self._remove(child)

    def which_children(self) -> list[ChildInfo]:
        """Snapshots of every child, in start order."""
        return [c.info() for c in self._children]

    def count_children(self) -> ChildCounts:
        sup = sum(1 for c in self._children if c.spec.kind is ChildKind.SUPERVISOR)
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

    # -- bookkeeping -----------------------------------------------------------------

    def _active(self) -> int:
        return sum(1 for c in self._children if c.live)

    def _check_open(self, child_id: str) -> None:
        if self._closing:
            raise SupervisorClosed(child_id, f"supervisor {self.path!r} is shutting down")

    def _get(self, child_id: str) -> ChildSlot:
        child = self._by_id.get(child_id)
        if child is None:
            raise NotFound(child_id, f"no child {child_id!r} under {self.path!r}")
        return child

    def _add(self, spec: ChildSpec) -> ChildSlot:
        child = ChildSlot(spec, self.path, self.id, self.runtime)
        self._registry.add(spec.id, child, self)
        self._children.append(child)
        self._by_id[spec.id] = child
        return child

    def _remove(self, child: ChildSlot) -> None:
        if child.pending is not None:
            child.pending.drop(child)
        if self._by_id.get(child.spec.id) is child:
            del self._by_id[child.spec.id]
            self._children.remove(child)
            self._registry.discard(child.spec.id, child)

    def _emit_self(self, event: str, **fields: Any) -> None:
        """An event about this supervisor's own node, with the fields every event has."""
        events = self.runtime.events
        if events.active:
            events.emit(
                event,
                agent_id=self.id,
                parent_id=self._node.parent_id,
                level=self.level,
                path=self.path,
                incarnation=self._node.incarnation,
                kind=str(ChildKind.SUPERVISOR),
                **fields,
            )

    # -- one incarnation ---------------------------------------------------------------

    def _spawn(self, child: ChildSlot) -> Incarnation:
        """Schedule a new incarnation of *child* (synchronous: chains call it)."""
        assert self._tg is not None
        child.move(ChildState.STARTING)
        child.incarnations += 1
        timeout = child.spec.timeout
        deadline = math.inf if timeout is None else anyio.current_time() + timeout
        inc = Incarnation(child.incarnations, deadline, child.spec.shutdown.grace)
        child.current = inc
        self._tg.start_soon(run_incarnation, child, inc, self, name=child.path)
        return inc

    def _settle(self, child: ChildSlot, inc: Incarnation) -> Any:
        """The result of a settled start: its value, ``IGNORE``, or :class:`StartError`."""
        if inc.ignored:
            child.emit("ignored", inc)
            if child.spec.restart is Restart.TEMPORARY:
                self._remove(child)  # OTP drops a temporary spec on ignore
            return IGNORE
        if not inc.started:
            child.emit("start_failed", inc, reason=describe(inc.reason))
            raise StartError(child.spec.id, inc.reason or "exited before it started")
        return inc.value

    async def _start(self, child: ChildSlot) -> Any:
        """Run a new incarnation and wait until it reports started (or fails to)."""
        inc = self._spawn(child)
        await inc.settled.wait()
        return self._settle(child, inc)

    # -- the incarnation's Owner protocol --

    def on_exit(self, child: ChildSlot, inc: Incarnation) -> None:
        """Queue an unrequested exit for the control loop (kernel-internal)."""
        if not self._closing:
            child.deciding = True
            self._exits_tx.send_nowait((child, inc))

    def on_host_exit(self, exc: BaseException) -> None:
        """A child raised the host's exit: stop this tree now, raise *exc* once it is down."""
        if self._host_exit is None:
            self._host_exit = exc
        self._closing = True
        assert self._tg is not None
        self._tg.cancel_scope.cancel()

    def _request_stop(self, child: ChildSlot) -> Incarnation | None:
        """Cancel the current incarnation to its shutdown spec; None if nothing runs."""
        inc = child.current
        if inc is None or inc.finished.reached:
            return None
        if not inc.stop_requested:
            if child.state is not ChildState.STOPPING:
                child.move(ChildState.STOPPING)
            inc.request_stop(child.spec.shutdown.grace)
            child.emit("stop_requested", inc, shutdown=str(child.spec.shutdown))
        return inc

    async def _stop(self, child: ChildSlot) -> None:
        """Stop the current incarnation and wait until it is gone (its subtree first)."""
        inc = self._request_stop(child)
        if inc is not None:
            await inc.finished.wait()

    async def _start_all(self, children: Iterable[ChildSlot]) -> None:
        """Start *children* in order; raise the first :class:`StartError`."""
        await start_in_order(children, self._spawn, self._settle, lambda: self._closing)

    async def _stop_all(self, children: Iterable[ChildSlot]) -> None:
        """Stop *children* newest first, each only after the one before it is gone (or
        all at once: ``stop_order=concurrent``)."""
        if self.stop_order is StopOrder.CONCURRENT:
            await stop_concurrently(children, self._request_stop)
        else:
            await stop_in_order(children, self._request_stop)

    # -- restarts ----------------------------------------------------------------------

    async def _control_loop(self) -> None:
        with self._control:
            async for child, inc in self._exits_rx:
                child.deciding = False  # decided below (a restart is then pending) or moot
                if child.current is not inc or self._closing or child.pending is not None:
                    continue
                self._handle_exit(child, inc)
                if self._auto_shutdown_due(child):
                    self._emit_self("auto_shutdown", child_id=child.spec.id)
                    self._auto_exit = AutoShutdownExit(
                        self.path, child.spec.id, str(self.auto_shutdown)
                    )
                    self._closing = True
                    assert self._tg is not None
                    self._tg.cancel_scope.cancel()
                    return

    def _auto_shutdown_due(self, exited: ChildSlot) -> bool:
        if self.auto_shutdown is AutoShutdown.NEVER or not exited.spec.significant:
            return False
        if exited.live or exited.pending is not None:  # it is being restarted
            return False
        if self.auto_shutdown is AutoShutdown.ANY_SIGNIFICANT:
            return True
        return not any(c.live or c.pending for c in self._children if c.spec.significant)

    def _handle_exit(self, child: ChildSlot, inc: Incarnation) -> None:
        """Decide on an unrequested exit, synchronously; a restart runs as its own task."""
        assert inc.outcome is not None
        assert self._tg is not None
        if not should_restart(child.spec.restart, inc.outcome):
            if child.spec.restart is Restart.TEMPORARY:
                self._remove(child)
            return
        self._count_restart(child, inc.reason)
        restart = PendingRestart(child, self._group(child))
        self._pending.add(restart)
        self._tg.start_soon(self._restart, restart, name=f"{child.path}:restart")

    def _group(self, failed: ChildSlot) -> list[ChildSlot]:
        """The children a restart of *failed* stops and starts (its strategy's group),
        less those another pending restart already holds."""
        group = _restart_group(self.strategy, self._children, failed)
        return [m for m in group if m.pending is None]

    def _count_restart(self, failed: ChildSlot, reason: BaseException | str | None) -> None:
        """Count a restart against the intensity; escalate (raise) when it is exceeded."""
        if self.intensity.record(anyio.current_time()):
            self._emit_self(
                "escalated",
                child_id=failed.spec.id,
                reason=describe(reason),
                max_restarts=self.intensity.max_restarts,
                max_seconds=self.intensity.max_seconds,
            )
            raise RestartIntensityExceeded(
                self.path, failed.spec.id, self.intensity.max_restarts, self.intensity.max_seconds
            ) from (reason if isinstance(reason, BaseException) else None)

    async def _restart(self, restart: PendingRestart) -> None:
        """Stop the group's other members, wait the backoff, start the group in order;
        if a start fails, try again from the child that failed.

        Runs in its own task without any lock: cancelling ``restart.scope`` (terminate,
        delete, shutdown) abandons it, and other children's restarts run meanwhile.
        """
        try:
            with restart.scope:
                while True:
                    failed = restart.failed
                    await self._stop_all(m for m in restart.members if m is not failed)
                    for member in list(restart.members):
                        if member is not failed and member.spec.restart is Restart.TEMPORARY:
                            self._remove(member)  # OTP: a temporary sibling is only deleted
                    if self.backoff is not None:
                        await anyio.sleep(self.backoff.delay(self.intensity.recent))
                    group = [m for m in restart.members if not m.live]
                    for member in group:
                        member.pending = None
                        member.restarts += 1
                    try:
                        await self._start_all(group)
                    except StartError as exc:
                        # OTP's try_again_restart: a failed start is another exit to restart,
                        # counted against the intensity, and the restart is tried again from
                        # the child that failed, over *its* group now. rest_for_one keeps
                        # the children before it that did start running; one_for_all stops
                        # them again with the rest; one_for_one starts that child alone.
                        culprit = self._by_id.get(exc.child_id)
                        if culprit is None:  # its spec was deleted meanwhile
                            return
                        self._count_restart(culprit, exc)
                        restart.failed = culprit
                        restart.members = self._group(culprit)
                        for member in restart.members:
                            member.pending = restart
                        self._announce(m for m in group if m.pending is None)  # they stay
                        continue
                    self._announce(group)
                    return
        finally:
            restart.cancel()
            self._pending.discard(restart)

    def _announce(self, restarted: Iterable[ChildSlot]) -> None:
        """A ``restarted`` event for each of *restarted* running a new incarnation."""
        for member in restarted:
            inc = member.current
            if inc is not None and inc.started and not inc.ignored:
                member.emit("restarted", inc, restarts=member.restarts)

    # -- shutdown ----------------------------------------------------------------------

    async def _shutdown(self) -> None:
        """Stop every child, newest first, until none is left (shielded by the caller)."""
        self._closing = True
        self._control.cancel()
        for restart in list(self._pending):
            restart.cancel()
        for child in self._children:  # exits still queued are never decided on now
            child.deciding = False
        while live := [c for c in self._children if c.live]:
            await self._stop_all(live)
        # The subtree is gone with this node: a restart of the node builds it anew.
        for child in self._children:
            self._registry.discard(child.spec.id, child)
        self._exits_tx.close()
        self._exits_rx.close()


@asynccontextmanager
async def open_supervisor(
    node: NodeContext,
    children: Iterable[ChildSpec] = (),
    **options: Unpack[SupervisorOptions],
) -> AsyncIterator[Supervisor]:
    """Run a supervisor for the node *node* (usually the ``ctx`` of a child) as a block.

    Children start in order, each awaited until started; if one fails the ones before it
    are stopped and :class:`StartError` says which failed. Leaving the block stops every
    child, newest first. Exceeding the restart intensity cancels the block and raises
    :class:`RestartIntensityExceeded` to the node's parent. A lone error leaves the block
    unwrapped on both backends; several come as an exception group. When significant
    children end it (``auto_shutdown``), the block is cancelled and raises
    :class:`AutoShutdownExit`: the node exits ``shutdown``. A significant child under
    ``auto_shutdown=never`` is refused with ``ValueError`` before anything starts.

    The supervisor is recorded as the node's, so ``Runtime.tree`` shows its children
    also when the node is a worker (a function actor or a process agent) that opened it.
    """
    specs = tuple(children)
    auto_shutdown = AutoShutdown(options.get("auto_shutdown", AutoShutdown.NEVER))
    for spec in specs:
        _check_significant(spec, auto_shutdown, node.path)
    sup = Supervisor(node, **options)
    registry = sup._registry
    registry.attach(node.id, sup)
    try:
        async with anyio.create_task_group() as tg:
            sup._tg = tg
            try:
                await sup._start_all([sup._add(spec) for spec in specs])
                tg.start_soon(sup._control_loop, name=f"{sup.path}:control")
                yield sup
            finally:
                with anyio.CancelScope(shield=True):
                    await sup._shutdown()
    except BaseExceptionGroup as group:
        if sup._host_exit is not None:
            raise sup._host_exit from None
        only = sole(group)
        if only is group:
            raise
        raise only from None
    finally:
        registry.detach(node.id, sup)
    if sup._host_exit is not None:  # the tree is down: now the host's exit goes on up
        raise sup._host_exit
    if sup._auto_exit is not None:  # the node exits shutdown, as OTP's supervisor does
        raise sup._auto_exit


class SupervisorSpecOptions(SupervisorOptions, SpecOptions, total=False):
    """:func:`supervisor_spec`'s keywords: the supervisor's options and the spec's."""


_SUPERVISOR_KEYS: Final = frozenset(SupervisorOptions.__annotations__)


def supervisor_spec(
    id: str,
    children: Iterable[ChildSpec] = (),
    **options: Unpack[SupervisorSpecOptions],
) -> ChildSpec:
    """A child spec whose child is a supervisor over *children*; its value is the node.

    Its kind is ``SUPERVISOR`` and its shutdown defaults to ``Shutdown.INFINITY`` (OTP's
    default for supervisors): it takes as long as its children's own shutdown specs allow.
    A significant child under ``auto_shutdown=never`` is refused here (``ValueError``).
    """
    specs = tuple(children)
    sup_options: SupervisorOptions = {k: v for k, v in options.items() if k in _SUPERVISOR_KEYS}  # type: ignore[assignment]
    spec_options: SpecOptions = {k: v for k, v in options.items() if k not in _SUPERVISOR_KEYS}  # type: ignore[assignment]
    spec_options.setdefault("shutdown", Shutdown.INFINITY)
    auto_shutdown = AutoShutdown(sup_options.get("auto_shutdown", AutoShutdown.NEVER))
    for spec in specs:
        _check_significant(spec, auto_shutdown, id)

    async def start(ctx: ChildContext) -> None:
        async with open_supervisor(ctx, specs, **sup_options) as sup:
            ctx.started(sup)
            await anyio.sleep_forever()

    return ChildSpec(id=id, start=start, kind=ChildKind.SUPERVISOR, **spec_options)
