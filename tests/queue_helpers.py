"""Helpers for file-queue tests: an in-process coordinator, a subprocess one, request files."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import psutil
from inotify_simple import INotify
from inotify_simple import flags as iflags

from supervisor import Runtime, no_events, open_runtime
from supervisor.coordinator import Coordinator, Settings, open_coordinator
from supervisor.protocol import LOCK_NAME

from .helpers import TEST_PROGRAMS
from .waiting import until_files, until_gone_sync


@asynccontextmanager
async def coordinator(home: Path, **settings: Any) -> AsyncIterator[tuple[Runtime, Coordinator]]:
    """A coordinator serving *home* inside this test's event loop."""
    async with (
        open_runtime(events=no_events()) as rt,
        open_coordinator(rt, Settings(home=home, **settings)) as coord,
    ):
        yield rt, coord


@contextmanager
def serve_process(
    home: Path, *extra: str, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``ziggie serve --home HOME`` as a real process, ready when it yields."""
    events = home / "events.jsonl"
    seen = events.stat().st_size if events.exists() else 0  # an earlier run's lines
    proc = subprocess.Popen(
        [sys.executable, "-m", "supervisor.cli", "serve", "--home", str(home), "--quiet", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    descendants: list[psutil.Process] = []
    try:
        wait_ready(home, proc, after=seen)
        yield proc
    finally:
        with contextlib.suppress(psutil.Error):
            descendants = psutil.Process(proc.pid).children(recursive=True)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
        reap_descendants(descendants)


@contextmanager
def fake_coordinator(home: Path) -> Iterator[Path]:
    """A home whose lock is held (as a coordinator holds it) while nothing answers.

    Yields its queue directory: a test plays the coordinator by writing answers itself.
    """
    queue = home / "agent-queue"
    for sub in ("requests", "responses"):
        (queue / sub).mkdir(parents=True, exist_ok=True)
    fd = os.open(home / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield queue
    finally:
        os.close(fd)


def reap_descendants(procs: list[psutil.Process], timeout: float = 10) -> None:
    """Wait for a dead coordinator's helpers (its watchdog) to finish, and reap those
    that re-parented to us (pytest is a subreaper once a test made it one)."""
    alive = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if proc.is_running():  # the same process (its start time), not a reused pid
                alive.append(proc.pid)
    # Lenient, as a test may leave a dead coordinator's agents running on purpose.
    until_gone_sync(alive, timeout, strict=False)
    for proc in procs:
        with contextlib.suppress(ChildProcessError):  # not ours: init reaps it
            os.waitpid(proc.pid, os.WNOHANG)


def wait_ready(
    home: Path, proc: subprocess.Popen[bytes], timeout: float = 30, *, after: int = 0
) -> None:
    """Until the coordinator has written its ``coordinator_ready`` event past byte *after*
    of the events file (an earlier coordinator's line is not this one's); inotify on the
    home, the short read timeout only notices a coordinator that exited early."""
    events = home / "events.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "coordinator exited early"
        with INotify() as ino:  # the home, or its parent until the home exists
            target = home if home.exists() else home.parent
            ino.add_watch(str(target), iflags.MODIFY | iflags.CREATE | iflags.CLOSE_WRITE)
            if events.exists() and '"coordinator_ready"' in events.read_text()[after:]:
                return
            ino.read(timeout=200)
    raise AssertionError("coordinator did not become ready")


def drop(home: Path, name: str, content: bytes | str | dict[str, Any]) -> Path:
    """Put a request file in place the way a careful writer does (temp, then rename)."""
    requests = home / "agent-queue" / "requests"
    requests.mkdir(parents=True, exist_ok=True)
    data = (
        content
        if isinstance(content, bytes)
        else (content.encode() if isinstance(content, str) else json.dumps(content).encode())
    )
    tmp = requests / f".{name}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, requests / name)
    return requests / name


def answer_of(home: Path, file_id: str) -> tuple[str, dict[str, Any]] | None:
    responses = home / "agent-queue" / "responses"
    for kind in ("response", "error"):
        path = responses / f"{file_id}.{kind}.json"
        if path.exists():
            return kind, json.loads(path.read_text())
    return None


async def await_answer(home: Path, file_id: str, timeout: float = 20) -> tuple[str, dict[str, Any]]:
    """The answer to *file_id*, looked for at every change in ``responses/``."""
    found: list[tuple[str, dict[str, Any]]] = []

    def answered() -> bool:
        answer = answer_of(home, file_id)
        found[:] = [answer] if answer is not None else []
        return answer is not None

    await until_files([home / "agent-queue" / "responses"], answered, timeout)
    return found[0]


def status_request(request_id: str, target: str = "nobody") -> dict[str, Any]:
    return {
        "request_id": request_id,
        "parent_agent": "Ziggie",
        "action": "status_check",
        "target_agent_id": target,
    }


def agent_spec(agent_id: str, workdir: Path, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "id": agent_id,
        "level": "L1",
        "name": agent_id,
        "role": "test",
        "task": "test task",
        # What test agents start (the demo agent's DEMO_GRANDCHILD ``sleep``, the escapee
        # scripts): they may execute it, and so may their parents (never wider).
        "context": {"working_directory": str(workdir), "permissions": {"execute": TEST_PROGRAMS}},
        "max_iterations": 1000,
        "env": {"DEMO_PACE": "0.05"},
    }
    spec.update(extra)
    return spec
