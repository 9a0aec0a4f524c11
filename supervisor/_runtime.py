"""``open_runtime()``: the root of the tree and the registry of live children by id."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from ._errors import AlreadyStarted, NotFound
from ._events import EventLog
from ._ids import validate_id
from ._policy import Backoff, Strategy
from ._tree import ChildInfo, ChildSpec, ChildState, Supervisor, _Child, open_supervisor


@dataclass(frozen=True, slots=True)
class _RootNode:
    id: str
    path: str
    level: str | None
    runtime: Runtime


class Runtime:
    """The root supervisor plus a registry of every child in the tree by id.

    Ids are unique across the whole runtime (they are agent ids), so any node can be
    found, addressed and reported on by its id alone.
    """

    def __init__(self, name: str, events: EventLog) -> None:
        self.name = validate_id(name, "runtime name")
        self.events = events
        self._registry: dict[str, tuple[_Child, Supervisor]] = {}
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

    # -- registry --

    def _register(self, child: _Child, parent: Supervisor) -> None:
        cid = child.spec.id
        if cid in self._registry or cid == self.name:
            raise AlreadyStarted(cid, f"id {cid!r} is already in use in runtime {self.name!r}")
        self._registry[cid] = (child, parent)

    def _unregister(self, child: _Child) -> None:
        entry = self._registry.get(child.spec.id)
        if entry is not None and entry[0] is child:
            del self._registry[child.spec.id]

    def _lookup(self, child_id: str) -> tuple[_Child, Supervisor]:
        try:
            return self._registry[child_id]
        except KeyError:
            raise NotFound(child_id, f"no child {child_id!r} in runtime {self.name!r}") from None

    def __contains__(self, child_id: object) -> bool:
        return child_id in self._registry

    def supervisor_of(self, child_id: str) -> Supervisor:
        """The supervisor that holds *child_id*'s spec."""
        return self._lookup(child_id)[1]

    def info(self, child_id: str) -> ChildInfo:
        return self._lookup(child_id)[0].info()

    def whereis(self, child_id: str) -> Any:
        """The ``started()`` value of *child_id*'s running incarnation, else ``None``."""
        entry = self._registry.get(child_id)
        if entry is None:
            return None
        child = entry[0]
        inc = child.current
        if child.state is ChildState.RUNNING and inc is not None:
            return inc.value
        return None

    def ids(self) -> list[str]:
        return list(self._registry)

    def tree(self) -> dict[str, Any]:
        """A nested snapshot of the whole tree, for display and status replies."""
        return _snapshot_node(self.name, self.name, None, self.root)


def _snapshot_node(
    node_id: str, path: str, info: ChildInfo | None, sup: Supervisor | None
) -> dict[str, Any]:
    node: dict[str, Any] = {"id": node_id, "path": path}
    if info is not None:
        node.update(
            state=str(info.state),
            level=info.level,
            kind=info.kind,
            restart=str(info.restart),
            incarnation=info.incarnation,
            restarts=info.restarts,
            outcome=str(info.outcome) if info.outcome else None,
            reason=info.reason,
            started_at=info.started_at,
        )
    kids = []
    if sup is not None:
        for child in sup.which_children():
            kids.append(_snapshot_node(child.id, child.path, child, _supervisor_in(child.value)))
    node["children"] = kids
    return node


def _supervisor_in(value: Any) -> Supervisor | None:
    """A child's nested supervisor: the value itself or its ``supervisor`` attribute."""
    if isinstance(value, Supervisor):
        return value
    nested = getattr(value, "supervisor", None)
    return nested if isinstance(nested, Supervisor) else None


@asynccontextmanager
async def open_runtime(
    name: str = "ziggie",
    children: Iterable[ChildSpec] = (),
    *,
    events: EventLog | None = None,
    strategy: Strategy = Strategy.ONE_FOR_ONE,
    max_restarts: int = 3,
    max_seconds: float = 5.0,
    backoff: Backoff | None = None,
) -> AsyncIterator[Runtime]:
    """Open the root of a supervision tree inside any trio or asyncio program.

    ::

        async with open_runtime() as rt:
            await rt.start_child(function_actor("worker", work))

    Leaving the block stops the whole tree, newest child first. If the root supervisor
    exceeds its restart intensity, the block is cancelled and the error propagates.
    """
    rt = Runtime(name, events if events is not None else EventLog())
    root = _RootNode(id=rt.name, path=rt.name, level=None, runtime=rt)
    async with open_supervisor(
        root,
        children,
        strategy=strategy,
        max_restarts=max_restarts,
        max_seconds=max_seconds,
        backoff=backoff,
    ) as sup:
        rt._root = sup
        yield rt
