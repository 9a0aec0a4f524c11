"""A clock fixture so virtual-time kernel tests also run on asyncio (issue 9, Tests).

On trio (MockClock) durations are exact; on asyncio they run on the real clock scaled
down, and an elapsed time may only come out later than expected, by a bounded slack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest


@dataclass(frozen=True)
class Clock:
    real: bool
    scale: float = 0.05  #: real seconds per test second on asyncio
    slack: float = 0.15  #: real seconds a loaded machine may add

    def s(self, seconds: float) -> float:
        """*seconds* of test time in this backend's seconds."""
        return seconds * self.scale if self.real else seconds

    def matches(self, elapsed: float, seconds: float) -> bool:
        """*elapsed* is *seconds* of test time: exactly on trio, else within the slack."""
        expected = self.s(seconds)
        if not self.real:
            return elapsed == pytest.approx(expected)
        return expected - 0.005 <= elapsed < expected + self.slack


@pytest.fixture(name="clock")
def clock_fixture(anyio_backend: Any) -> Clock:
    """Import ``clock_fixture`` into a test module to use ``clock``."""
    return Clock(real=anyio_backend == "asyncio")
