"""kill -9 the coordinator mid-burst, restart it: every request answered exactly once."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from supervisor import SyncAgentDeploymentClient

from .helpers import marked
from .queue_helpers import agent_spec, drop, reap_descendants, serve_process, status_request
from .waiting import until_files_sync, until_gone_sync

pytestmark = pytest.mark.slow


def _responses(home: Path) -> dict[str, str]:
    out = {}
    for path in (home / "agent-queue" / "responses").iterdir():
        if path.name.startswith("."):
            continue
        out[path.name] = path.read_text()
    return out


def _wait(predicate: object, timeout: float = 60, what: str = "condition") -> None:
    # Only for a process to APPEAR (nothing to wait on for that): files are waited on with
    # inotify (until_files_sync), processes ending with pidfds (until_gone_sync).
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _reap_zombie_children() -> None:
    for proc in psutil.Process().children():
        with contextlib.suppress(psutil.Error, ChildProcessError):
            if proc.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(proc.pid, 0)


def _kill9(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the coordinator; then reap what re-parents to us once it has finished
    (its watchdog, and the agents the watchdog kills)."""
    descendants = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reap_descendants(descendants)


def test_kill_9_during_a_burst_then_restart(tmp_path: Path) -> None:
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    n_status, agent_ids = 300, [f"burst-{i}" for i in range(12)]
    responses = home / "agent-queue" / "responses"
    with serve_process(home) as first:
        sync = SyncAgentDeploymentClient(home / "agent-queue")
        keeper = agent_spec("keeper", work, restart="permanent")
        temp = agent_spec("temp", work)
        from supervisor import AgentSpec

        assert sync.deploy_agent(AgentSpec.model_validate(keeper)).status == "deployed"
        assert sync.deploy_agent(AgentSpec.model_validate(temp)).status == "deployed"
        keeper_pid = sync.check_agent_status("keeper").pid
        for i in range(n_status):
            drop(home, f"s{i}.request.json", status_request(f"s{i}", target="keeper"))
            if i % 25 == 0:
                j = i // 25
                if j < len(agent_ids):
                    drop(
                        home,
                        f"d{j}.request.json",
                        {
                            "request_id": f"d{j}",
                            "parent_agent": "Ziggie",
                            "action": "deploy_agent",
                            "agent_spec": agent_spec(agent_ids[j], work),
                        },
                    )
        until_files_sync([responses], lambda: len(_responses(home)) >= 40, what="some answers")
        _kill9(first)
        sync.close()
        before = _responses(home)
    # 2 deploys and 1 status before the burst, then the burst itself
    total = 3 + n_status + len(agent_ids)
    assert len(before) < total  # the crash really cut the burst
    # The crashed coordinator's watchdog took its agents down with it.
    doomed = [pid for pids in marked(["keeper", "temp", *agent_ids]).values() for pid in pids]
    until_gone_sync(doomed, 20, "agents to die")
    assert not marked(["keeper", "temp", *agent_ids])
    _reap_zombie_children()

    with serve_process(home):
        until_files_sync([responses], lambda: len(_responses(home)) >= total, what="all answers")
        after = _responses(home)
        q = home / "agent-queue"
        until_files_sync(
            [q / "requests", q / "processing"],
            lambda: not os.listdir(q / "requests") and not os.listdir(q / "processing"),
        )
        # exactly once: one answer per request id, and no earlier answer was rewritten
        assert len(after) == total
        for name, body in before.items():
            assert after[name] == body
        assert all(name.endswith(".response.json") for name in after)
        sync = SyncAgentDeploymentClient(home / "agent-queue")
        keeper_now = sync.check_agent_status("keeper")
        assert keeper_now.status == "running"  # permanent: restarted by recovery
        assert keeper_now.pid != keeper_pid
        temp_now = sync.check_agent_status("temp")
        assert temp_now.status == "failed"  # known, not "not found"
        assert temp_now.agent is not None
        assert temp_now.agent["state"] == "lost"
        refused = sync.terminate_agent("temp")
        assert refused.status == "failed"
        assert "not running" in refused.message
        # no duplicate agents: each id once, each live agent one leader process
        listed = [a["agent_id"] for a in sync.list_agents().agents or []]
        assert len(listed) == len(set(listed))
        found = marked(listed)
        for agent, pids in found.items():
            leaders = [p for p in pids if os.getpgid(p) == p]
            assert len(leaders) == 1, (agent, pids)
        for agent in agent_ids:
            answer = json.loads(
                (q / "responses" / f"d{agent_ids.index(agent)}.response.json").read_text()
            )
            assert answer["status"] in ("deployed", "failed")
        assert sync.terminate_agent("keeper").status == "terminated"
        sync.close()
    # the coordinator stopped on SIGTERM: nothing of any agent is left
    assert marked(["keeper", "temp", *agent_ids]) == {}


def test_recovery_stops_agents_a_crashed_coordinator_left_running(tmp_path: Path) -> None:
    """Without its watchdog (killed first), a SIGKILLed coordinator leaves its agents
    running; its successor finds them by pid + start time and marker, and stops them."""
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    with serve_process(home) as first:
        from supervisor import AgentSpec

        sync = SyncAgentDeploymentClient(home / "agent-queue")
        spec = agent_spec("stray", work, env={"DEMO_GRANDCHILD": "1", "DEMO_PACE": "0.05"})
        assert sync.deploy_agent(AgentSpec.model_validate(spec)).status == "deployed"
        _wait(lambda: len(marked(["stray"]).get("stray", [])) == 2, what="grandchild")
        watchdog = [
            p
            for p in psutil.Process(first.pid).children()
            if "_watchdog.py" in " ".join(p.cmdline())
        ]
        assert len(watchdog) == 1
        watchdog[0].kill()

        until_gone_sync([watchdog[0].pid], 10, "the watchdog to die")
        _kill9(first)
        sync.close()
        # Really orphaned: the silent grandchild lives on (the agent itself may die of
        # SIGPIPE at its next write, its log pipe's reader being gone). Its coordinator and
        # watchdog are gone and nothing else stops it: no waiting needed to see that.
        left = marked(["stray"])["stray"]
        assert left
    with serve_process(home):
        until_gone_sync(left, 30, "recovery to stop the strays")
        assert not marked(["stray"])
        with SyncAgentDeploymentClient(home / "agent-queue") as client:
            status = client.check_agent_status("stray")
        assert status.agent is not None
        assert status.agent["state"] == "lost"
    events = [json.loads(x) for x in (home / "events.jsonl").read_text().splitlines()]
    recovered = [e for e in events if e["event"] == "agent_recovered"]
    assert recovered[0]["agent_id"] == "stray"
    assert sorted(recovered[0]["stopped_pids"]) == sorted(left)
    _reap_zombie_children()
