"""Issue 10, items 1, 3, 6: one agent's failure stays its own; deploys of one id are
serialized; a clean stop is recorded as one."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from supervisor import AgentDeploymentClient, AgentSpec, SyncAgentDeploymentClient
from supervisor.coordinator import Coordinator

from .queue_helpers import agent_spec, await_answer, coordinator, serve_process

pytestmark = pytest.mark.anyio

FLAPPER = [sys.executable, "-c", "import sys; sys.exit(7)"]


@pytest.fixture
def anyio_backend() -> str:
    return "trio"  # real processes; backend neutrality is covered in test_filequeue


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


class Events:
    """Every event of a runtime, and a way to wait for one (no sleeps)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self._changed = anyio.Event()

    def __call__(self, name: str, fields: dict[str, Any]) -> None:
        self.seen.append((name, dict(fields)))
        self._changed.set()
        self._changed = anyio.Event()

    def of(self, name: str, agent_id: str | None = None) -> list[dict[str, Any]]:
        return [f for n, f in self.seen if n == name and agent_id in (None, f.get("agent_id"))]

    async def wait(self, name: str, agent_id: str | None = None, timeout: float = 30) -> None:
        with anyio.fail_after(timeout):
            while not self.of(name, agent_id):
                await self._changed.wait()


async def test_a_flapping_agent_is_given_up_alone(work: Path, tmp_path: Path) -> None:
    """Item 1: a permanent agent whose command exits at once exceeds its own intensity; it
    is stopped and marked given up, and the coordinator and the healthy agent carry on."""
    home = tmp_path / "home"
    events = Events()
    async with (
        coordinator(home) as (rt, coord),
        AgentDeploymentClient(home / "agent-queue") as client,
    ):
        with rt.events.listen(events):
            healthy = AgentSpec.model_validate(agent_spec("healthy", work, restart="permanent"))
            assert (await client.deploy_agent(healthy)).status == "deployed"
            pid = (await client.check_agent_status("healthy")).pid
            flapper = agent_spec(
                "flapper", work, restart="permanent", command=FLAPPER, max_restarts=2
            )
            flapper["backoff_initial"] = 0  # no waiting in this test; backoff: below
            await client.deploy_agent(AgentSpec.model_validate(flapper))
            await events.wait("gave_up", "flapper")
            status = await client.check_agent_status("flapper")
            assert status.status == "failed"
            assert status.agent is not None
            assert status.agent["state"] == "given_up"
            assert status.agent["exit_code"] == 7
            assert "restarted more than 2 times" in status.agent["reason"]
            assert "exited with code 7" in status.agent["reason"]
            gave_up = events.of("gave_up", "flapper")[0]
            assert gave_up["exit_code"] == 7
            assert len(events.of("spawned", "flapper")) == 3  # the start and 2 restarts
            # the rest carries on: same healthy process, the coordinator answers
            still = await client.check_agent_status("healthy")
            assert (still.status, still.pid) == ("running", pid)
            listed = await client.list_agents()
            states = {a["agent_id"]: a["state"] for a in listed.agents or []}
            assert states == {"healthy": "running", "flapper": "given_up"}
            assert "flapper" not in rt
            assert "flapper.supervisor" not in rt
            # a given-up agent can be restarted on request, afresh
            again = await client.restart_agent("flapper")
            assert again.status == "deployed"
            await _until(coord, "flapper", "given_up")
            await client.terminate_agent("healthy")


