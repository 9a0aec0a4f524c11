"""Restart policy as plain data: restart types, strategies, shutdown specs, intensity, backoff.

Names and meanings follow Erlang/OTP's ``supervisor`` so that its documentation applies.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, TypedDict


class Restart(StrEnum):
    """When a child is restarted after it exits."""

    PERMANENT = "permanent"  #: always
    TRANSIENT = "transient"  #: only after an abnormal exit (error or timeout)
    TEMPORARY = "temporary"  #: never; the child spec is deleted when it exits


class Strategy(StrEnum):
    """Which siblings are restarted with a failed child."""

    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


class StopOrder(StrEnum):
    """How a supervisor stops several children (its shutdown, a group restart).

    ``reverse`` is OTP's: newest first, each only after the one before it is gone, for
    children that depend on their elders. ``concurrent`` is OTP's for the dynamic
    children of a ``simple_one_for_one`` supervisor: independent, so all are asked to stop
    at once and awaited together; a child's own subtree still stops before it.
    """

    REVERSE = "reverse"
    CONCURRENT = "concurrent"


class AutoShutdown(StrEnum):
    """Whether the exit of *significant* children ends the supervisor (OTP 24)."""

    NEVER = "never"
    ANY_SIGNIFICANT = "any_significant"
    ALL_SIGNIFICANT = "all_significant"


class Outcome(StrEnum):
    """How an incarnation ended."""

    NORMAL = "normal"  #: returned
    SHUTDOWN = "shutdown"  #: stopped by its supervisor
    TIMEOUT = "timeout"  #: its own deadline passed
    ERROR = "error"  #: raised, or a process exited non-zero / by a signal

    @property
    def abnormal(self) -> bool:
        """OTP's "abnormal": anything but normal and shutdown restarts a transient child."""
        return self in (Outcome.ERROR, Outcome.TIMEOUT)


def should_restart(restart: Restart, outcome: Outcome) -> bool:
    if restart is Restart.PERMANENT:
        return True
    if restart is Restart.TRANSIENT:
        return outcome.abnormal
    return False


@dataclass(frozen=True, slots=True)
class Shutdown:
    """How long a child may take to stop (OTP's ``shutdown``).

    ``Shutdown(5)`` allows 5 s of graceful cleanup, then kills; ``Shutdown.BRUTAL_KILL``
    kills at once; ``Shutdown.INFINITY`` waits as long as it takes (OTP's default for
    supervisors).
    """

    seconds: float | None = 5.0  # None: infinity
    brutal: bool = False

    BRUTAL_KILL: ClassVar[Shutdown]
    INFINITY: ClassVar[Shutdown]

    def __post_init__(self) -> None:
        if self.seconds is not None and self.seconds < 0:
            raise ValueError("shutdown seconds must be >= 0")

    @property
    def grace(self) -> float:
        """Seconds of graceful stop: 0 for brutal kill, ``inf`` for infinity."""
        if self.brutal:
            return 0.0
        return float("inf") if self.seconds is None else self.seconds

    @classmethod
    def parse(cls, value: float | str | Shutdown) -> Shutdown:
        """From the wire form: seconds, ``"brutal_kill"`` or ``"infinity"``."""
        if isinstance(value, Shutdown):
            return value
        if value == "brutal_kill":
            return cls(0.0, brutal=True)
        if value == "infinity":
            return cls(None)
        if isinstance(value, str):
            raise ValueError(f"unknown shutdown {value!r}")
        return cls(float(value))

    def __str__(self) -> str:
        if self.brutal:
            return "brutal_kill"
        return "infinity" if self.seconds is None else f"{self.seconds:g}"


Shutdown.BRUTAL_KILL = Shutdown(0.0, brutal=True)
Shutdown.INFINITY = Shutdown(None)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter before the n-th restart within the intensity window.

    ``delay(n) = min(initial * factor**(n-1), maximum) * (1 ± jitter)``; n starts at 1.
    """

    initial: float = 0.01
    maximum: float = 5.0
    factor: float = 2.0
    jitter: float = 0.1
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def delay(self, attempt: int) -> float:
        base = min(self.initial * self.factor ** max(attempt - 1, 0), self.maximum)
        if self.jitter:
            base *= 1.0 + self.rng.uniform(-self.jitter, self.jitter)
        return max(base, 0.0)


class Intensity:
    """OTP's restart intensity: at most ``max_restarts`` within a sliding ``max_seconds``."""

    __slots__ = ("_times", "max_restarts", "max_seconds")

    def __init__(self, max_restarts: int = 3, max_seconds: float = 5.0) -> None:
        if max_restarts < 0 or max_seconds <= 0:
            raise ValueError("max_restarts must be >= 0 and max_seconds > 0")
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self._times: deque[float] = deque()

    def record(self, now: float) -> bool:
        """Count a restart at *now*; True if that exceeds the intensity."""
        self._times.append(now)
        while self._times and self._times[0] <= now - self.max_seconds:
            self._times.popleft()
        return len(self._times) > self.max_restarts

    @property
    def recent(self) -> int:
        """Restarts inside the current window (drives backoff)."""
        return len(self._times)


class SupervisorOptions(TypedDict, total=False):
    """The keyword options of every supervisor builder (``open_runtime``,
    ``open_supervisor``, ``supervisor_spec``), spelled once::

        supervisor_spec("w", children, strategy=Strategy.ONE_FOR_ALL, max_restarts=3)
    """

    strategy: Strategy  #: default ``one_for_one``
    max_restarts: int  #: default 3 (OTP's intensity)
    max_seconds: float  #: default 5.0 (OTP's period)
    backoff: Backoff | None  #: delay before each restart; default none
    auto_shutdown: AutoShutdown  #: default ``never``
    max_children: int | None  #: default unbounded
    stop_order: StopOrder  #: default ``reverse`` (newest first, one at a time)
