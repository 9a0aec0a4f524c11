"""Running out of file descriptors is the machine's trouble, never an agent's crash.

``ziggie serve`` raises its soft descriptor limit to the hard one at start, and a spawn
that finds no descriptor left (EMFILE, ENFILE) waits and tries again: it never counts
toward the restart intensity, so it never gives an agent up.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from actors import ProcessHandle, process_spec
from supervisor import ChildState, Restart, no_events, open_runtime, supervisor_spec

from .helpers import real_clock_backend as anyio_backend  # noqa: F401
from .queue_helpers import reap_descendants, wait_ready
from .waiting import event_waits

pytestmark = pytest.mark.anyio


class _Exhaust:
    """Takes every free descriptor when *agent_id* exits; gives them back at the first
    ``spawn_retry``: its restart is the spawn that finds none."""

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id
        self.held: list[int] = []
        self.exhausted = False

    def __call__(self, name: str, fields: dict[str, Any]) -> None:
        if fields.get("agent_id") != self.agent_id:
            return
        if name == "exited" and not self.exhausted:
            self.exhausted = True
            with contextlib.suppress(OSError):
                while True:
                    self.held.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
        elif name == "spawn_retry":
            self.release()

    def release(self) -> None:
        while self.held:
            os.close(self.held.pop())


async def test_descriptor_exhaustion_at_spawn_is_waited_out_never_a_crash(
    tmp_path: Path,
) -> None:
    """Its supervisor allows one restart; the crash takes it, and the restart's spawn finds
    no descriptor left. It waits (``spawn_retry``) instead of failing: no second crash is
    counted, nothing escalates, and the agent runs again."""
    child = process_spec(
        "fdx",
        [sys.executable, "-c", "import time; time.sleep(300)"],
        log_path=tmp_path / "fdx.log",
        restart=Restart.PERMANENT,
    )
    exhaust = _Exhaust("fdx")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    async with open_runtime(events=no_events()) as rt:
        with event_waits(rt) as waits, rt.events.listen(exhaust):
            await rt.start_child(supervisor_spec("sup", [child], max_restarts=1, max_seconds=3600))
            first = rt.whereis("fdx")
            assert isinstance(first, ProcessHandle)
            highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
            try:
                # Descriptors are numbers below the soft limit: a few free ones, then none.
                resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 32, hard))
                os.kill(first.pid, signal.SIGKILL)
                await waits.event("restarted", "fdx", timeout=30)
            finally:
                exhaust.release()
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            retries = [f for n, f in waits.seen if n == "spawn_retry"]
            assert retries
            assert "Too many open files" in retries[0]["error"]
            assert not [n for n, _ in waits.seen if n in ("escalated", "start_failed")]
            info = rt.info("fdx")
            assert info.state is ChildState.RUNNING
            assert info.restarts == 1
            second = rt.whereis("fdx")
            assert isinstance(second, ProcessHandle)
            assert second.pid != first.pid


def test_serve_raises_its_soft_descriptor_limit_to_the_hard_one(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = min(hard, 4096)

    def low_soft_limit() -> None:  # in the child, before exec (a test may fork)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, ceiling))

    proc = subprocess.Popen(
        [sys.executable, "-m", "supervisor.cli", "serve", "--home", str(home), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=low_soft_limit,
    )
    try:
        wait_ready(home, proc)
        limits = Path(f"/proc/{proc.pid}/limits").read_text().splitlines()
        line = next(x for x in limits if x.startswith("Max open files"))
        assert line.split()[3:5] == [str(ceiling), str(ceiling)]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        reap_descendants([])
