"""Housekeeping: a coordinator left running for days does not grow without bound.

What is kept, by the retention settings (issue 11):

- answers in ``responses/`` and the journal's answered requests: ``retain_answers_seconds``
  (a client reads its answer at once; after that the file is history). A request id
  resubmitted after its journal row went is executed again: the window of exactly-once.
- day directories of ``archive/``: ``retain_archive_days``;
- finished agents (their journal rows, so ``status`` says not found after that):
  ``retain_finished_seconds`` after they ended;
- ``events.jsonl``: copied to ``events.jsonl.1`` and truncated in place once over
  ``events_max_bytes`` (the coordinator appends with O_APPEND, so it writes on at the new
  end; lines written between the copy and the truncation are lost, as with logrotate's
  ``copytruncate``).

It runs every ``prune_interval_seconds`` inside the coordinator, and on demand
(``ziggie prune``: the ``prune`` action, or directly on the home when no coordinator runs).
The journal is pruned through its own SQLite connection (WAL allows it beside the
coordinator's), in a worker thread, so the event loop never waits on it.
"""

from __future__ import annotations

import datetime
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import anyio

from supervisor.protocol import ARCHIVE, RESPONSES, DeploymentRequest, DeploymentResponse

from ._settings import Settings
from ._states import LIVE_STATES

EVENTS_NAME = "events.jsonl"
JOURNAL_NAME = "journal.sqlite3"


def prune_home(settings: Settings, now: float | None = None) -> dict[str, Any]:
    """Drop what *settings* no longer retains under its home; what was dropped, counted."""
    now = time.time() if now is None else now
    home = Path(settings.home)
    queue = home / "agent-queue"
    report: dict[str, Any] = {
        "responses": _prune_files(queue / RESPONSES, now - settings.retain_answers_seconds),
        "archive_days": _prune_archive(queue / ARCHIVE, now, settings.retain_archive_days),
    }
    report.update(_prune_journal(home / JOURNAL_NAME, now, settings))
    report["events_rotated"] = _rotate(home / EVENTS_NAME, settings.events_max_bytes)
    return report


async def housekeeping(settings: Settings) -> None:
    """Prune every ``prune_interval_seconds`` until cancelled (a coordinator's task)."""
    while True:
        await anyio.sleep(settings.prune_interval_seconds)
        await anyio.to_thread.run_sync(prune_home, settings)


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


def _prune_journal(path: Path, now: float, settings: Settings) -> dict[str, int]:
    if not path.exists():
        return {"requests": 0, "agents": 0}
    db = sqlite3.connect(path, timeout=10, isolation_level=None)
    try:
        with db:
            requests = db.execute(
                "DELETE FROM requests WHERE answered_at IS NOT NULL AND answered_at < ?",
                (now - settings.retain_answers_seconds,),
            ).rowcount
            marks = ",".join("?" * len(LIVE_STATES))
            agents = db.execute(
                f"DELETE FROM agents WHERE state NOT IN ({marks})"
                " AND ended_at IS NOT NULL AND ended_at < ?",
                (*LIVE_STATES, now - settings.retain_finished_seconds),
            ).rowcount
    finally:
        db.close()
    return {"requests": requests, "agents": agents}


def _rotate(events: Path, max_bytes: int) -> bool:
    try:
        if events.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    shutil.copyfile(events, events.with_name(EVENTS_NAME + ".1"))
    os.truncate(events, 0)
    return True


async def prune_request(settings: Settings, request: DeploymentRequest) -> DeploymentResponse:
    """The ``prune`` action: prune now, answer with what was dropped (in ``agent``)."""
    report = await anyio.to_thread.run_sync(prune_home, settings)
    return DeploymentResponse(
        request_id=request.request_id,
        status="completed",
        agent_id="all",
        message="pruned",
        agent=report,
    )
