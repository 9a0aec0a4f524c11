"""Transitional: the names ``_tree`` held before issue 8 split it into ``_child`` and
``_supervisor``. Import from ``supervisor`` (or those modules) instead; this module goes
once no importer is left.
"""

from ._child import (
    IGNORE,
    ChildContext,
    ChildCounts,
    ChildInfo,
    ChildKind,
    ChildSpec,
    ChildState,
    SpecOptions,
)
from ._supervisor import Supervisor, open_supervisor, supervisor_spec

__all__ = [
    "IGNORE",
    "ChildContext",
    "ChildCounts",
    "ChildInfo",
    "ChildKind",
    "ChildSpec",
    "ChildState",
    "SpecOptions",
    "Supervisor",
    "open_supervisor",
    "supervisor_spec",
]
