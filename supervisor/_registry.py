"""The registry one runtime owns and hands to each of its supervisors.

It maps every child id in the tree to its slot and the supervisor holding it, and each
node id to the supervisor opened inside it (so ``Runtime.tree`` is complete).
It is generic over both, so it depends on nothing else of the kernel: supervisors import
it, the runtime owns it, and neither reaches into the other.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from ._errors import AlreadyStarted, NotFound

S = TypeVar("S")
Own = TypeVar("Own")


class Registry(Generic[S, Own]):
    """Child slots by id (unique across the runtime), and nested supervisors by node id."""

    __slots__ = ("_nested", "_slots", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._slots: dict[str, tuple[S, Own]] = {}
        self._nested: dict[str, Own] = {}

    def add(self, child_id: str, slot: S, owner: Own) -> None:
        """Claim *child_id* for *slot* under *owner*; :class:`AlreadyStarted` if taken."""
        if child_id in self._slots or child_id == self.name:
            raise AlreadyStarted(
                child_id, f"id {child_id!r} is already in use in runtime {self.name!r}"
            )
        self._slots[child_id] = (slot, owner)

    def discard(self, child_id: str, slot: S) -> None:
        """Release *child_id* if *slot* still holds it."""
        entry = self._slots.get(child_id)
        if entry is not None and entry[0] is slot:
            del self._slots[child_id]

    def get(self, child_id: str) -> tuple[S, Own] | None:
        return self._slots.get(child_id)

    def lookup(self, child_id: str) -> tuple[S, Own]:
        """The slot and owner of *child_id*; :class:`NotFound` if there is none."""
        try:
            return self._slots[child_id]
        except KeyError:
            raise NotFound(child_id, f"no child {child_id!r} in runtime {self.name!r}") from None

    def __contains__(self, child_id: object) -> bool:
        return child_id in self._slots

    def ids(self) -> list[str]:
        return list(self._slots)

    def attach(self, node_id: str, supervisor: Own) -> None:
        """Record that *supervisor* runs inside the node *node_id* (while it is open)."""
        self._nested[node_id] = supervisor

    def detach(self, node_id: str, supervisor: Own) -> None:
        if self._nested.get(node_id) is supervisor:
            del self._nested[node_id]

    def nested(self, node_id: str) -> Own | None:
        """The supervisor open inside *node_id*, if any."""
        return self._nested.get(node_id)
