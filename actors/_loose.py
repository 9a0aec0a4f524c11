"""Stopping loose processes (no live tree: what a crashed runtime left), and log names."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

import anyio

from ._procfs import read_stat, wait_gone
from ._proctree import KILL_ROUNDS, KILL_WAIT, StopReport


def log_path_for(log_dir: Path, agent_id: str) -> Path:
    """``<log_dir>/<agent_id>_<YYYYmmdd_HHMMSS>.log``, the seed's naming."""
    return log_dir / f"{agent_id}_{time.strftime('%Y%m%d_%H%M%S')}.log"


async def stop_processes(pids: Iterable[int], grace: float) -> StopReport:
    """SIGTERM *pids*, wait up to *grace*, SIGKILL the rest; bounded, shielded.

    For processes that belong to no live tree (what a crashed runtime left). Gives up
    after a few SIGKILL rounds (an unkillable process in D state) and says so in
    ``report.left`` instead of looping forever.
    """
    report = StopReport(terminated=sorted(set(pids)))
    t0 = time.perf_counter()
    with anyio.CancelScope(shield=True):
        alive = set(report.terminated)
        sig = signal.SIGTERM
        wait = grace
        for _ in range(KILL_ROUNDS + 1):
            if not alive:
                break
            for pid in alive:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            with anyio.move_on_after(wait):
                await wait_gone(alive)
            alive = {pid for pid in alive if (st := read_stat(pid)) is not None and not st.zombie}
            if sig is signal.SIGKILL:
                report.killed = sorted(set(report.killed) | alive)
            elif alive:
                report.killed = sorted(alive)
            sig, wait = signal.SIGKILL, KILL_WAIT
        report.left = sorted(alive)
    report.seconds = time.perf_counter() - t0
    return report
