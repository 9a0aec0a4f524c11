"""Strays: processes a crashed coordinator left running, found and stopped on recovery.

A process is a stray of this home only if it carries the marker of an agent this home's
journal believed alive, and its pid and start time match the record where one exists; a
reused pid, or another home's agent of the same id, is not ours to touch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from actors import marked_processes, stop_processes


def strays_of(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[int]]:
    """The live processes of the journal *rows* (agents recorded as running)."""
    wanted = {row["agent_id"]: row for row in rows}
    found: dict[str, list[int]] = {}
    if not wanted:
        return found
    for proc in marked_processes():
        row = wanted.get(proc.agent_id)
        if row is None:
            continue
        if proc.pid == row.get("pid") and row.get("pid_start") not in (None, proc.started):
            continue  # the recorded pid was reused by someone else's process
        found.setdefault(proc.agent_id, []).append(proc.pid)
    return found


async def stop_strays(rows: Iterable[Mapping[str, Any]], grace: float) -> dict[str, list[int]]:
    """Stop every stray of *rows*: SIGTERM, *grace*, SIGKILL (bounded); pids by agent."""
    found = strays_of(rows)
    pids = [pid for group in found.values() for pid in group]
    if pids:
        await stop_processes(pids, grace)
    return found
