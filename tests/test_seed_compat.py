"""The seed's own client and schemas, extracted from the seed document, against ``ziggie serve``."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import re
import shutil
import sys
from pathlib import Path
from types import ModuleType

import psutil
import pytest

from .queue_helpers import serve_process

SEED = Path(__file__).resolve().parents[2] / "shared" / "seed" / "000_cf82c27ea78df91e.txt"


def _extract(title: str) -> str:
    text = SEED.read_text(encoding="utf-8")
    match = re.search(rf"## FILE \d+: {re.escape(title)}\n\n```python\n(.*?)```", text, re.S)
    assert match, f"{title} not found in the seed"
    return match.group(1)


@pytest.fixture
def seed(tmp_path: Path) -> ModuleType:
    """The seed's package with only what its client needs: schemas.py and client.py."""
    if not SEED.exists():
        # CI has the seed: there a missing seed is a failure, never a quiet skip. Elsewhere
        # the run's summary says so loudly (tests/conftest.py).
        if os.environ.get("CI"):
            pytest.fail(f"the seed document is missing: {SEED}")
        pytest.skip("the seed document is not beside the project (../shared/seed)")
    pkg = tmp_path / "seedpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "schemas.py").write_text(_extract("coordinator\\schemas.py"))
    (pkg / "client.py").write_text(_extract("coordinator\\client.py"))
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("seedpkg")
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == "seedpkg" or m.startswith("seedpkg.")]:
            del sys.modules[name]


def test_seed_test_basic_scenario_against_ziggie_serve(seed: ModuleType, tmp_path: Path) -> None:
    home = tmp_path / "home"
    workdir = tmp_path / "work"
    workdir.mkdir()
    client_mod = importlib.import_module("seedpkg.client")
    schemas = importlib.import_module("seedpkg.schemas")

    async def scenario() -> dict[str, object]:
        client = client_mod.AgentDeploymentClient(queue_dir=str(home / "agent-queue"))
        test_agent = schemas.AgentSpec(
            id="test-agent-001",
            level="L1",
            name="Test Agent",
            role="Testing agent deployment system",
            tools=["Read", "Grep"],
            context=schemas.AgentContext(
                working_directory=str(workdir),
                permissions=schemas.AgentPermissions(
                    read=[f"{workdir}/**"], write=[f"{workdir}/agent-reports/**"]
                ),
            ),
            task="Perform test operations and report status",
            max_iterations=10,
            timeout_seconds=60,
        )
        deployed = await client.deploy_agent(test_agent, wait_for_response=True)
        await asyncio.sleep(2)
        running = await client.check_agent_status("test-agent-001")
        terminated = await client.terminate_agent("test-agent-001")
        return {"deployed": deployed, "running": running, "terminated": terminated}

    with serve_process(home):
        results = asyncio.run(scenario())
        deployed, running, terminated = (
            results["deployed"],
            results["running"],
            results["terminated"],
        )
        assert deployed.status == "deployed", deployed
        assert deployed.agent_id == "test-agent-001"
        assert deployed.pid
        assert deployed.pid > 0
        assert deployed.output_log
        assert Path(deployed.output_log).is_file()
        assert Path(deployed.output_log).name.startswith("test-agent-001_")
        assert running.status == "running", running
        assert running.request_id != "status-check"  # the seed's bug: the real id comes back
        assert running.pid == deployed.pid
        assert terminated.status == "terminated", terminated
        assert not psutil.pid_exists(deployed.pid) or (
            psutil.Process(deployed.pid).status() == psutil.STATUS_ZOMBIE
        )
    log = Path(deployed.output_log).read_text()
    assert "Perform test operations and report status" in log


def test_seed_client_finds_error_files_for_bad_requests(seed: ModuleType, tmp_path: Path) -> None:
    home = tmp_path / "home"
    client_mod = importlib.import_module("seedpkg.client")

    async def scenario() -> object:
        client = client_mod.AgentDeploymentClient(queue_dir=str(home / "agent-queue"))
        # An id that cannot be valid: the coordinator answers with <request_id>.error.json.
        return await client.check_agent_status("../../etc/passwd", timeout=10)

    with serve_process(home):
        answer = asyncio.run(scenario())
    assert answer.status == "failed"
    assert "invalid id" in answer.error


def test_seed_client_inside_an_agent_uses_its_own_queue(seed: ModuleType, tmp_path: Path) -> None:
    """Inside an agent, ``$ZIGGIE_HOME/agent-queue`` is the agent's own queue: the seed's
    client deploys, checks and terminates a child of the agent there, unchanged."""
    from supervisor import SyncAgentDeploymentClient

    from .waiting import until_files_sync

    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    out = work / "answers.json"
    script = Path(__file__).parent / "agents" / "seed_inside.py"
    lib = tmp_path / "seedlib"  # the seed's package where the agent may read it
    shutil.copytree(tmp_path / "seedpkg", lib / "seedpkg")
    boss = {
        "id": "seed-boss",
        "level": "L1",
        "name": "Seed Boss",
        "role": "lead",
        "task": "deploy a child with the seed's client",
        # It is confined: it may read the seed's package and its own script, and write
        # its answers; its child gets nothing of that (never wider).
        "context": {
            "working_directory": str(work),
            "permissions": {
                "read": [f"{lib}/**", f"{script.parent}/**"],
                "write": [f"{work}/**"],
            },
        },
        "timeout_seconds": 60,
        "command": [sys.executable, str(script), str(lib), str(out)],
    }
    with serve_process(home), SyncAgentDeploymentClient(home / "agent-queue") as operator:
        spec = importlib.import_module("supervisor").AgentSpec.model_validate(boss)
        assert operator.deploy_agent(spec).status == "deployed"
        until_files_sync([work], out.exists, 60, "the agent's answers")
        answers = json.loads(out.read_text())
        child = operator.check_agent_status("seed-boss-child")
        operator.terminate_agent("seed-boss")
    assert answers["deployed"]["status"] == "deployed", answers
    assert answers["running"]["status"] == "running", answers
    assert answers["terminated"]["status"] == "terminated", answers
    assert child.agent is not None
    assert child.agent["parent_id"] == "seed-boss"
    # The answers were the agent's own, in its own queue: none in the operator's.
    own = home / "agents" / "seed-boss" / "agent-queue" / "responses"
    request_id = answers["deployed"]["request_id"]
    assert (own / f"{request_id}.response.json").is_file()
    assert not (home / "agent-queue" / "responses" / f"{request_id}.response.json").exists()
