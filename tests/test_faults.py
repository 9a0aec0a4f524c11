"""Issue 10, items 2 and 12: file errors never end serving; the journal is the source of
truth, and its durability is a setting."""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from supervisor import AgentSpec, SyncAgentDeploymentClient
from supervisor.coordinator import _filequeue
from supervisor.protocol import write_atomic

from .queue_helpers import (
    agent_spec,
    await_answer,
    coordinator,
    drop,
    reap_descendants,
    serve_process,
    status_request,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


class Seen:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._changed = anyio.Event()

    def __call__(self, name: str, fields: dict[str, Any]) -> None:
        self.events.append((name, dict(fields)))
        self._changed.set()
        self._changed = anyio.Event()

    def of(self, name: str) -> list[dict[str, Any]]:
        return [f for n, f in self.events if n == name]

    async def wait(self, name: str, timeout: float = 20) -> dict[str, Any]:
        with anyio.fail_after(timeout):
            while not self.of(name):
                await self._changed.wait()
        return self.of(name)[0]


# -- item 2 ---------------------------------------------------------------------------


async def test_an_unreadable_request_is_answered_and_serving_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EACCES on a request file. We run as root, whom no file mode stops, so the OS
    boundary is faked: ``open`` of that one file fails as it would for another user."""
    home = tmp_path / "home"

    real_open = os.open

    def guarded_open(path: Any, *args: Any, **kwargs: Any) -> Any:
        if str(path).endswith("locked.request.json"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded_open)
    async with coordinator(home):
        drop(home, "locked.request.json", status_request("locked"))
        kind, body = await await_answer(home, "locked")
        assert kind == "error"
        assert body["error"] == "cannot read request file: Permission denied"
        drop(home, "after.request.json", status_request("after"))
        kind, body = await await_answer(home, "after")
        assert (kind, body["code"]) == ("response", "not_found")  # still serving


async def test_a_full_disk_while_answering_is_waited_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC writing the answer (faked at the file write: no tmpfs can be mounted here):
    retried with backoff, then answered; the coordinator never dies of it."""
    home = tmp_path / "home"
    failures = [2]

    def full_disk(path: Any, data: Any, **kwargs: Any) -> None:
        if str(path).endswith(".response.json") and failures[0] > 0:
            failures[0] -= 1
            raise OSError(errno.ENOSPC, "No space left on device")
        write_atomic(path, data, **kwargs)

    monkeypatch.setattr(_filequeue, "write_atomic", full_disk)
    seen = Seen()
    async with coordinator(home) as (rt, _):
        with rt.events.listen(seen):
            drop(home, "full.request.json", status_request("full"))
            kind, body = await await_answer(home, "full")
    assert (kind, body["request_id"]) == ("response", "full")
    retries = seen.of("request_retry")
    assert [r["file"] for r in retries] == ["full.request.json"] * 2
    assert "No space left on device" in retries[0]["error"]
    assert retries[1]["delay"] > retries[0]["delay"]


async def test_fd_exhaustion_is_waited_out(tmp_path: Path) -> None:
    """EMFILE for real: this process's descriptors are used up while a request arrives;
    the coordinator retries, and answers once some are free again."""
    home = tmp_path / "home"
    seen = Seen()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    async with coordinator(home) as (rt, _):
        with rt.events.listen(seen):
            used = len(os.listdir("/proc/self/fd"))
            resource.setrlimit(resource.RLIMIT_NOFILE, (used + 32, hard))
            hogs: list[int] = []
            try:
                with pytest.raises(OSError, match="Too many open files"):  # noqa: PT012
                    while True:
                        hogs.append(os.open(os.devnull, os.O_RDONLY))
                os.close(hogs.pop())  # one to write the request with
                drop(home, "starved.request.json", status_request("starved"))
                hogs.append(os.open(os.devnull, os.O_RDONLY))
                retry = await seen.wait("request_retry")
                assert "Too many open files" in retry["error"]
            finally:
                for fd in hogs:
                    os.close(fd)
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            kind, body = await await_answer(home, "starved")
            assert (kind, body["code"]) == ("response", "not_found")


def test_a_failed_redeploy_in_recovery_is_reported(tmp_path: Path) -> None:
    """Recovery cannot restart an agent whose working directory is gone: an event, and
    the reason in the journal (status shows it), never swallowed."""
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    with serve_process(home) as first, SyncAgentDeploymentClient(home / "agent-queue") as c:
        spec = AgentSpec.model_validate(agent_spec("mover", work, restart="permanent"))
        assert c.deploy_agent(spec).status == "deployed"
        descendants = psutil.Process(first.pid).children(recursive=True)
        first.send_signal(signal.SIGKILL)
        first.wait()
        reap_descendants(descendants)
    shutil.rmtree(work)
    with serve_process(home), SyncAgentDeploymentClient(home / "agent-queue") as c:
        status = c.check_agent_status("mover")
    assert status.agent is not None
    assert status.agent["state"] == "failed"
    assert status.agent["reason"].startswith("redeploy after recovery failed: ")
    assert "working_directory" in status.agent["reason"]
    events = [json.loads(x) for x in (home / "events.jsonl").read_text().splitlines()]
    failed = [e for e in events if e["event"] == "recovery_redeploy_failed"]
    assert [e["agent_id"] for e in failed] == ["mover"]


# -- item 12 --------------------------------------------------------------------------


@pytest.mark.parametrize("durability", ["full", "fast"])
async def test_answers_of_one_wake_up_share_one_fsync(tmp_path: Path, durability: str) -> None:
    """Group commit: 40 changes dropped at once are made durable by a few fsyncs, not 40;
    ``fast`` makes none."""
    home = tmp_path / "home"
    async with coordinator(home, durability=durability) as (_, coord):
        journal = coord.service.journal
        before = journal.fsyncs
        requests = home / "agent-queue" / "requests"
        for i in range(40):  # terminate requests change things: each must be durable
            body = {
                "request_id": f"t{i}",
                "parent_agent": "Ziggie",
                "action": "terminate_agent",
                "target_agent_id": f"nobody-{i}",
            }
            (requests / f".t{i}.tmp").write_text(json.dumps(body))
        for i in range(40):
            os.rename(requests / f".t{i}.tmp", requests / f"t{i}.request.json")
        for i in range(40):
            await await_answer(home, f"t{i}")
        fsyncs = journal.fsyncs - before
    if durability == "full":
        assert 1 <= fsyncs <= 4
    else:
        assert fsyncs == 0


def test_recovery_resends_answers_whose_files_were_lost(tmp_path: Path) -> None:
    """The journal is the source of truth: after a crash, an answer it recorded whose
    file is missing (or empty, as a power cut can leave it) is written again."""
    home = tmp_path / "home"
    with serve_process(home) as first, SyncAgentDeploymentClient(home / "agent-queue") as c:
        for i in range(3):
            c.terminate_agent(f"ghost-{i}")  # answered "not found", recorded
        drop(home, "kept.request.json", status_request("kept"))
        responses = home / "agent-queue" / "responses"
        deadline = time.monotonic() + 20
        while not (responses / "kept.response.json").exists():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        descendants = psutil.Process(first.pid).children(recursive=True)
        first.send_signal(signal.SIGKILL)
        first.wait()
        reap_descendants(descendants)
    answers = sorted(p for p in responses.iterdir() if not p.name.startswith("."))
    recorded = {p.name: p.read_text() for p in answers}
    lost, emptied = answers[0], answers[1]
    lost.unlink()
    emptied.write_text("")
    events_file = home / "events.jsonl"

    def resent_events() -> list[dict[str, Any]]:
        events = [json.loads(x) for x in events_file.read_text().splitlines()]
        return [e for e in events if e["event"] == "answers_resent"]

    with serve_process(home):
        deadline = time.monotonic() + 20
        while not (resent := resent_events()):  # the first serve's "ready" is in the file
            assert time.monotonic() < deadline
            time.sleep(0.02)
        now = {p.name: p.read_text() for p in responses.iterdir() if not p.name.startswith(".")}
    assert now == recorded
    assert sorted(resent[0]["request_ids"]) == sorted(
        p.name.removesuffix(".response.json") for p in (lost, emptied)
    )


def test_sqlite_errors_are_judged_by_their_code_not_their_text(tmp_path: Path) -> None:
    """A locked database may pass (transient); a broken statement never does, whatever
    its message says."""
    import sqlite3

    from supervisor.coordinator._loading import transient

    db = tmp_path / "j.sqlite3"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(db, timeout=0)
    try:
        with pytest.raises(sqlite3.OperationalError) as locked:
            other.execute("INSERT INTO t VALUES (1)")
        assert transient(locked.value)
        with pytest.raises(sqlite3.OperationalError) as broken:  # words without meaning
            sqlite3.connect(":memory:").execute("SELECT * FROM locked_full_unable_to_open")
        assert not transient(broken.value)
        assert not transient(sqlite3.OperationalError("database or disk is full"))
    finally:
        other.close()
        holder.close()
