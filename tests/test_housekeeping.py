"""Housekeeping: a coordinator left running prunes on its own, as configured (issue 11)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from supervisor import AgentDeploymentClient, AgentSpec, DeploymentRequest
from supervisor.coordinator import Settings, prune_home

from .helpers import real_clock_backend as anyio_backend  # noqa: F401
from .queue_helpers import agent_spec, coordinator
from .waiting import event_waits, until_files

pytestmark = pytest.mark.anyio


def _aged(path: Path, seconds: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}")
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


async def test_a_running_coordinator_prunes_every_interval(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with coordinator(home, prune_interval_seconds=0.05, retain_answers_seconds=60):
        responses = home / "agent-queue" / "responses"
        old = _aged(responses / "old.response.json", 3600)
        fresh = _aged(responses / "fresh.response.json", 1)
        await until_files([responses], lambda: not old.exists())
        assert fresh.exists()


def test_prune_home_keeps_what_is_retained(tmp_path: Path) -> None:
    home = tmp_path / "home"
    queue = home / "agent-queue"
    _aged(queue / "responses" / "a.error.json", 2 * 86_400)
    _aged(queue / "responses" / "b.response.json", 10)
    _aged(queue / "archive" / "2000-01-01" / "x.request.json", 0)
    today = time.strftime("%Y-%m-%d")
    _aged(queue / "archive" / today / "y.request.json", 0)
    _aged(queue / "archive" / "not-a-day" / "z", 0)
    report = prune_home(Settings(home=home))
    assert report == {
        "responses": 1,
        "archive_days": 1,
        "requests": 0,
        "agents": 0,
        "agent_dirs": 0,
        "events_rotated": False,
    }
    assert sorted(p.name for p in (queue / "responses").iterdir()) == ["b.response.json"]
    assert sorted(p.name for p in (queue / "archive").iterdir()) == sorted(["not-a-day", today])


async def test_the_prune_action_drops_finished_agents(tmp_path: Path) -> None:
    home = tmp_path / "home"
    spec = AgentSpec.model_validate(
        agent_spec("brief", tmp_path, command=[sys.executable, "-c", "pass"], restart="temporary")
    )
    async with (
        coordinator(home, retain_finished_seconds=0.001) as (rt, _),
        AgentDeploymentClient(home / "agent-queue") as client,
    ):
        with event_waits(rt) as waits:
            assert (await client.deploy_agent(spec)).status == "deployed"
            await waits.event("exited", "brief")
        assert (await client.check_agent_status("brief")).status == "completed"
        request = DeploymentRequest(parent_agent="test", action="prune")
        answer = await client.submit(request)
        assert answer.status == "completed"
        assert answer.agent is not None
        assert answer.agent["agents"] == 1
        assert answer.agent["agent_dirs"] == 1  # its own directory went with it
        assert not (home / "agents" / "brief").exists()
        assert (await client.check_agent_status("brief")).code == "not_found"
