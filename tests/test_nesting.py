"""Nested agents across processes: L1 -> L2 -> L3 deployed from inside agents, and the rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from supervisor import AgentDeploymentClient, AgentSpec
from supervisor.coordinator import Coordinator

from .helpers import marked
from .queue_helpers import agent_spec, coordinator

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "trio"  # real processes; backend neutrality is covered in test_filequeue


def spec(agent_id: str, work: Path, level: str, **extra: Any) -> dict[str, Any]:
    data = agent_spec(agent_id, work, level=level, timeout_seconds=60)
    data["context"]["permissions"] = {
        "read": [f"{work}/**"],
        "write": [f"{work}/out/**"],
        "execute": ["sleep"],
    }
    data.update(extra)
    return data


def tree_spec(work: Path, l2_timeout: int = 60) -> AgentSpec:
    l3 = spec("l3", work, "L3", env={"DEMO_PACE": "0.05", "DEMO_GRANDCHILD": "1"})
    l3["timeout_seconds"] = l2_timeout
    l2 = spec("l2", work, "L2", env={"DEMO_PACE": "0.05", "DEMO_CHILDREN": json.dumps([l3])})
    l2["timeout_seconds"] = l2_timeout
    l1 = spec("l1", work, "L1", env={"DEMO_PACE": "0.05", "DEMO_CHILDREN": json.dumps([l2])})
    return AgentSpec.model_validate(l1)


async def _until(coord: Coordinator, agent_id: str, state: str, timeout: float = 30) -> None:
    with anyio.fail_after(timeout):
        while (d := coord.service.agent_detail(agent_id)) is None or d["state"] != state:
            await anyio.sleep(0.02)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


async def test_three_levels_deployed_from_inside_agents(tmp_path: Path, work: Path) -> None:
    home = tmp_path / "home"
    async with coordinator(home) as (rt, coord), AgentDeploymentClient(home / "agent-queue") as c:
        assert (await c.deploy_agent(tree_spec(work))).status == "deployed"
        await _until(coord, "l3", "running")
        status = await c.check_agent_status("l3")
        assert status.agent is not None
        assert status.agent["parent_id"] == "l2"
        assert status.agent["level"] == "L3"
        # Each top-level agent has its own supervisor (issue 10, item 1).
        assert status.agent["path"] == "ziggie/l1.supervisor/l1/l2/l3"
        l1 = await c.check_agent_status("l1")
        assert l1.agent is not None
        assert l1.agent["children"] == ["l2"]
        listed = await c.list_agents()
        assert listed.agent is not None
        root = listed.agent["tree"]
        assert root["children"][0]["id"] == "l1.supervisor"
        l1_node = root["children"][0]["children"][0]
        assert l1_node["id"] == "l1"
        assert l1_node["children"][0]["children"][0]["id"] == "l3"
        with anyio.fail_after(20):  # the L3 and the grandchild it starts
            while len(marked(["l3"]).get("l3", [])) < 2:
                await anyio.sleep(0.02)
        # terminate the L1: children first, every process verified gone
        events: list[tuple[str, str]] = []
        with rt.events.listen(
            lambda n, f: events.append((n, f.get("agent_id", ""))) if n == "terminated" else None
        ):
            answer = await c.terminate_agent("l1", timeout=30)
        assert answer.status == "terminated"
        # then l1's own supervisor (issue 10, item 1)
        assert [a for _, a in events] == ["l3", "l2", "l1", "l1.supervisor"]
        assert marked(["l1", "l2", "l3"]) == {}
        for agent_id in ("l1", "l2", "l3"):
            assert (await c.check_agent_status(agent_id)).status == "terminated"


async def test_timeout_of_a_parent_takes_its_subtree(tmp_path: Path, work: Path) -> None:
    home = tmp_path / "home"
    async with coordinator(home) as (_, coord), AgentDeploymentClient(home / "agent-queue") as c:
        assert (await c.deploy_agent(tree_spec(work, l2_timeout=3))).status == "deployed"
        await _until(coord, "l3", "running")
        await _until(coord, "l2", "timed_out", timeout=15)
        l3 = coord.service.agent_detail("l3")
        assert l3 is not None
        assert l3["state"] == "terminated"  # stopped by its parent's cascade
        assert set(marked(["l2", "l3"])) == set()
        assert coord.service.agent_detail("l1")["state"] == "running"  # type: ignore[index]
        status = await c.check_agent_status("l2")
        assert status.agent is not None
        assert status.agent["outcome"] == "timeout"
        await c.terminate_agent("l1")


async def test_rules_refuse_with_the_field_named(tmp_path: Path, work: Path) -> None:
    home = tmp_path / "home"
    async with coordinator(home) as (_, coord):
        top = AgentDeploymentClient(home / "agent-queue")
        l1 = spec("boss", work, "L1")
        l1["context"]["permissions"]["execute"] = ["python", "git"]
        l1["timeout_seconds"] = 30
        assert (await top.deploy_agent(AgentSpec.model_validate(l1))).status == "deployed"
        await _until(coord, "boss", "running")
        child = AgentDeploymentClient(home / "agent-queue", parent_agent="boss")

        async def refused(**changes: Any) -> str:
            data = spec("kid", work, "L2", timeout_seconds=10)
            data["context"]["permissions"]["execute"] = ["python"]
            for key, value in changes.items():
                if key in ("read", "write", "execute"):
                    data["context"]["permissions"][key] = value
                else:
                    data[key] = value
            answer = await child.deploy_agent(AgentSpec.model_validate(data))
            assert answer.status == "failed", answer
            return answer.error or ""

        assert (await refused(level="L3")).startswith("level: a child of 'boss' (L1) must be L2")
        assert "permissions.read" in await refused(read=["/etc/**"])
        assert "permissions.write" in await refused(write=[f"{work}/**", "/tmp/**"])
        assert "permissions.execute" in await refused(execute=["python", "docker"])
        # its own program counts: one the parent may not run is refused
        assert "not executable by the parent" in await refused(command=["sleep", "5"])
        assert (await refused(timeout_seconds=120)).startswith("timeout_seconds: 120 exceeds")
        # a valid child is accepted, an L3 under it, and the L3 may have no children
        ok = spec("kid", work, "L2", timeout_seconds=10)
        ok["context"]["permissions"]["execute"] = ["python"]
        assert (await child.deploy_agent(AgentSpec.model_validate(ok))).status == "deployed"
        grandkid = spec("grandkid", work, "L3", timeout_seconds=5)
        grandkid["context"]["permissions"]["execute"] = ["python"]
        via_kid = AgentDeploymentClient(home / "agent-queue", parent_agent="kid")
        assert (await via_kid.deploy_agent(AgentSpec.model_validate(grandkid))).status == "deployed"
        via_l3 = AgentDeploymentClient(home / "agent-queue", parent_agent="grandkid")
        tiny = spec("tiny", work, "L3", timeout_seconds=5)
        answer = await via_l3.deploy_agent(AgentSpec.model_validate(tiny))
        assert answer.status == "failed"
        assert answer.error == "level: 'grandkid' is L3; an L3 agent has no children"
        top_l2 = await top.deploy_agent(AgentSpec.model_validate(spec("orphan", work, "L2")))
        assert (top_l2.error or "").startswith("level: a top-level deploy")
        await top.terminate_agent("boss")
        for client in (top, child, via_kid, via_l3):
            client.close()


async def test_restarted_parent_starts_with_no_children(tmp_path: Path, work: Path) -> None:
    home = tmp_path / "home"
    async with coordinator(home) as (_, coord), AgentDeploymentClient(home / "agent-queue") as c:
        parent = AgentSpec.model_validate(spec("p", work, "L1", max_children=1))
        assert (await c.deploy_agent(parent)).status == "deployed"
        await _until(coord, "p", "running")
        as_p = AgentDeploymentClient(home / "agent-queue", parent_agent="p")
        one = await as_p.deploy_agent(AgentSpec.model_validate(spec("c1", work, "L2")))
        assert one.status == "deployed"
        two = await as_p.deploy_agent(AgentSpec.model_validate(spec("c2", work, "L2")))
        assert two.status == "failed"
        assert "max_children" in (two.error or "")
        restarted = await c.restart_agent("p")
        assert restarted.status == "deployed"
        assert marked(["c1"]) == {}  # the old incarnation's child was stopped
        detail = coord.service.agent_detail("p")
        assert detail is not None
        assert detail["children"] == []
        assert detail["restarts"] == 1
        assert (await c.check_agent_status("c1")).status == "terminated"
        await c.terminate_agent("p")
        as_p.close()