async def test_restarts_back_off_by_default(work: Path, tmp_path: Path) -> None:
    """Item 1: the coordinator's defaults give every agent exponential backoff with jitter,
    its own intensity; a spec overrides them."""
    home = tmp_path / "home"
    async with (
        coordinator(home, agent_backoff_initial=0.2, agent_max_restarts=4) as (rt, _),
        AgentDeploymentClient(home / "agent-queue") as client,
    ):
        spec = agent_spec("calm", work, restart="permanent")
        assert (await client.deploy_agent(AgentSpec.model_validate(spec))).status == ("deployed")
        own = agent_spec("own", work, restart="transient", max_restarts=1, max_seconds=2)
        own["backoff_initial"], own["backoff_max"] = 0.5, 1.0
        assert (await client.deploy_agent(AgentSpec.model_validate(own))).status == ("deployed")
        calm = rt.whereis("calm.supervisor")
        assert calm.backoff is not None
        assert (calm.backoff.initial, calm.backoff.jitter > 0) == (0.2, True)
        assert (calm.intensity.max_restarts, calm.intensity.max_seconds) == (4, 60.0)
        mine = rt.whereis("own.supervisor")
        assert (mine.backoff.initial, mine.backoff.maximum) == (0.5, 1.0)
        assert (mine.intensity.max_restarts, mine.intensity.max_seconds) == (1, 2.0)
        await client.terminate_agent("calm")
        await client.terminate_agent("own")


async def test_terminate_during_backoff_ends_the_agent(work: Path, tmp_path: Path) -> None:
    """Item 1: an agent waiting out its restart backoff is terminated for good."""
    home = tmp_path / "home"
    events = Events()
    async with (
        coordinator(home) as (rt, coord),
        AgentDeploymentClient(home / "agent-queue") as client,
    ):
        with rt.events.listen(events):
            spec = agent_spec("slowpoke", work, restart="permanent", command=FLAPPER)
            spec["backoff_initial"] = 60
            await client.deploy_agent(AgentSpec.model_validate(spec))
            await events.wait("exited", "slowpoke")
            answer = await client.terminate_agent("slowpoke")
            assert answer.status == "terminated"
            assert "slowpoke.supervisor" not in rt
            detail = coord.service.agent_detail("slowpoke")
            assert detail is not None
            assert detail["state"] == "terminated"
            assert len(events.of("spawned", "slowpoke")) == 1


def test_a_permanent_agent_kill_9ed_past_its_limit_spares_the_coordinator(
    tmp_path: Path, work: Path
) -> None:
    """Item 1 through ``ziggie serve``: kill -9 a permanent agent four times (its limit is
    3): it is given up; serve keeps running, its other agent untouched."""
    home = tmp_path / "home"
    with serve_process(home) as serve, SyncAgentDeploymentClient(home / "agent-queue") as c:
        assert c.deploy_agent(AgentSpec.model_validate(agent_spec("other", work))).status == (
            "deployed"
        )
        other = c.check_agent_status("other").pid
        victim = agent_spec("victim", work, restart="permanent", max_restarts=3)
        victim["backoff_initial"] = 0.01
        assert c.deploy_agent(AgentSpec.model_validate(victim)).status == "deployed"
        for _ in range(4):
            pid = _wait_for(lambda: _running_pid(c, "victim"), "victim running")
            os.kill(pid, signal.SIGKILL)
            _wait_for(lambda p=pid: _running_pid(c, "victim") != p or None, "victim gone")
        _wait_for(lambda: _state(c, "victim") == "given_up" or None, "victim given up")
        status = c.check_agent_status("victim")
        assert status.agent is not None
        assert status.agent["signal"] == 9
        assert serve.poll() is None
        assert (c.check_agent_status("other").status, c.check_agent_status("other").pid) == (
            "running",
            other,
        )
    events = [json.loads(x) for x in (home / "events.jsonl").read_text().splitlines()]
    assert [e["agent_id"] for e in events if e["event"] == "gave_up"] == ["victim"]


