"""Ray placement benchmark (issue 14): deploy, terminate a placed subtree, SIGKILL of the
host, each against Ray's own mechanism measured in the same run on the same loopback head.

Run alone with ``python -m bench.ray``; ``make bench`` runs it when Ray is installed.
"""

from __future__ import annotations

import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import trio

from actors import in_family, marked_processes, new_token
from bench._table import ms, table, verdict
from supervisor import no_events, open_runtime
from supervisor.coordinator import Settings, open_coordinator
from supervisor.coordinator._ray import RayEngine, RayUnavailable, import_ray
from supervisor.protocol import DeploymentRequest

AGENT = ["sh", "-c", "sleep 3600 & exec sleep 3600"]  # honours SIGTERM, has a grandchild
ROUNDS = 5


def _pinger() -> type:
    # Made in a function, so Ray ships the class by value: workers need not import bench.
    class Pinger:
        def ping(self) -> int:
            return os.getpid()

    return Pinger


def _ray_baselines(ray: Any) -> dict[str, float]:
    """Ray alone: a cold actor to its first answer, ray.kill of 13 actors until their
    processes are gone, and a built-in restart (``max_restarts``) after SIGKILL."""
    actor_cls = ray.remote(_pinger())
    starts = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        a = actor_cls.options(num_cpus=0).remote()
        ray.get(a.ping.remote())
        starts.append(time.perf_counter() - t0)
        ray.kill(a)
    actors = [actor_cls.options(num_cpus=0).remote() for _ in range(13)]
    pids = [ray.get(a.ping.remote()) for a in actors]
    t0 = time.perf_counter()
    for a in actors:
        ray.kill(a)
    psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=30)
    kill13 = time.perf_counter() - t0
    a = actor_cls.options(num_cpus=0, max_restarts=1, max_task_retries=-1).remote()
    pid = ray.get(a.ping.remote())
    t0 = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    while True:
        try:
            if ray.get(a.ping.remote(), timeout=10) != pid:
                break
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
            time.sleep(0.01)
    restart = time.perf_counter() - t0
    ray.kill(a)
    return {"start": statistics.median(starts), "kill13": kill13, "restart": restart}


def _spec(agent_id: str, level: str, home: Path, **extra: Any) -> dict[str, Any]:
    return {
        "id": agent_id,
        "level": level,
        "name": agent_id,
        "role": "bench",
        "task": "wait",
        "command": AGENT,
        "context": {"working_directory": str(home)},
        "timeout_seconds": 600,
        **extra,
    }


def _request(spec: dict[str, Any], parent: str = "Ziggie") -> DeploymentRequest:
    return DeploymentRequest(action="deploy_agent", agent_spec=spec, parent_agent=parent)


async def _ours(address: str, home: Path) -> dict[str, Any]:
    placement = {"engine": "ray"}
    out: dict[str, Any] = {}
    async with (
        open_runtime(events=no_events()) as rt,
        open_coordinator(rt, Settings(home=home, ray=address)) as coord,
    ):
        service = coord.service
        deploys = []
        for i in range(ROUNDS):
            t0 = time.perf_counter()
            r = await service.execute(_request(_spec(f"d{i}", "L1", home, placement=placement)))
            deploys.append(time.perf_counter() - t0)
            assert r.status == "deployed", r
            await service.execute(
                DeploymentRequest(
                    action="terminate_agent", target_agent_id=f"d{i}", parent_agent="bench"
                )
            )
            await trio.sleep(1.0)  # deploys a second apart: the next spare host is warm
        out["deploy"] = deploys

        stops, left = [], 0
        for round_ in range(3):
            top = f"t{round_}"
            r = await service.execute(_request(_spec(top, "L1", home, placement=placement)))
            assert r.status == "deployed", r
            ids = [top]
            for i in range(3):
                l2 = f"{top}-{i}"
                r = await service.execute(_request(_spec(l2, "L2", home), top))
                assert r.status == "deployed", r
                ids.append(l2)
                for j in range(3):
                    l3 = f"{l2}-{j}"
                    r = await service.execute(_request(_spec(l3, "L3", home), l2))
                    assert r.status == "deployed", r
                    ids.append(l3)
            with trio.fail_after(30):
                while len(_ours_alive(ids, service.token)) < 26:  # 13 agents + 13 grandchildren
                    await trio.sleep(0.005)
            t0 = time.perf_counter()
            r = await service.execute(
                DeploymentRequest(
                    action="terminate_agent", target_agent_id=top, parent_agent="bench"
                )
            )
            stops.append(time.perf_counter() - t0)
            left += len(_ours_alive(ids, service.token))
        out["terminate"], out["left"] = stops, left

        restarts = []
        r = await service.execute(
            _request(_spec("k", "L1", home, placement=placement, restart="permanent"))
        )
        for _ in range(3):
            before = rt.whereis("k")
            t0 = time.perf_counter()
            os.kill(before.host_pid, signal.SIGKILL)
            with trio.fail_after(30):
                while True:
                    now = rt.whereis("k") if "k" in rt else None
                    if now is not None and now is not before:
                        break
                    await trio.sleep(0.002)
            restarts.append(time.perf_counter() - t0)
        out["restart"] = restarts
    return out


def _ours_alive(ids: list[str], family: str) -> list[int]:
    wanted = set(ids)
    return [
        p.pid for p in marked_processes() if p.agent_id in wanted and in_family(p.token, family)
    ]


def main() -> None:
    try:
        ray = import_ray()
    except RayUnavailable as exc:
        print(f"\n## Ray placement: skipped ({exc})")
        return
    engine = RayEngine("local", token=new_token())
    t0 = time.perf_counter()
    engine.connect()
    head_start = time.perf_counter() - t0
    try:
        assert engine.cluster is not None
        # Warm the cluster: the first actor also starts Ray's worker pool.
        ray.get(ray.remote(_pinger()).options(num_cpus=0).remote().ping.remote())
        base = _ray_baselines(ray)
        with tempfile.TemporaryDirectory() as home:
            ours = trio.run(_ours, engine.cluster, Path(home))
    finally:
        engine.close()
    cold, warm = ours["deploy"][0], ours["deploy"][1:]
    deploy, stop, restart = (
        statistics.median(x) for x in (warm, ours["terminate"], ours["restart"])
    )
    rows = [
        (
            "deploy a placed agent to running: warm spare p50 / max; cold",
            f"{ms(deploy)} / {ms(max(warm))}; {ms(cold)}",
            f"Ray actor start {ms(base['start'])}",
            f"{deploy / base['start']:.2f}x",
            f"<= 1.5 s: {verdict(max(ours['deploy']) <= 1.5)}",  # cold included
        ),
        (
            "terminate placed 1+3+9 (+13 grandchildren), verified empty, p50 / max",
            f"{ms(stop)} / {ms(max(ours['terminate']))}, {ours['left']} left",
            f"ray.kill 13 actors {ms(base['kill13'])}",
            f"{stop / base['kill13']:.2f}x",
            f"<= 300 ms: {verdict(max(ours['terminate']) <= 0.3 and ours['left'] == 0)}",
        ),
        (
            "SIGKILL of the host -> running again, p50 / max",
            f"{ms(restart)} / {ms(max(ours['restart']))}",
            f"Ray max_restarts {ms(base['restart'])}",
            f"{restart / base['restart']:.2f}x",
            f"<= 1 s: {verdict(max(ours['restart']) <= 1.0)}",
        ),
    ]
    table(f"Ray placement (loopback head, started in {head_start:.1f} s; warm)", rows)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
