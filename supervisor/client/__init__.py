"""Clients of a coordinator: the seed's ``AgentDeploymentClient`` (async) and a sync one.

They speak the protocol only (:mod:`supervisor.protocol`) and import nothing of the
coordinator, so an agent program needs no more than this to deploy its children.
"""

from ._filequeue import AgentDeploymentClient, SyncAgentDeploymentClient, default_queue_dir

__all__ = ["AgentDeploymentClient", "SyncAgentDeploymentClient", "default_queue_dir"]
