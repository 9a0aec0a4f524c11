"""The ``ziggie`` CLI end to end against a live coordinator, and every example, run for real."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import psutil
import pytest
import yaml

from actors import landlock_abi

from .queue_helpers import reap_descendants, serve_process
from .waiting import until_text

ROOT = Path(__file__).resolve().parents[1]


def ziggie(*args: str, home: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supervisor.cli", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def test_cli_without_a_coordinator_says_so(tmp_path: Path) -> None:
    result = ziggie("status", "x", home=tmp_path / "nowhere")
    assert result.returncode == 3
    assert "no coordinator is running" in result.stderr
    result = ziggie("list", home=tmp_path / "nowhere")
    assert result.returncode == 3


def test_cli_end_to_end(tmp_path: Path) -> None:
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    spec_file = tmp_path / "scout.yaml"
    spec_file.write_text(
        yaml.safe_dump(
            {
                "id": "scout",
                "level": "L1",
                "name": "Scout",
                "role": "look around",
                "task": "Look around; report.",
                "context": {"working_directory": str(work)},
                "max_iterations": 1000,
                "env": {"DEMO_PACE": "0.05"},
            }
        )
    )
    with serve_process(home):
        again = ziggie("serve", home=home, timeout=30)
        assert again.returncode == 1
        assert "already running" in again.stderr

        deployed = ziggie("deploy", str(spec_file), "--json", home=home)
        assert deployed.returncode == 0, deployed.stderr
        answer = json.loads(deployed.stdout)
        assert answer["status"] == "deployed"
        flags = ziggie(
            "deploy", "--id", "helper", "--task", "help", "--workdir", str(work), home=home
        )
        assert flags.returncode == 0, flags.stderr
        assert "deployed helper" in flags.stdout

        status = ziggie("status", "scout", home=home)
        assert status.returncode == 0
        assert "scout (L1) running" in status.stdout
        as_json = json.loads(ziggie("status", "scout", "--json", home=home).stdout)
        assert as_json["agent"]["pid"] == answer["pid"]

        listed = json.loads(ziggie("list", "--json", home=home).stdout)
        assert {a["agent_id"] for a in listed} == {"scout", "helper"}
        tree = ziggie("tree", home=home)
        assert tree.returncode == 0
        assert "scout L1 running" in tree.stdout
        tree_json = json.loads(ziggie("tree", "--json", home=home).stdout)
        assert {node["agent_id"] for node in tree_json} == {"scout", "helper"}

        anyio.run(until_text, Path(answer["output_log"]), lambda text: "iteration" in text)
        logs = ziggie("logs", "scout", home=home)
        assert "iteration" in logs.stdout
        assert logs.returncode == 0
        assert '"event": "agent_started"' in logs.stdout

        events = ziggie("events", home=home)
        lines = [json.loads(line) for line in events.stdout.splitlines()]
        assert any(e["event"] == "spawned" and e["agent_id"] == "scout" for e in lines)

        unknown = ziggie("status", "ghost", home=home)
        assert unknown.returncode == 4
        bad = ziggie("deploy", "--id", "../x", "--task", "t", home=home)
        assert bad.returncode == 2
        assert "invalid id" in bad.stderr

        restarted = json.loads(ziggie("restart", "scout", "--json", home=home).stdout)
        assert restarted["status"] == "deployed"
        assert restarted["pid"] != answer["pid"]
        stopped = ziggie("terminate", "scout", home=home)
        assert stopped.returncode == 0
        assert "terminated scout" in stopped.stdout
        assert ziggie("terminate", "scout", home=home).returncode == 1  # not running now
    assert not psutil.pid_exists(restarted["pid"]) or (
        psutil.Process(restarted["pid"]).status() == psutil.STATUS_ZOMBIE
    )


def _run_example(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    before = {p.pid for p in psutil.Process().children()}
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    # Its helpers (the watchdog) re-parent to us when it exits if pytest is a subreaper
    # (an earlier test made it one): wait for them to finish and reap them.
    orphans = [p for p in psutil.Process().children() if p.pid not in before | {proc.pid}]
    reap_descendants(orphans)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_example_embedded_tree() -> None:
    result = _run_example("examples/embedded_tree.py")
    assert result.returncode == 0, result.stderr
    assert "counter: 42" in result.stdout
    assert "counter after restart: 0" in result.stdout
    assert "restarted as pid" in result.stdout
    assert result.stdout.strip().endswith("tree stopped")
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert any(e["event"] == "restarted" and e["agent_id"] == "pinger" for e in events)


def test_example_asyncio_app() -> None:
    result = _run_example("examples/asyncio_app.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "hello, asyncio"
    assert "helper stopped, tree verified empty" in result.stdout


def test_example_overwatch_against_a_coordinator(tmp_path: Path) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    with serve_process(home):
        result = _run_example(
            "examples/overwatch.py", "--home", str(home), "--workdir", str(work), "--terminate"
        )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Overwatch deployed (PID:" in result.stdout
    assert "Agent status: running" in result.stdout
    assert "Termination: terminated" in result.stdout


@pytest.mark.slow
def test_the_demo() -> None:
    """``make demo``'s job: the L1 -> L2 -> L3 tree, a restart, a timeout, the cascade."""
    result = _run_example("-m", "examples.demo", timeout=60)  # fails if it takes longer
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert all({"event", "ts"} <= set(e) for e in events)
    spawned = {e["agent_id"]: e["level"] for e in events if e["event"] == "spawned"}
    assert spawned == {
        "overwatch": "L1",
        "analyst-a": "L2",
        "analyst-b": "L2",
        "scout-a": "L3",
        "scout-b": "L3",
    }
    assert [e["agent_id"] for e in events if e["event"] == "restarted"] == ["scout-b"]
    assert [e["agent_id"] for e in events if e["event"] == "timed_out"] == ["analyst-a"]
    # agents only: each top-level agent's own supervisor ends last (issue 10, item 1)
    ends = [
        e["agent_id"]
        for e in events
        if e["event"] in ("terminated", "timed_out") and e.get("kind") == "worker"
    ]
    assert ends.index("scout-a") < ends.index("analyst-a")  # children first
    assert ends[-3:] == ["scout-b", "analyst-b", "overwatch"]
    summary = " ".join(result.stderr.split())
    assert "processes left: 0" in summary
    if landlock_abi() >= 6:  # the demo's agents run confined, and say so
        assert "every agent confined by landlock abi" in summary
        confined = [e["confinement"] for e in events if e["event"] == "spawned"]
        assert all(c["mechanism"].startswith("landlock abi") for c in confined)
