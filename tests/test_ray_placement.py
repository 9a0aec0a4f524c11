"""Issue 14: agents placed on a Ray cluster, with their subtrees, supervised from here.

One loopback head serves the whole session (``ray_cluster``); each test runs its own
coordinator (this process is the Ray driver) and checks, by this run's token, that none
of its agents' processes outlive it, on the remote side included (``helpers.marked``,
and the leftover check of every test).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import psutil
import pytest

from supervisor.coordinator import Settings
from supervisor.coordinator._ray import RayEngine

from .helpers import marked
from .http_helpers import api, served, spec
from .queue_helpers import coordinator
from .waiting import EventWaits, event_waits, until_files, until_files_sync, until_gone_sync

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("ray_cluster")]

#: A process that leaves the agent's group, and one that leaves its parent too.
#: Once both are started, it says so with a file ``<agent id>.ready`` in its directory.
ESCAPEES = 'setsid sleep 300 & (sleep 300 &) ; : > "$TMPDIR/$ZIGGIE_AGENT_ID.ready"; exec sleep 300'


def placed(agent_id: str, home: Path, **extra: Any) -> dict[str, Any]:
    return spec(agent_id, home, "L1", **{"placement": {"engine": "ray"}, **extra})


async def _status(a: Any, agent_id: str) -> dict[str, Any]:
    r = await a.client.get(f"/v1/agents/{agent_id}")
    assert r.status_code == 200, r.text
    return dict(r.json()["agent"])


async def _deploy(a: Any, body: dict[str, Any]) -> dict[str, Any]:
    r = await a.client.post("/v1/agents", json={"agent_spec": body})
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


async def _until_running_again(waits: EventWaits, agent_id: str, count: int) -> None:
    await waits.until(
        lambda: (
            sum(1 for n, f in waits.seen if n == "placed" and f["agent_id"] == agent_id) >= count
        ),
        timeout=60,
    )


@pytest.mark.parametrize("anyio_backend", ["trio", "asyncio"])
async def test_placed_tree_deploys_over_http_and_terminates_children_first(
    tmp_path: Path, ray_cluster: str
) -> None:
    """A placed L1; its L2 (deployed over HTTP with its agent token) runs in the same
    host, and deploys two L3s there; all show their node; terminate empties the node."""
    l3s = [spec(f"l3-{i}", tmp_path, "L3", command=["sh", "-c", ESCAPEES]) for i in range(2)]
    l2 = spec("l2", tmp_path, "L2", env={"DEMO_CHILDREN": json.dumps(l3s)})
    body = placed("l1", tmp_path, env={"DEMO_CHILDREN": json.dumps([l2])})
    async with api(tmp_path, ray=ray_cluster) as a:
        with event_waits(a.rt) as waits:
            await _deploy(a, body)
            st = await _status(a, "l1")
            assert st["state"] == "running"
            assert st["node"] == "127.0.0.1"
            assert st["host_pid"] != st["pid"]
            assert st["host"] == "l1"
            for agent in ("l2", "l3-0", "l3-1"):  # remote events come home, with the node
                seen = await waits.event("spawned", agent, timeout=60)
                assert seen["node"] == "127.0.0.1"
                assert seen["host"] == "l1"
            await _ready(tmp_path, "l3-0", "l3-1")
        l3 = await _status(a, "l3-1")
        assert l3["state"] == "running"
        assert l3["node"] == "127.0.0.1"
        assert l3["parent_id"] == "l2"
        listed = (await a.client.get("/v1/agents")).json()["agents"]
        assert {x["agent_id"]: x.get("node") for x in listed} == dict.fromkeys(
            ["l1", "l2", "l3-0", "l3-1"], "127.0.0.1"
        )
        assert len(marked(["l1", "l2", "l3-0", "l3-1"])) == 4
        host = psutil.Process(st["host_pid"])

        r = await a.client.delete("/v1/agents/l1")
        assert r.status_code == 200, r.text
        # Verified empty on the remote node: no process of the tree, escapees included.
        assert marked(["l1", "l2", "l3-0", "l3-1"]) == {}
        assert host.wait(30) is not None or not host.is_running()
        with event_waits(a.rt) as waits:
            await waits.until(lambda: a.coord.service.journal.agent("l3-1")["state"] != "running")


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_a_terminated_child_in_a_host_can_be_deployed_again(
    tmp_path: Path, ray_cluster: str
) -> None:
    """The host keeps a permanent child's spec after its stop, as OTP does; a new deploy of
    that id replaces it there, as it does here."""
    child = spec("kid", tmp_path, "L2", command=["sleep", "300"], restart="permanent")
    async with api(tmp_path, ray=ray_cluster) as a:
        await _deploy(a, placed("l1", tmp_path))
        for task in ("one", "two"):
            body = {"agent_spec": {**child, "task": task}, "parent_agent": "l1"}
            r = await a.client.post("/v1/agents", json=body)
            assert r.status_code == 201, r.text
            st = await _status(a, "kid")
            assert (st["state"], st["node"], st["host"]) == ("running", "127.0.0.1", "l1")
            assert st["spec"]["task"] == task
            r = await a.client.delete("/v1/agents/kid")
            assert r.status_code == 200, r.text
            assert marked(["kid"]) == {}
            assert (await _status(a, "kid"))["state"] == "terminated"
        r = await a.client.delete("/v1/agents/l1")
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_crash_restart_and_give_up_are_the_local_policy(
    tmp_path: Path, ray_cluster: str
) -> None:
    crashy = placed("crashy", tmp_path, restart="transient", env={"DEMO_CRASH_AT": "2"})
    doomed = placed(
        "doomed", tmp_path, restart="permanent", command=["sh", "-c", "exit 3"], max_restarts=1
    )
    async with api(tmp_path, ray=ray_cluster) as a:
        with event_waits(a.rt) as waits:
            await _deploy(a, crashy)
            await _until_running_again(waits, "crashy", 2)  # a new host for the new incarnation
            await waits.event("restarted", "crashy", timeout=30)
            assert (await _status(a, "crashy"))["state"] == "running"
            await _deploy(a, doomed)
            given_up = await waits.event("gave_up", "doomed", timeout=60)
            assert "exited with code 3" in given_up["reason"] or "code 3" in given_up["reason"]
        assert (await _status(a, "doomed"))["state"] == "given_up"


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_sigkill_of_the_host_is_a_crash_and_escapees_die_with_it(
    tmp_path: Path, ray_cluster: str
) -> None:
    body = placed("victim", tmp_path, restart="permanent", command=["sh", "-c", ESCAPEES])
    async with api(tmp_path, ray=ray_cluster) as a:
        with event_waits(a.rt) as waits:
            await _deploy(a, body)
            await _ready(tmp_path, "victim")
            first = await _status(a, "victim")
            old = set(marked(["victim"])["victim"])
            os.kill(first["host_pid"], signal.SIGKILL)
            await _until_running_again(waits, "victim", 2)
            exited = [f for n, f in waits.seen if n == "exited" and f["agent_id"] == "victim"]
            assert "died" in exited[0]["reason"]
            # The old incarnation's escapees went with their host (its watchdog's sweep).
            await anyio.to_thread.run_sync(until_gone_sync, list(old), 30, "old escapees")
        again = await _status(a, "victim")
        assert again["state"] == "running"
        assert again["host_pid"] != first["host_pid"]


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_timeout_cascades_across_the_boundary(tmp_path: Path, ray_cluster: str) -> None:
    l2 = spec("late-l2", tmp_path, "L2", command=["sh", "-c", ESCAPEES])
    body = placed("late", tmp_path, timeout_seconds=3, env={"DEMO_CHILDREN": json.dumps([l2])})
    async with api(tmp_path, ray=ray_cluster) as a:
        with event_waits(a.rt) as waits:
            await _deploy(a, body)
            await waits.event("spawned", "late-l2", timeout=60)
            timed = await waits.event("timed_out", "late", timeout=60)
            assert timed["outcome"] == "timeout"
        assert marked(["late", "late-l2"]) == {}
        assert (await _status(a, "late"))["state"] == "timed_out"


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_placement_refusals_are_clear(tmp_path: Path, ray_cluster: str) -> None:
    async with coordinator(tmp_path / "local") as (_, coord):  # no --ray
        service = coord.service
        refused = await service.execute(_request(placed("x", tmp_path)))
        assert refused.code == "refused"
        assert "not connected to a Ray cluster" in refused.error
    async with api(tmp_path / "remote", ray=ray_cluster) as a:
        body = placed("big", tmp_path, placement={"engine": "ray", "resources": {"GPU": 64}})
        r = await a.client.post("/v1/agents", json={"agent_spec": body})
        assert r.status_code == 422
        assert "no node of the cluster has" in r.text
        body = placed("nowhere", tmp_path, placement={"engine": "ray", "node": "f" * 56})
        r = await a.client.post("/v1/agents", json={"agent_spec": body})
        assert r.status_code == 422
        assert "no live node" in r.text
        bad = placed("bad", tmp_path, placement={"engine": "kubernetes"})
        r = await a.client.post("/v1/agents", json={"agent_spec": bad})
        assert r.status_code == 422
        assert "placement" in r.text


async def _ready(home: Path, *agents: str) -> None:
    """Until each agent's escapees are up (its ``.ready`` file in its private TMPDIR, the
    one place of the home it may write), then all are counted."""
    tmps = {a: home / "agents" / a / "tmp" for a in agents}
    await until_files(
        list(tmps.values()), lambda: all((tmps[a] / f"{a}.ready").exists() for a in agents), 60
    )
    for agent in agents:
        assert len(marked([agent]).get(agent, [])) >= 3, marked([agent])


def _request(body: dict[str, Any]) -> Any:
    from supervisor.protocol import DeploymentRequest

    return DeploymentRequest(action="deploy_agent", agent_spec=body, parent_agent="Ziggie")


def test_coordinator_killed_takes_its_placed_agents_then_recovers(
    tmp_path: Path, ray_cluster: str
) -> None:
    """kill -9 of a ``serve --ray`` coordinator: its host actors (owned by it) and their
    agents die with it; the next coordinator of the home redeploys the permanent one."""
    body = placed("keeper", tmp_path, restart="permanent", command=["sh", "-c", ESCAPEES])
    with served(tmp_path, "--ray", ray_cluster) as (proc, url, token):
        auth = {"Authorization": f"Bearer {token}"}
        r = httpx.post(f"{url}/v1/agents", json={"agent_spec": body}, headers=auth, timeout=60)
        assert r.status_code in (200, 201), r.text
        tmp = tmp_path / "agents" / "keeper" / "tmp"
        until_files_sync([tmp], lambda: (tmp / "keeper.ready").exists(), 60)
        pids = marked(["keeper"])["keeper"]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # Fate-sharing: the host dies with its owner (or its lease runs out), its
        # watchdog sweeps the escapees.
        until_gone_sync(pids, 60, "the placed agent's processes")
    events = tmp_path / "events.jsonl"

    def placed_twice() -> bool:
        return events.read_text().count('"event": "placed"') >= 2

    with served(tmp_path, "--ray", ray_cluster) as (proc, url, token):
        until_files_sync([tmp_path], placed_twice, 60, "the redeploy after recovery")
        auth = {"Authorization": f"Bearer {token}"}
        agent = httpx.get(f"{url}/v1/agents/keeper", headers=auth, timeout=30).json()["agent"]
        assert agent["state"] == "running"
        assert agent["node"] == "127.0.0.1"
        shown = subprocess.run(
            [sys.executable, "-m", "supervisor.cli", "status", "keeper", "--home", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "node: 127.0.0.1 (placed, host pid" in shown.stdout, shown
    assert marked(["keeper"]) == {}


def test_ray_engine_refuses_without_the_extra_clearly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import builtins

    real = builtins.__import__

    def no_ray(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "ray":
            raise ImportError("No module named 'ray'", name="ray")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ValueError, match=r"pip install 'ziggie\[ray\]'"):
        RayEngine("local", token="t").connect()
    from supervisor.coordinator import Coordinator

    with pytest.raises(ValueError, match=r"ziggie\[ray\]"):
        anyio.run(_coordinator_with_ray, Coordinator, Settings(home=tmp_path, ray="local"))


async def _coordinator_with_ray(cls: Any, settings: Settings) -> None:
    from supervisor import no_events, open_runtime

    async with open_runtime(events=no_events()) as rt:
        cls(rt, settings)


def test_serve_ray_local_starts_a_loopback_head_and_stops_only_it(tmp_path: Path) -> None:
    """``--ray local``: a private head on 127.0.0.1 only, gone with the coordinator; a
    placed agent runs on it meanwhile."""
    body = placed("solo", tmp_path)
    with served(tmp_path, "--ray", "local") as (proc, url, token):
        auth = {"Authorization": f"Bearer {token}"}
        r = httpx.post(f"{url}/v1/agents", json={"agent_spec": body}, headers=auth, timeout=60)
        assert r.status_code in (200, 201), r.text
        agent = httpx.get(f"{url}/v1/agents/solo", headers=auth, timeout=30).json()["agent"]
        assert agent["node"] == "127.0.0.1"
        head = [p for p in psutil.Process(proc.pid).children(recursive=True) if _is_ray(p)]
        assert head, "no Ray process under the coordinator"
        listening = {
            c.laddr.ip for p in head for c in _connections(p) if c.status == psutil.CONN_LISTEN
        }
        assert listening, "the head listens nowhere?"
        assert listening <= {"127.0.0.1", "::ffff:127.0.0.1"}, listening
    # served() sent SIGTERM and waited: the agent, then the head, are gone.
    assert marked(["solo"]) == {}
    for p in head:
        assert not p.is_running() or p.status() == psutil.STATUS_ZOMBIE, p


def _is_ray(proc: psutil.Process) -> bool:
    try:
        return any(w in " ".join(proc.cmdline()) for w in ("gcs_server", "raylet"))
    except psutil.Error:
        return False


def _connections(proc: psutil.Process) -> list[Any]:
    try:
        return list(proc.net_connections(kind="inet"))
    except psutil.Error:
        return []


def test_example_ray_placement(ray_cluster: str) -> None:
    from .test_cli_examples import _run_example

    result = _run_example("-m", "examples.ray_placement", ray_cluster, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "writer: running on node 127.0.0.1" in result.stdout
    assert "the writer went first" in result.stdout
