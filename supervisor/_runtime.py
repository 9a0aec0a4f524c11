"""``open_runtime()``: the root of the tree, and the registry of every child by id."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Unpack

from ._child import ChildInfo, ChildSpec, RuntimeView
from ._errors import AutoShutdownExit
from ._events import EventLog
from ._ids import validate_id
from ._policy import SupervisorOptions
from ._registry import Registry
from ._slot import ChildSlot
from ._supervisor import Supervisor, open_supervisor


@dataclass(frozen=True, slots=True)
class _RootNode:
    id: str
    path: str
    level: str | None
    runtime: RuntimeView
    parent_id: str | None = None
    incarnation: int = 1


class Runtime:
    """The root supervisor plus a registry of every child in the tree by id.

    Ids are unique across the whole runtime (they are agent ids), so any node can be
    found, addressed and reported on by its id alone.
    """

    def __init__(self, name: str, events: EventLog) -> None:
        self.name = validate_id(name, "runtime name")
        self.events = events
        #: Handed to every supervisor of this runtime (they add and remove their slots).
        self.registry: Registry[ChildSlot, Supervisor] = Registry(self.name)
        self._root: Supervisor | None = None

    @property
    def root(self) -> Supervisor:
        assert self._root is not None, "runtime is not open"
        return self._root

    # -- the root's supervisor API, for convenience --

    async def start_child(self, spec: ChildSpec) -> Any:
        """Start *spec* under the root supervisor; see :meth:`Supervisor.start_child`."""
        return await self.root.start_child(spec)

    async def terminate(self, child_id: str) -> None:
        """Stop the child *child_id* wherever it is in the tree, its subtree first."""
        await self.supervisor_of(child_id).terminate_child(child_id)

    async def restart(self, child_id: str) -> Any:
        """Stop *child_id* if it runs, then start a fresh incarnation of it."""
        return await self.supervisor_of(child_id).restart_child(child_id, stop_first=True)

    # -- lookups --

    def __contains__(self, child_id: object) -> bool:
        return child_id in self.registry

    def supervisor_of(self, child_id: str) -> Supervisor:
        """The supervisor that holds *child_id*'s spec."""
        return self.registry.lookup(child_id)[1]

    def info(self, child_id: str) -> ChildInfo:
        return self.registry.lookup(child_id)[0].info()

    def whereis(self, child_id: str) -> Any:
        """The ``started()`` value of *child_id*'s running incarnation, else ``None``."""
        entry = self.registry.get(child_id)
        return None if entry is None else entry[0].value()

    def ids(self) -> list[str]:
        return self.registry.ids()

    def tree(self) -> dict[str, Any]:
        """A nested snapshot of the whole tree, for display and status replies.

        It includes the children of every supervisor opened inside a node, also a worker
        that opened one with ``open_supervisor(ctx)``.
        """
        return self._snapshot(self.name, self.name, None)

    def _snapshot(self, node_id: str, path: str, info: ChildInfo | None) -> dict[str, Any]:
        node: dict[str, Any] = {"id": node_id, "path": path}
        if info is not None:
            node.update(
                state=str(info.state),
                level=info.level,
                kind=str(info.kind),
                restart=str(info.restart),
                incarnation=info.incarnation,
                restarts=info.restarts,
                outcome=str(info.last_outcome) if info.last_outcome else None,
                reason=info.reason,
                started_at=info.started_at,
            )
        sup = self.registry.nested(node_id)
        node["children"] = (
            [self._snapshot(c.id, c.path, c) for c in sup.which_children()] if sup else []
        )
        return node


@asynccontextmanager
async def open_runtime(
    name: str = "ziggie",
    children: Iterable[ChildSpec] = (),
    *,
    events: EventLog | None = None,
    **options: Unpack[SupervisorOptions],
) -> AsyncIterator[Runtime]:
    """Open the root of a supervision tree inside any trio or asyncio program.

    ::

        async with open_runtime(max_restarts=5) as rt:
            await rt.start_child(function_spec("worker", work))

    Leaving the block stops the whole tree, newest child first. If the root supervisor
    exceeds its restart intensity, or a child fails to start, the block is cancelled and
    the error (:class:`RestartIntensityExceeded`, :class:`StartError`) propagates as
    itself, on trio and asyncio alike; several errors at once come as an exception group.
    If the root shuts itself down (``auto_shutdown``), the block is cancelled and ends
    quietly.
    """
    rt = Runtime(name, events if events is not None else EventLog())
    root = _RootNode(id=rt.name, path=rt.name, level=None, runtime=rt)
    try:
        async with open_supervisor(root, children, **options) as sup:
            rt._root = sup
            yield rt
    except AutoShutdownExit as exc:
        if exc.path != root.path:  # not the root's own: someone else's to handle
            raise
