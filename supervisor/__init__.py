"""ziggie's supervision runtime: OTP-style supervision trees for nested AI agents on anyio.

This face exports the kernel (the modules at this package's top level: child specs, the
supervisor node, policies, the runtime, events, errors, ids). For the seed's users it also
hands on the client and the wire models, imported lazily on first use: kernel users do not
pay for pydantic, and no kernel module depends on them. The layers above the kernel live
in subpackages: :mod:`supervisor.protocol`, :mod:`supervisor.client`,
:mod:`supervisor.coordinator` (the service and its transports), :mod:`supervisor.cli`.

Note: the import name ``supervisor`` is also used by supervisord's package on PyPI; the
two cannot be installed in one environment. ziggie never depends on supervisord.
"""

from typing import TYPE_CHECKING, Any

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
from ._errors import (
    ActorDied,
    ActorError,
    ActorNotRunning,
    AlreadyPresent,
    AlreadyStarted,
    AutoShutdownExit,
    MailboxFull,
    MaxChildren,
    NotFound,
    RestartIntensityExceeded,
    Running,
    StartError,
    SupervisorClosed,
    SupervisorError,
    ZiggieError,
    describe,
)
from ._events import EventLog, json_events, no_events
from ._ids import is_valid_id, validate_id
from ._policy import (
    AutoShutdown,
    Backoff,
    Outcome,
    Restart,
    Shutdown,
    StopOrder,
    Strategy,
    SupervisorOptions,
)
from ._runtime import Runtime, open_runtime
from ._supervisor import Supervisor, SupervisorSpecOptions, open_supervisor, supervisor_spec

if TYPE_CHECKING:
    from .client import AgentDeploymentClient, HttpAgentClient, SyncAgentDeploymentClient
    from .protocol import (
        PROTOCOL_VERSION,
        AgentContext,
        AgentPermissions,
        AgentSpec,
        DeploymentRequest,
        DeploymentResponse,
    )

#: Names handed on from the layers above the kernel, imported when first asked for.
_LAZY = {
    "AgentDeploymentClient": "client",
    "HttpAgentClient": "client",
    "SyncAgentDeploymentClient": "client",
    "PROTOCOL_VERSION": "protocol",
    "AgentContext": "protocol",
    "AgentPermissions": "protocol",
    "AgentSpec": "protocol",
    "DeploymentRequest": "protocol",
    "DeploymentResponse": "protocol",
}


def __getattr__(name: str) -> Any:
    where = _LAZY.get(name)
    if where == "client":
        from . import client as module
    elif where == "protocol":
        from . import protocol as module  # type: ignore[no-redef]
    else:
        raise AttributeError(f"module 'supervisor' has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "IGNORE",
    "PROTOCOL_VERSION",
    "ActorDied",
    "ActorError",
    "ActorNotRunning",
    "AgentContext",
    "AgentDeploymentClient",
    "AgentPermissions",
    "AgentSpec",
    "AlreadyPresent",
    "AlreadyStarted",
    "AutoShutdown",
    "AutoShutdownExit",
    "Backoff",
    "ChildContext",
    "ChildCounts",
    "ChildInfo",
    "ChildKind",
    "ChildSpec",
    "ChildState",
    "DeploymentRequest",
    "DeploymentResponse",
    "EventLog",
    "HttpAgentClient",
    "MailboxFull",
    "MaxChildren",
    "NotFound",
    "Outcome",
    "Restart",
    "RestartIntensityExceeded",
    "Running",
    "Runtime",
    "Shutdown",
    "SpecOptions",
    "StartError",
    "StopOrder",
    "Strategy",
    "Supervisor",
    "SupervisorClosed",
    "SupervisorError",
    "SupervisorOptions",
    "SupervisorSpecOptions",
    "SyncAgentDeploymentClient",
    "ZiggieError",
    "__version__",
    "describe",
    "is_valid_id",
    "json_events",
    "no_events",
    "open_runtime",
    "open_supervisor",
    "supervisor_spec",
    "validate_id",
]
