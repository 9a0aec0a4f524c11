"""How a child's run ended, whatever escaped it: the classification the kernel's total
incarnation runner relies on, whatever a child raises.
"""

from __future__ import annotations

from typing import Final

import anyio

from ._errors import AutoShutdownExit, RestartIntensityExceeded
from ._policy import Outcome

#: The host's own exits: a child raising one stops the whole tree, then it propagates.
HOST_EXITS: Final = (KeyboardInterrupt, SystemExit)

EXIT_EVENTS: Final = {
    Outcome.NORMAL: "exited",
    Outcome.ERROR: "exited",
    Outcome.SHUTDOWN: "terminated",
    Outcome.TIMEOUT: "timed_out",
}


def without_cancelled(exc: BaseException) -> BaseException | None:
    """*exc* with the backend's cancellation split out (as trio's own ``_core`` does).

    A child's task group may end as ``[Cancelled, ValueError]`` when its cleanup raises
    during a stop: the error is the child's, the cancellation ours.
    """
    cancelled = anyio.get_cancelled_exc_class()
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(cancelled)[1]
    return None if isinstance(exc, cancelled) else exc


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions of *exc*, with nested groups flattened."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def classify(
    exc: BaseException, cancel_called: bool
) -> tuple[Outcome, BaseException | None, BaseException | None]:
    """``(outcome, reason, reraise)`` for *exc* escaping a child's start function.

    *cancel_called* says whether the incarnation's own scope was cancelled (a stop or its
    deadline). *reraise* is what must propagate once the incarnation has ended: the
    host's ``KeyboardInterrupt``/``SystemExit``, or a cancellation that is not ours.
    """
    rest = without_cancelled(exc)
    if rest is None:  # only cancellation
        return (Outcome.NORMAL, None, None) if cancel_called else (Outcome.SHUTDOWN, exc, exc)
    if is_host_exit(rest):
        return Outcome.ERROR, rest, rest
    found = leaves(rest)
    if all(isinstance(leaf, RestartIntensityExceeded | AutoShutdownExit) for leaf in found):
        # OTP: a supervisor that gives up, or shuts itself down once its significant
        # children ended, exits with reason shutdown, so a transient supervisor child is
        # not restarted by its parent.
        return Outcome.SHUTDOWN, rest, None
    # Any other BaseException is an abnormal exit of the child.
    return Outcome.ERROR, rest, None


def is_host_exit(exc: BaseException) -> bool:
    """True if *exc* is, or holds, the host's ``KeyboardInterrupt``/``SystemExit``."""
    return any(isinstance(leaf, HOST_EXITS) for leaf in leaves(exc))


def sole(exc: BaseException) -> BaseException:
    """The only exception inside *exc* if there is exactly one, else *exc* itself.

    Supervisors raise a lone error unwrapped, identically on trio and asyncio (whose
    group messages differ); several errors stay an exception group.
    """
    found = leaves(exc)
    return found[0] if len(found) == 1 else exc
