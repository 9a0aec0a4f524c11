"""ziggie's supervision runtime: OTP-style supervision trees for nested AI agents on anyio.

Note: the import name ``supervisor`` is also used by supervisord's package on PyPI; the
two cannot be installed in one environment. ziggie never depends on supervisord.
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
from ._client import AgentDeploymentClient, SyncAgentDeploymentClient
from ._errors import (
    ActorDied,
    ActorError,
    ActorNotRunning,
    AlreadyPresent,
    AlreadyStarted,
    MailboxFull,
    MaxChildren,
    NotFound,
    RestartIntensityExceeded,
    Running,
    StartError,
    SupervisorClosed,
    SupervisorError,
    ZiggieError,
)
from ._events import EventLog, json_events, no_events
from ._fileio import write_atomic
from ._ids import is_valid_id, validate_id
from ._policy import (
    AutoShutdown,
    Backoff,
    Outcome,
    Restart,
    Shutdown,
    Strategy,
    SupervisorOptions,
)
from ._runtime import Runtime, open_runtime
from ._schemas import (
    PROTOCOL_VERSION,
    AgentContext,
    AgentPermissions,
    AgentSpec,
    DeploymentRequest,
    DeploymentResponse,
)
from ._settings import Settings
from ._supervisor import Supervisor, SupervisorSpecOptions, open_supervisor, supervisor_spec

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
    "MailboxFull",
    "MaxChildren",
    "NotFound",
    "Outcome",
    "Restart",
    "RestartIntensityExceeded",
    "Running",
    "Runtime",
    "Settings",
    "Shutdown",
    "SpecOptions",
    "StartError",
    "Strategy",
    "Supervisor",
    "SupervisorClosed",
    "SupervisorError",
    "SupervisorOptions",
    "SupervisorSpecOptions",
    "SyncAgentDeploymentClient",
    "ZiggieError",
    "__version__",
    "is_valid_id",
    "json_events",
    "no_events",
    "open_runtime",
    "open_supervisor",
    "supervisor_spec",
    "validate_id",
    "write_atomic",
]
