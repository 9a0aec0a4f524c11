"""Housekeeping: a coordinator left running for days does not grow without bound.

What is kept, by the retention settings (issue 11):

- answers in ``responses/`` (the operator's and each agent's) and the journal's answered
  requests: ``retain_answers_seconds`` (a client reads its answer at once; after that the
  file is history). A request id resubmitted after its journal row went is executed
  again: the window of exactly-once.
- day directories of ``archive/``: ``retain_archive_days``;
- finished agents (their journal rows, so ``status`` says not found after that, and
  their own directories): ``retain_finished_seconds`` after they ended;
- ``events.jsonl``: ``ziggie serve`` rotates it by size as it writes (past
  ``events_max_bytes`` it becomes ``events.jsonl.1``); a prune of a stopped home renames
  an oversized file the same way. A running coordinator's prune leaves the file to its
  writer (a rename under it would only move its next lines into the backup).

It runs every ``prune_interval_seconds`` inside the coordinator, and on demand
(``ziggie prune``: the ``prune`` action, or directly on the home when no coordinator runs).
The journal is pruned through its own SQLite connection (WAL allows it beside the
coordinator's), in a worker thread, so the event loop never waits on it.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import sqlite3
import stat
import time
from pathlib import Path
from typing import Any

import anyio

from supervisor import is_valid_id
from supervisor.protocol import ARCHIVE, RESPONSES, DeploymentRequest, DeploymentResponse

from ._agents import AgentHome
from ._queues import open_below
from ._settings import Settings
from ._states import LIVE_STATES

EVENTS_NAME = "events.jsonl"
JOURNAL_NAME = "journal.sqlite3"


def prune_home(
    settings: Settings, now: float | None = None, *, rotate_events: bool = True
) -> dict[str, Any]:
    """Drop what *settings* no longer retains under its home; what was dropped, counted.

    *rotate_events* is False inside a coordinator: its events file rotates as it is written.
    """
    now = time.time() if now is None else now
    home = Path(settings.home)
    queue = home / "agent-queue"
    answers_before = now - settings.retain_answers_seconds
    report: dict[str, Any] = {
        "responses": _prune_files(queue / RESPONSES, answers_before)
        + _prune_agents_answers(AgentHome(home), answers_before),
        "archive_days": _prune_archive(queue / ARCHIVE, now, settings.retain_archive_days),
    }
    counts, gone = _prune_journal(home / JOURNAL_NAME, now, settings)
    report.update(counts)
    report["agent_dirs"] = _prune_agent_dirs(
        AgentHome(home), gone, now - settings.retain_finished_seconds
    )
    rotated = rotate_events and _rotate(home / EVENTS_NAME, settings.events_max_bytes)
    report["events_rotated"] = rotated
    return report


async def housekeeping(settings: Settings) -> None:
    """Prune every ``prune_interval_seconds`` until cancelled (a coordinator's task)."""
    while True:
        await anyio.sleep(settings.prune_interval_seconds)
        await anyio.to_thread.run_sync(_prune_served, settings)


def _prune_served(settings: Settings) -> dict[str, Any]:
    return prune_home(settings, rotate_events=False)


def _prune_files(directory: Path, before: float) -> int:
    dropped = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    for entry in entries:
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < before:
                os.unlink(entry.path)
                dropped += 1
        except FileNotFoundError:
            pass
    return dropped


def _prune_archive(archive: Path, now: float, days: int) -> int:
    oldest = datetime.date.fromtimestamp(now) - datetime.timedelta(days=days)
    dropped = 0
    try:
        entries = list(os.scandir(archive))
    except FileNotFoundError:
        return 0
    for entry in entries:
        try:
            day = datetime.date.fromisoformat(entry.name)
        except ValueError:
            continue  # not a day directory of ours: leave it
        if day < oldest and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
            dropped += 1
    return dropped


def _prune_agents_answers(home: AgentHome, before: float) -> int:
    """Old answers in each agent's ``responses/``: a directory its agent could write, so
    reached without following links and pruned through its fd."""
    dropped = 0
    try:
        agents = os.open(home.agents, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return 0
    try:
        for agent_id in os.listdir(agents):
            if not is_valid_id(agent_id):
                continue
            try:
                fd = open_below(agents, agent_id, "agent-queue", RESPONSES)
            except OSError:
                continue
            try:
                for name in os.listdir(fd):
                    with contextlib.suppress(OSError):
                        info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                        if not stat.S_ISDIR(info.st_mode) and info.st_mtime < before:
                            os.unlink(name, dir_fd=fd)
                            dropped += 1
            finally:
                os.close(fd)
    finally:
        os.close(agents)
    return dropped


def _prune_agent_dirs(home: AgentHome, gone: list[str], before: float) -> int:
    """The directories of agents whose journal rows went just now, unless touched since
    *before* (a deploy of the same id in progress links its lock into it)."""
    dropped = 0
    for agent_id in gone:
        if not is_valid_id(agent_id):
            continue
        top = home.agent_dir(agent_id)
        try:
            info = os.lstat(top)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(info.st_mode) and info.st_mtime < before:
            shutil.rmtree(top, ignore_errors=True)  # never follows links (fd-based)
            with contextlib.suppress(OSError):
                os.rmdir(home.agent_processing(agent_id))
            dropped += 1
    return dropped


def _prune_journal(path: Path, now: float, settings: Settings) -> tuple[dict[str, int], list[str]]:
    """Old answered requests and finished agents; the counts, and the agents' ids."""
    if not path.exists():
        return {"requests": 0, "agents": 0}, []
    db = sqlite3.connect(path, timeout=10, isolation_level=None)
    try:
        with db:
            requests = db.execute(
                "DELETE FROM requests WHERE answered_at IS NOT NULL AND answered_at < ?",
                (now - settings.retain_answers_seconds,),
            ).rowcount
            marks = ",".join("?" * len(LIVE_STATES))
            finished = (
                f"FROM agents WHERE state NOT IN ({marks})"
                " AND ended_at IS NOT NULL AND ended_at < ?"
            )
            params = (*LIVE_STATES, now - settings.retain_finished_seconds)
            gone = [row[0] for row in db.execute(f"SELECT agent_id {finished}", params)]
            agents = db.execute(f"DELETE {finished}", params).rowcount
    finally:
        db.close()
    return {"requests": requests, "agents": agents}, gone


def _rotate(events: Path, max_bytes: int) -> bool:
    try:
        if events.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    os.replace(events, events.with_name(EVENTS_NAME + ".1"))
    os.close(os.open(events, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))  # `ziggie events`
    return True


async def prune_request(settings: Settings, request: DeploymentRequest) -> DeploymentResponse:
    """The ``prune`` action: prune now, answer with what was dropped (in ``agent``)."""
    report = await anyio.to_thread.run_sync(_prune_served, settings)
    return DeploymentResponse(
        request_id=request.request_id,
        status="completed",
        agent_id="all",
        message="pruned",
        agent=report,
    )
