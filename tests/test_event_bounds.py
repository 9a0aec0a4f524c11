"""What events keep is bounded in bytes, not only in count: the event store, events.jsonl,
and what one subscriber's backlog holds in memory at once."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from supervisor import SyncAgentDeploymentClient, json_events
from supervisor.coordinator._http._stream import EventHub

from .queue_helpers import serve_process


def _stored(db: Path) -> tuple[int, int, int]:
    """(rows, bytes of their data, lowest seq) of the event store."""
    with sqlite3.connect(db) as conn:
        rows, size, low = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0), MIN(seq) FROM events"
        ).fetchone()
    return int(rows), int(size), int(low or 0)


def test_event_retention_is_bounded_in_bytes(tmp_path: Path) -> None:
    """Large events are dropped oldest first once their bytes pass the budget, even far
    below the count limit; numbering goes on, and what is kept is the newest."""
    db = tmp_path / "journal.sqlite3"
    hub = EventHub(db, retention=100_000, retention_bytes=64 * 1024)
    try:
        for i in range(2000):
            hub.on_event("big", {"i": i, "blob": "b" * 1000})
        rows, size, low = _stored(db)
        assert size <= 64 * 1024
        assert rows >= 32  # the budget is used, not emptied
        assert hub.seq == 2000
        assert low == 2000 - rows + 1  # contiguous: the newest are kept
    finally:
        hub.close()
    reopened = EventHub(db, retention=100_000, retention_bytes=64 * 1024)
    try:
        assert reopened.seq == 2000  # numbering never goes back
    finally:
        reopened.close()


async def _frames(stream: AsyncIterator[bytes], upto: int) -> list[int]:
    ids: list[int] = []
    async for chunk in stream:
        for line in chunk.decode().split("\n"):
            if line.startswith("id: "):
                ids.append(int(line[4:]))
        if ids and ids[-1] >= upto:
            break
    return ids


@pytest.mark.anyio
async def test_a_backlog_is_read_in_bounded_pages(tmp_path: Path) -> None:
    """``since`` never returns more than a page; a stream still replays the whole backlog,
    in order, without a gap or a duplicate (both backends)."""
    hub = EventHub(tmp_path / "journal.sqlite3", page=100)
    try:
        for i in range(1050):
            hub.on_event("e", {"i": i})
        assert len(hub.since(0)) == 100
        assert [seq for seq, _ in hub.since(1000)] == list(range(1001, 1051))
        stream = hub.stream(0)
        try:
            ids = await _frames(stream, 1050)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        assert ids == list(range(1, 1051))
    finally:
        hub.close()


def test_json_events_rotates_a_file_by_size(tmp_path: Path) -> None:
    """Past *max_bytes* the file becomes ``.1`` and a new one starts: both stay bounded,
    every line whole, and the newest events are in the live file."""
    path = tmp_path / "events.jsonl"
    events = json_events(path, max_bytes=4096)
    for i in range(500):
        events.emit("tick", i=i, pad="p" * 100)
        assert path.stat().st_size <= 4096
    backup = tmp_path / "events.jsonl.1"
    assert 0 < backup.stat().st_size <= 4096
    kept = [json.loads(line) for p in (backup, path) for line in p.read_text().splitlines()]
    numbers = [e["i"] for e in kept]
    assert numbers == list(range(numbers[0], 500))  # no gap, no torn line
    assert (path.stat().st_mode & 0o777) == 0o600


def test_serve_keeps_events_jsonl_within_its_size(tmp_path: Path) -> None:
    """``ziggie serve`` rotates its events file by size as it writes (not hourly)."""
    home = tmp_path / "home"
    env = {**os.environ, "ZIGGIE_EVENTS_MAX_BYTES": "8192"}
    with (
        serve_process(home, env=env),
        SyncAgentDeploymentClient(home / "agent-queue") as client,
    ):
        for _ in range(150):
            assert client.check_agent_status("nobody").code == "not_found"
        assert (home / "events.jsonl").stat().st_size <= 8192
        assert (home / "events.jsonl.1").stat().st_size <= 8192


def _line(name: str) -> str:
    return json.dumps({"event": name, "agent_id": "a"}) + "\n"


def test_events_follow_goes_on_across_a_rotation(tmp_path: Path) -> None:
    """``ziggie events -f`` reads the rotated file's lines first, and once the live file is
    renamed away it finishes it and follows the new one."""
    import select
    import subprocess
    import sys
    import time

    home = tmp_path / "home"
    home.mkdir()
    events = home / "events.jsonl"
    (home / "events.jsonl.1").write_text(_line("older"))
    events.write_text(_line("first"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "supervisor.cli", "events", "-f", "--home", str(home)],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    seen: list[str] = []
    pending = b""

    def until(name: str) -> None:
        nonlocal pending
        deadline = time.monotonic() + 30  # another process's output: a read with a deadline
        while name not in seen:
            left = deadline - time.monotonic()
            assert left > 0, f"no {name!r} in {seen}"
            if select.select([fd], [], [], left)[0]:
                pending += os.read(fd, 65536)
                *lines, pending = pending.split(b"\n")
                seen.extend(json.loads(line)["event"] for line in lines)

    try:
        until("first")
        with open(events, "a") as f:
            f.write(_line("before-rotation"))
        os.replace(events, home / "events.jsonl.1")
        events.write_text(_line("after-rotation"))
        until("after-rotation")
        assert seen == ["older", "first", "before-rotation", "after-rotation"]
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
