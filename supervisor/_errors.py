"""The exception hierarchy.

Everything the runtime raises on purpose derives from :class:`ZiggieError`::

    ZiggieError
    ├── SupervisorError            a supervisor refused an operation
    │   ├── AlreadyStarted         id is running          (OTP: already_started)
    │   ├── AlreadyPresent         id exists, not running (OTP: already_present)
    │   ├── NotFound               no such child          (OTP: not_found)
    │   ├── Running                operation needs a stopped child (OTP: running)
    │   ├── SupervisorClosed       the supervisor is shutting down
    │   ├── MaxChildren            the supervisor's max_children is reached
    │   └── StartError             a child failed to start (after rollback)
    ├── RestartIntensityExceeded   too many restarts: the supervisor gave up (escalation)
    ├── AutoShutdownExit           significant children ended: the supervisor shut down
    ├── InvalidTransition          an illegal lifecycle transition (a bug, not user input)
    └── ActorError                 talking to an actor failed
        ├── ActorNotRunning        no live incarnation to talk to
        ├── ActorDied              it died before answering
        └── MailboxFull            tell_nowait() found no room

Errors from task groups arrive as exception groups; we never flatten them away.
"""

from __future__ import annotations


class ZiggieError(Exception):
    """Base of every error the runtime raises on purpose."""


class SupervisorError(ZiggieError):
    """A supervisor refused an operation; ``code`` is OTP's name for the reason."""

    code = "error"

    def __init__(self, child_id: str, message: str | None = None) -> None:
        self.child_id = child_id
        super().__init__(message or f"{self.code}: {child_id!r}")


class AlreadyStarted(SupervisorError):
    code = "already_started"


class AlreadyPresent(SupervisorError):
    code = "already_present"


class NotFound(SupervisorError):
    code = "not_found"


class Running(SupervisorError):
    code = "running"


class SupervisorClosed(SupervisorError):
    code = "shutdown"


class MaxChildren(SupervisorError):
    code = "max_children"


class StartError(SupervisorError):
    """A child failed to start; children started before it were rolled back."""

    code = "start_error"

    def __init__(self, child_id: str, reason: BaseException | str) -> None:
        self.reason = reason
        super().__init__(child_id, f"child {child_id!r} failed to start: {describe(reason)}")


class RestartIntensityExceeded(ZiggieError):
    """More than ``max_restarts`` within ``max_seconds``: the supervisor escalates."""

    def __init__(self, path: str, child_id: str, max_restarts: int, max_seconds: float) -> None:
        self.path = path
        self.child_id = child_id
        super().__init__(
            f"supervisor {path!r} reached max restart intensity "
            f"({max_restarts} in {max_seconds:g}s) restarting {child_id!r}"
        )


class AutoShutdownExit(ZiggieError):
    """A supervisor shut itself down because its significant children ended (OTP's
    ``auto_shutdown``).

    Raised out of :func:`open_supervisor`'s block so that the node serving it ends with
    outcome ``shutdown``, as OTP's supervisor exits with reason ``shutdown``: a permanent
    node is restarted by its parent, a transient one is not. ``open_runtime``'s block
    ends quietly instead (the root has no parent to tell).
    """

    def __init__(self, path: str, child_id: str, auto_shutdown: str) -> None:
        self.path = path
        self.child_id = child_id
        super().__init__(
            f"supervisor {path!r} shut itself down: significant child {child_id!r} "
            f"ended (auto_shutdown={auto_shutdown})"
        )


class InvalidTransition(ZiggieError):
    """A lifecycle moved in a way its state machine forbids."""


class ActorError(ZiggieError):
    """Talking to an actor failed."""


class ActorNotRunning(ActorError):
    pass


class ActorDied(ActorError):
    pass


class MailboxFull(ActorError):
    pass


def describe(reason: BaseException | str | None) -> str:
    """One line for a log or a response: single-member groups are unwrapped."""
    while isinstance(reason, BaseExceptionGroup) and len(reason.exceptions) == 1:
        reason = reason.exceptions[0]
    if reason is None:
        return ""
    if isinstance(reason, str):
        return reason
    text = str(reason)
    return f"{type(reason).__name__}: {text}" if text else type(reason).__name__
