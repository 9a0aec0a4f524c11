"""The seed's file-queue protocol: its wire models (``version: "1.0"``) and its layout.

Both ends use this package: the client and the coordinator. It imports only the kernel's
id rules (from their module, not the package face, which re-exports this package).
"""

from ._definition import definition_text, read_definition
from ._dirwatch import ALL, RESCAN, DirectoryWatcher, Watcher, watch_directories, watch_directory
from ._fileio import write_atomic
from ._lock import coordinator_serves, lock_holder
from ._queue import (
    ARCHIVE,
    DIRECTORIES,
    ERROR_SUFFIX,
    HTTP_FILE,
    LOCK_NAME,
    PROCESSING,
    REQUEST_SUFFIX,
    REQUESTS,
    RESPONSE_SUFFIX,
    RESPONSES,
    error_name,
    request_name,
    response_name,
)
from ._schemas import (
    PROTOCOL_VERSION,
    Action,
    AgentContext,
    AgentPermissions,
    AgentSpec,
    DeploymentRequest,
    DeploymentResponse,
    ErrorCode,
    Level,
    Limits,
    NetworkPermissions,
    RayPlacement,
    Status,
    validation_summary,
)
from ._tracecontext import (
    current_trace_context,
    format_traceparent,
    parse_traceparent,
    trace_id_of,
    valid_traceparent,
    valid_tracestate,
)

__all__ = [
    "ALL",
    "ARCHIVE",
    "DIRECTORIES",
    "ERROR_SUFFIX",
    "HTTP_FILE",
    "LOCK_NAME",
    "PROCESSING",
    "PROTOCOL_VERSION",
    "REQUESTS",
    "REQUEST_SUFFIX",
    "RESCAN",
    "RESPONSES",
    "RESPONSE_SUFFIX",
    "Action",
    "AgentContext",
    "AgentPermissions",
    "AgentSpec",
    "DeploymentRequest",
    "DeploymentResponse",
    "DirectoryWatcher",
    "ErrorCode",
    "Level",
    "Limits",
    "NetworkPermissions",
    "RayPlacement",
    "Status",
    "Watcher",
    "coordinator_serves",
    "current_trace_context",
    "definition_text",
    "error_name",
    "format_traceparent",
    "lock_holder",
    "parse_traceparent",
    "read_definition",
    "request_name",
    "response_name",
    "trace_id_of",
    "valid_traceparent",
    "valid_tracestate",
    "validation_summary",
    "watch_directories",
    "watch_directory",
    "write_atomic",
]
