"""The coordinator: ONE service over a runtime, and its thin transports beside it.

- :class:`AgentService`: deploy / status / terminate / restart / list / tree as plain
  async methods on the seed's wire models; the journal, nesting rules, spec -> process.
- :class:`FileQueue`: the seed's file-queue transport over that service: the operator's
  queue, and each running agent's own.
- :class:`Caller` (:data:`OPERATOR` or an agent) and :func:`authorize`: who may ask what,
  one rule for every transport.
- :func:`open_coordinator` (embedded) and :func:`serve_home` (``ziggie serve``) put them
  together with recovery.

Built on the kernel's public API, :mod:`actors`, :mod:`supervisor.protocol`.
"""

from ._agents import AgentHome
from ._callers import OPERATOR, Caller, Forbidden, authorize
from ._filequeue import FileQueue
from ._housekeeping import prune_home
from ._journal import Journal
from ._loading import BadRequest
from ._once import Answer
from ._replies import AgentRefused
from ._runners import Runner, claude_runner, default_runners, demo_runner
from ._serve import (
    Coordinator,
    CoordinatorRunning,
    HomeUnusable,
    HttpUnavailable,
    check_http,
    check_ray,
    open_coordinator,
    serve_home,
)
from ._service import AgentService
from ._settings import Settings
from ._states import AgentState

__all__ = [
    "OPERATOR",
    "AgentHome",
    "AgentRefused",
    "AgentService",
    "AgentState",
    "Answer",
    "BadRequest",
    "Caller",
    "Coordinator",
    "CoordinatorRunning",
    "FileQueue",
    "Forbidden",
    "HomeUnusable",
    "HttpUnavailable",
    "Journal",
    "Runner",
    "Settings",
    "authorize",
    "check_http",
    "check_ray",
    "claude_runner",
    "default_runners",
    "demo_runner",
    "open_coordinator",
    "prune_home",
    "serve_home",
]
