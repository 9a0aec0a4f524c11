"""Traces that outlive a crash, and a collector that cannot slow anything down.

``kill -9`` of ``ziggie serve``: the next coordinator ends the spans its predecessor left
open, under their own ids, and its redeployed agents continue the same trace. A collector
that is down: the same events, the same answers, the same states; only a counter moves.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import psutil
import pytest

from supervisor import AgentDeploymentClient, AgentSpec, SyncAgentDeploymentClient

from .helpers import marked
from .http_helpers import api
from .otlp_helpers import closed_port, otlp_receiver
from .queue_helpers import agent_spec, reap_descendants, serve_process
from .waiting import event_waits, until_gone_sync

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


def spec(agent_id: str, work: Path, level: str, **extra: Any) -> dict[str, Any]:
    data = agent_spec(agent_id, work, level=level, timeout_seconds=120)
    data["env"] = {"DEMO_PACE": "0.05", **extra.pop("env", {})}
    data.update(extra)
    return data


def traceparent_of(pid: int) -> str:
    """The TRACEPARENT the process was started with (we may read our agents' environ)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    found = [item.split(b"=", 1)[1] for item in raw if item.startswith(b"TRACEPARENT=")]
    assert len(found) == 1, "no TRACEPARENT in the agent's environment"
    return found[0].decode()


def _kill9(proc: subprocess.Popen[bytes]) -> None:
    descendants = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reap_descendants(descendants)
    for child in psutil.Process().children():  # zombies that re-parented to us
        with contextlib.suppress(psutil.Error, ChildProcessError):
            if child.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(child.pid, 0)


def test_kill_9_then_recovery_continues_the_trace(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    home = tmp_path / "home"
    l2 = spec("l2", work, "L2", restart="permanent")
    l1 = spec("l1", work, "L1", restart="permanent", env={"DEMO_CHILDREN": json.dumps([l2])})
    with otlp_receiver() as receiver:
        env = {
            **os.environ,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        }
        with serve_process(home, env=env) as first:
            with SyncAgentDeploymentClient(home / "agent-queue") as client:
                assert client.deploy_agent(AgentSpec.model_validate(l1)).status == "deployed"
                # The L1's deploy of its L2 was answered: its request span was exported.
                receiver.wait(
                    lambda spans: any(s.attributes.get("ziggie.caller") == "l1" for s in spans),
                    what="the L1's deploy",
                )
                pids = {a: client.check_agent_status(a).pid for a in ("l1", "l2")}
            before = {a: traceparent_of(pid) for a, pid in pids.items() if pid}
            assert len(before) == 2
            _kill9(first)
        until_gone_sync(list(pids.values()), 20, "the agents to die with their coordinator")  # type: ignore[arg-type]
        assert not marked(["l1", "l2"])
        lost_before = len(receiver.spans)

        with serve_process(home, env=env):  # recovers: both are permanent
            with SyncAgentDeploymentClient(home / "agent-queue") as client:
                for agent_id in ("l1", "l2"):
                    status = client.check_agent_status(agent_id)
                    assert status.status == "running", status
                    assert status.agent is not None
                    assert status.agent["trace_id"] == before[agent_id].split("-")[1]
                after = {a: traceparent_of(client.check_agent_status(a).pid or 0) for a in before}
            # The spans the dead coordinator left open, ended by this one, with their ids.
            receiver.wait(
                lambda spans: sum(s.attributes.get("ziggie.lost", False) for s in spans) == 2,
                what="the lost spans",
            )
        # A clean stop: the new incarnations' spans ended and were flushed.
        assert lost_before <= len(receiver.spans)

    trace_id = before["l1"].split("-")[1]
    agents = [s for s in receiver.spans if s.name.startswith("invoke_agent")]
    assert len(agents) == 4
    assert {s.trace_id for s in agents} == {trace_id}
    deploy = next(
        s
        for s in receiver.spans
        if s.name == "deploy_agent" and s.attributes["ziggie.caller"] == "operator"
    )
    l1_lost, l1_new = receiver.agent_spans("l1")
    l2_lost, l2_new = receiver.agent_spans("l2")
    # The lost ones: the very spans the agents' TRACEPARENTs named, ended as errors.
    assert l1_lost.named_by(before["l1"])
    assert l2_lost.named_by(before["l2"])
    for lost in (l1_lost, l2_lost):
        assert lost.attributes["ziggie.lost"] is True
        assert lost.attributes["ziggie.reason"] == "coordinator stopped unexpectedly"
        assert lost.status == 2
    assert l1_lost.parent_id == deploy.span_id
    assert l2_lost.parent_id == l1_lost.span_id
    # The recovered ones: the same trace, the same places in the tree, each linked to the
    # incarnation it replaces; their processes were given their new spans.
    assert l1_new.named_by(after["l1"])
    assert l2_new.named_by(after["l2"])
    assert l1_new.parent_id == deploy.span_id
    assert l2_new.parent_id == l1_new.span_id
    assert [k.span_id for k in l1_new.links] == [l1_lost.span_id]
    assert [k.span_id for k in l2_new.links] == [l2_lost.span_id]
    assert l1_new.attributes["ziggie.outcome"] == "shutdown"


def _tree(work: Path) -> AgentSpec:
    crashy = spec("d-l3", work, "L3", restart="transient", env={"DEMO_CRASH_AT": "3"})
    l2 = spec("d-l2", work, "L2", env={"DEMO_CHILDREN": json.dumps([crashy])})
    return AgentSpec.model_validate(
        spec("d-l1", work, "L1", env={"DEMO_CHILDREN": json.dumps([l2])})
    )


async def _run(home: Path, work: Path, **settings: Any) -> tuple[dict[str, Any], str]:
    """The tree, a crash and its restart, a terminate; what happened to each agent."""
    async with api(home, **settings) as a:
        with event_waits(a.rt) as waits:
            async with AgentDeploymentClient(home / "agent-queue") as client:
                assert (await client.deploy_agent(_tree(work))).status == "deployed"
                await waits.event("restarted", "d-l3", timeout=60)
                await waits.event("started", "d-l2", timeout=60)
                answer = await client.terminate_agent("d-l1", timeout=30)
                assert answer.status == "terminated"
                states = {
                    agent: (await client.check_agent_status(agent)).status
                    for agent in ("d-l1", "d-l2", "d-l3")
                }
        metrics = (await a.client.get("/metrics")).text
    lifecycle: dict[str, list[str]] = {}
    for name, fields in waits.seen:
        if fields.get("kind") == "worker" and str(fields.get("agent_id", "")).startswith("d-"):
            lifecycle.setdefault(fields["agent_id"], []).append(name)
    return {"lifecycle": lifecycle, "states": states}, metrics


def _counter(metrics: str, name: str) -> float:
    lines = [line for line in metrics.splitlines() if line.startswith(name)]
    assert lines, f"{name} not in /metrics"
    return float(lines[0].rsplit(" ", 1)[1])


async def test_an_unreachable_collector_changes_nothing_but_a_counter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    untraced, plain = await _run(tmp_path / "off", work)
    assert "ziggie_trace_spans" not in plain  # off: no counters either
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "2")  # a small queue, to see it overflow
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "10")
    down = f"http://127.0.0.1:{closed_port()}"
    traced, metrics = await _run(tmp_path / "down", work, otel_exporter_otlp_endpoint=down)
    assert traced == untraced
    assert _counter(metrics, "ziggie_trace_spans_exported_total") == 0
    dropped = sum(
        _counter(metrics, f'ziggie_trace_spans_dropped_total{{reason="{reason}"}}')
        for reason in ("queue_full", "export_failed")
    )
    assert dropped > 0
