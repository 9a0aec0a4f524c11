"""Placement on a Ray cluster (issue 14): the engine, the host actor, the proxy node.

Importable without Ray: Ray itself is imported only when a coordinator connects.
"""

from ._engine import (
    PlacementRefused,
    RayEngine,
    RayUnavailable,
    family_processes,
    import_ray,
    sweep,
)
from ._proxy import RemoteExit, RemoteHandle, placed_spec

__all__ = [
    "PlacementRefused",
    "RayEngine",
    "RayUnavailable",
    "RemoteExit",
    "RemoteHandle",
    "family_processes",
    "import_ray",
    "placed_spec",
    "sweep",
]
