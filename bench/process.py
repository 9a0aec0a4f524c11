"""Process-agent benchmark: spawn, stop-until-empty and restart, against bare subprocess."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import trio

from actors import become_subreaper, process_spec, stop_mechanism
from actors._watchdog import watchdog_pid
from bench._table import ms, table, verdict
from supervisor import Restart, Shutdown, no_events, open_runtime, supervisor_spec

N = 50
# An agent that honours SIGTERM and has one grandchild in its group.
WITH_GRANDCHILD = ["sh", "-c", "sleep 3600 & exec sleep 3600"]
PLAIN = ["sleep", "3600"]


def _descendants() -> list[psutil.Process]:
    """Our descendants, less the runtime's watchdog (it lives as long as we do)."""
    keep = watchdog_pid()
    return [p for p in psutil.Process().children(recursive=True) if p.pid != keep]


def raw_spawn() -> float:
    t0 = time.perf_counter()
    procs = [subprocess.Popen(PLAIN, start_new_session=True) for _ in range(N)]
    took = time.perf_counter() - t0
    for p in procs:
        p.kill()
        p.wait()
    return took


def raw_stop() -> tuple[float, int]:
    """A bare killpg of every group, then a psutil sweep of every descendant."""
    procs = [subprocess.Popen(WITH_GRANDCHILD, start_new_session=True) for _ in range(N)]
    _wait_grandchildren(N * 2)
    t0 = time.perf_counter()
    for p in procs:
        os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        p.wait()
    left = _descendants()
    for child in left:
        child.kill()
    psutil.wait_procs(left)
    took = time.perf_counter() - t0
    return took, 0


def _wait_grandchildren(count: int) -> None:
    deadline = time.monotonic() + 30
    while len(_descendants()) < count:
        assert time.monotonic() < deadline
        time.sleep(0.005)


async def ours_spawn_and_stop() -> dict[str, float]:
    async with open_runtime(events=no_events()) as rt:
        spawns = []
        for _ in range(3):  # best of 3, as for the baseline
            sup = await rt.start_child(supervisor_spec("plain", restart=Restart.TEMPORARY))
            t0 = time.perf_counter()
            for i in range(N):
                await sup.start_child(process_spec(f"p{i}", PLAIN, restart=Restart.TEMPORARY))
            spawns.append(time.perf_counter() - t0)
            await rt.terminate("plain")
        spawn = min(spawns)

        sup = await rt.start_child(supervisor_spec("gc", restart=Restart.TEMPORARY))
        for i in range(N):
            await sup.start_child(process_spec(f"g{i}", WITH_GRANDCHILD, restart=Restart.TEMPORARY))
        _wait_grandchildren(N * 2)
        t0 = time.perf_counter()
        await rt.terminate("gc")
        stop = time.perf_counter() - t0
        left = len(_descendants())

        # brutal_kill: no grace, so nothing but the kill itself is measured
        sup = await rt.start_child(supervisor_spec("bk", restart=Restart.TEMPORARY))
        for i in range(N):
            spec = process_spec(
                f"b{i}", WITH_GRANDCHILD, restart=Restart.TEMPORARY, shutdown=Shutdown.BRUTAL_KILL
            )
            await sup.start_child(spec)
        _wait_grandchildren(N * 2)
        t0 = time.perf_counter()
        await rt.terminate("bk")
        brutal = time.perf_counter() - t0
        left += len(_descendants())
    return {"spawn": spawn, "stop": stop, "brutal": brutal, "left": float(left)}


async def ours_restart() -> dict[str, float]:
    """Crash-to-running latency: the process prints its exit time, then exits 1."""
    rounds = 30
    starts: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "crash.log"
        argv = [
            sys.executable,
            "-S",
            "-c",
            "import time,sys; print(time.time(), flush=True); sys.exit(1)",
        ]
        events = no_events()
        spec = process_spec("crashy", argv, log_path=log)
        with events.listen(lambda n, f: starts.append(time.time()) if n == "spawned" else None):
            async with open_runtime(events=events, max_restarts=10**6) as rt:
                await rt.start_child(spec)
                while len(starts) < rounds + 1:
                    await trio.sleep(0.01)
                await rt.terminate("crashy")
        exits = [float(x) for x in log.read_text().split()]
    latencies = [start - exit_ for exit_, start in zip(exits, starts[1:], strict=False)]
    return {"p50": statistics.median(latencies), "max": max(latencies)}


