"""Clients of a coordinator: the seed's ``AgentDeploymentClient`` (async) and a sync one.

They speak the protocol only (:mod:`supervisor.protocol`) and import nothing of the
coordinator, so an agent program needs no more than this to deploy its children.
"""

from typing import TYPE_CHECKING, Any

from ._filequeue import AgentDeploymentClient, SyncAgentDeploymentClient, default_queue_dir

if TYPE_CHECKING:
    from ._http import HttpAgentClient

__all__ = [
    "AgentDeploymentClient",
    "HttpAgentClient",
    "SyncAgentDeploymentClient",
    "default_queue_dir",
]


def __getattr__(name: str) -> Any:
    # The HTTP client needs the optional 'http' extra (httpx): imported when first used.
    if name == "HttpAgentClient":
        from ._http import HttpAgentClient

        globals()[name] = HttpAgentClient
        return HttpAgentClient
    raise AttributeError(f"module 'supervisor.client' has no attribute {name!r}")
