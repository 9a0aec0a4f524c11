"""Strays: processes a crashed coordinator left running, found and stopped on recovery.

A process is a stray of this home only if it carries this home's runtime token **and**
the marker of an agent this home's journal believed alive, and, for the recorded leader,
its start time matches the record. A reused pid, or another home's agent of the same id
(issue 10, item 4: two homes may both run ``worker-1``), is not ours to touch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from actors import StopReport, marked_processes, stop_processes

#: Start times from psutil are floats rounded by the kernel's clock ticks.
_START_SLACK = 0.05


def _same_start(recorded: float | None, seen: float | None) -> bool:
    return recorded is not None and seen is not None and abs(recorded - seen) <= _START_SLACK


def strays_of(
    rows: Iterable[Mapping[str, Any]], token: str, *, fresh_token: bool = False
) -> dict[str, list[int]]:
    """The live processes of the journal *rows* (agents recorded as running).

    With *fresh_token* the home had no token before this coordinator (a journal from
    before tokens): then only a recorded leader whose pid and start time both match is
    recognised, since nothing else proves whose a process is.
    """
    wanted = {row["agent_id"]: row for row in rows}
    found: dict[str, list[int]] = {}
    if not wanted:
        return found
    for proc in marked_processes(token=None if fresh_token else token):
        row = wanted.get(proc.agent_id)
        if row is None:
            continue
        if proc.pid == row.get("pid"):
            recorded = row.get("pid_start")
            if (recorded is not None or fresh_token) and not _same_start(recorded, proc.started):
                continue  # the recorded pid was reused by someone else's process
        elif fresh_token:
            continue
        found.setdefault(proc.agent_id, []).append(proc.pid)
    return found


async def stop_strays(
    rows: Iterable[Mapping[str, Any]], grace: float, token: str, *, fresh_token: bool = False
) -> tuple[dict[str, list[int]], StopReport | None]:
    """Stop every stray of *rows*: SIGTERM, *grace*, SIGKILL (bounded).

    Returns the pids by agent, and the stop's report (its ``left`` names what could not
    be killed), or None if there was nothing to stop.
    """
    found = strays_of(rows, token, fresh_token=fresh_token)
    pids = [pid for group in found.values() for pid in group]
    report = await stop_processes(pids, grace) if pids else None
    return found, report