def _isolated(cgroups: bool) -> dict[str, Any]:
    """One spawn-and-stop run in a fresh interpreter, with cgroups or forced without."""
    env = {**os.environ, "ZIGGIE_CGROUPS": "auto" if cgroups else "off"}
    out = subprocess.run(
        [sys.executable, "-m", "bench.process", "--one"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    # Fresh interpreters first: once we are a subreaper, their watchdogs would re-parent
    # to us as they exit, and linger as our zombies.
    ours = _isolated(cgroups=True)
    fallback = _isolated(cgroups=False)
    # As ``ziggie serve`` does by default: a host's explicit choice (issue 10, item 7).
    become_subreaper()
    raw_sp = min(raw_spawn() for _ in range(3))
    raw_st, _ = raw_stop()
    by_cgroup = str(ours["mechanism"]).startswith("cgroup2")
    restart = trio.run(ours_restart)
    assert not _descendants()
    rows = [
        (
            f"spawn {N} agents until all running",
            ms(ours["spawn"]),
            ms(raw_sp) + " (subprocess.Popen loop)",
            f"{ours['spawn'] / raw_sp:.2f}x",
            f"<= 1.3x: {verdict(ours['spawn'] <= 1.3 * raw_sp)}",
        ),
        (
            f"stop {N} agents + grandchildren, verified empty",
            f"{ms(ours['stop'])}, {int(ours['left'])} left",
            ms(raw_st) + " (bare killpg + psutil sweep)",
            f"{ours['stop'] / raw_st:.2f}x",
            f"<= 100 ms, 0 left: {verdict(ours['stop'] <= 0.1 and ours['left'] == 0)}",
        ),
        (
            f"stop {N} agents + grandchildren: {ours['mechanism'].split()[0]} vs fallback",
            f"{ms(ours['stop'])} vs {ms(fallback['stop'])}, {int(fallback['left'])} left",
            "process groups + /proc sweep (same code, forced)",
            f"{ours['stop'] / fallback['stop']:.2f}x",
            "(ordered, each to its grace: informative)",
        ),
        (
            f"brutal_kill {N} agents + grandchildren: {ours['mechanism'].split()[0]} vs fallback",
            f"{ms(ours['brutal'])} vs {ms(fallback['brutal'])}",
            "process groups + /proc sweep (same code, forced)",
            f"{ours['brutal'] / fallback['brutal']:.2f}x",
            f"cgroup <= 10 ms: {verdict(by_cgroup and ours['brutal'] <= 0.01)}",
        ),
        (
            f"spawn {N} agents: shim into a cgroup vs fallback",
            f"{ms(ours['spawn'])} vs {ms(fallback['spawn'])}",
            ms(raw_sp) + " (subprocess.Popen loop)",
            f"{ours['spawn'] / raw_sp:.2f}x",
            f"<= 1.3x Popen: {verdict(ours['spawn'] <= 1.3 * raw_sp)}",
        ),
        (
            "crash-to-restart latency (p50 / max), no backoff",
            f"{ms(restart['p50'])} / {ms(restart['max'])}",
            "supervisord 1 s, circus 2.5 s (issue)",
            "-",
            f"< 50 ms: {verdict(restart['max'] < 0.05)}",
        ),
    ]
    table("process agents vs bare subprocess (same run)", rows)


def _one() -> None:
    become_subreaper()
    result: dict[str, Any] = trio.run(ours_spawn_and_stop)
    result["mechanism"] = stop_mechanism()
    print(json.dumps(result))


if __name__ == "__main__":
    _one() if "--one" in sys.argv else main()