async def test_concurrent_deploys_of_one_id_one_wins(work: Path, tmp_path: Path) -> None:
    """Item 3: two deploys of one id dropped at once: exactly one is deployed, the other
    refused as a conflict, and the winner's row and definition stay right."""
    home = tmp_path / "home"
    async with coordinator(home) as (rt, coord):
        for n in range(2):
            spec = agent_spec("twin", work, task=f"task {n}")
            request = {
                "request_id": f"twin-{n}",
                "parent_agent": "Ziggie",
                "action": "deploy_agent",
                "agent_spec": spec,
            }
            (home / "agent-queue" / "requests").mkdir(parents=True, exist_ok=True)
            (home / "agent-queue" / "requests" / f".twin-{n}.tmp").write_text(json.dumps(request))
        for n in range(2):  # both land in one wake-up of the coordinator
            os.rename(
                home / "agent-queue" / "requests" / f".twin-{n}.tmp",
                home / "agent-queue" / "requests" / f"twin-{n}.request.json",
            )
        answers = [(await await_answer(home, f"twin-{n}"))[1] for n in range(2)]
        statuses = sorted(a["status"] for a in answers)
        assert statuses == ["deployed", "failed"]
        winner = next(a for a in answers if a["status"] == "deployed")
        loser = next(a for a in answers if a["status"] == "failed")
        assert loser["code"] == "conflict"
        detail = coord.service.agent_detail("twin")
        assert detail is not None
        assert (detail["state"], detail["pid"]) == ("running", winner["pid"])
        task = f"task {winner['request_id'][-1]}"
        row = coord.service.journal.agent("twin")
        assert row is not None
        assert (row["spec"]["task"], row["request_id"]) == (task, winner["request_id"])
        definition = (home / ".claude" / "agents" / "twin.md").read_text()
        assert f"task: {json.dumps(task)}" in definition
        assert rt.info("twin").incarnation == 1
        await rt.terminate("twin.supervisor")


def test_a_clean_stop_is_recorded_and_not_recovered(tmp_path: Path, work: Path) -> None:
    """Item 6: SIGTERM to serve records each agent as stopped by the coordinator's
    shutdown before the journal closes; the next serve restarts none of them."""
    home = tmp_path / "home"
    with serve_process(home), SyncAgentDeploymentClient(home / "agent-queue") as c:
        spec = AgentSpec.model_validate(agent_spec("keeper", work, restart="permanent"))
        assert c.deploy_agent(spec).status == "deployed"
    # serve_process sent SIGTERM and waited for the exit
    db = sqlite3.connect(home / "journal.sqlite3")
    state, reason = db.execute(
        "SELECT state, reason FROM agents WHERE agent_id = 'keeper'"
    ).fetchone()
    db.close()
    assert (state, reason) == ("terminated", "coordinator shutdown")
    with serve_process(home), SyncAgentDeploymentClient(home / "agent-queue") as c:
        status = c.check_agent_status("keeper")
        assert status.agent is not None
        assert status.agent["state"] == "terminated"
    events = [json.loads(x) for x in (home / "events.jsonl").read_text().splitlines()]
    assert not [e for e in events if e["event"] == "agent_recovered"]
    assert len([e for e in events if e["event"] == "spawned"]) == 1


# -- helpers --------------------------------------------------------------------------


async def _until(coord: Coordinator, agent_id: str, state: str, timeout: float = 30) -> None:
    with anyio.fail_after(timeout):
        while (d := coord.service.agent_detail(agent_id)) is None or d["state"] != state:
            await anyio.sleep(0.02)


def _running_pid(client: SyncAgentDeploymentClient, agent_id: str) -> int | None:
    status = client.check_agent_status(agent_id)
    if status.status != "running" or status.pid is None:
        return None
    try:
        if psutil.Process(status.pid).status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.NoSuchProcess:
        return None
    return status.pid


def _state(client: SyncAgentDeploymentClient, agent_id: str) -> str | None:
    status = client.check_agent_status(agent_id)
    return None if status.agent is None else str(status.agent["state"])


def _wait_for(probe: Any, what: str, timeout: float = 30) -> Any:
    # Waiting on another OS process (serve) with no event source here: a bounded poll.
    deadline = time.monotonic() + timeout
    while (value := probe()) in (None, False):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return value
