"""An agent's state as the coordinator records it, and how each maps onto the wire."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from supervisor import Outcome
from supervisor.protocol import Status


class AgentState(StrEnum):
    """The journal's state of an agent (the seed's wire ``status`` is coarser)."""

    STARTING = "starting"
    RUNNING = "running"
    COMPLETED = "completed"  #: exited 0
    FAILED = "failed"  #: exited abnormally, or could not start
    TERMINATED = "terminated"  #: stopped on request (or by its parent)
    TIMED_OUT = "timed_out"  #: its deadline passed
    LOST = "lost"  #: running when a coordinator died; its processes were stopped
    GIVEN_UP = "given_up"  #: restarted past its own intensity: stopped for good (item 1)

    @property
    def live(self) -> bool:
        """A process may still be running."""
        return self in (AgentState.STARTING, AgentState.RUNNING)

    @property
    def status(self) -> Status:
        """The seed's response ``status`` for this state."""
        return _STATUS[self]

    @classmethod
    def ended(cls, outcome: str) -> AgentState:
        """The state an incarnation that ended with *outcome* leaves behind."""
        try:
            return _ENDED[Outcome(outcome)]
        except ValueError:
            return cls.FAILED


#: States in which a process may still be running, for journal queries.
LIVE_STATES: Final = (AgentState.STARTING.value, AgentState.RUNNING.value)

_ENDED: Final = {
    Outcome.NORMAL: AgentState.COMPLETED,
    Outcome.ERROR: AgentState.FAILED,
    Outcome.SHUTDOWN: AgentState.TERMINATED,
    Outcome.TIMEOUT: AgentState.TIMED_OUT,
}

_STATUS: Final[dict[AgentState, Status]] = {
    AgentState.STARTING: "running",
    AgentState.RUNNING: "running",
    AgentState.COMPLETED: "completed",
    AgentState.FAILED: "failed",
    AgentState.TERMINATED: "terminated",
    AgentState.TIMED_OUT: "terminated",
    AgentState.LOST: "failed",
    AgentState.GIVEN_UP: "failed",
}
