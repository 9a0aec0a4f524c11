"""Process-agent benchmark: spawn, stop-until-empty and restart, against bare subprocess."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
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

from actors import become_subreaper, process_spec, spawn_mechanism, stop_mechanism, token
from actors._cgroup import runtime_cgroups
from actors._exec import exec_shim, shim_argv
from actors._watchdog import watchdog_pid
from bench._table import ms, table, verdict
from supervisor import (
    Restart,
    Runtime,
    Shutdown,
    StopOrder,
    no_events,
    open_runtime,
    supervisor_spec,
)

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


async def _stop_run(rt: Runtime, name: str, order: StopOrder, shutdown: Shutdown) -> float:
    """Start 50 agents with a grandchild each under one supervisor; time its terminate."""
    sup = await rt.start_child(supervisor_spec(name, restart=Restart.TEMPORARY, stop_order=order))
    for i in range(N):
        spec = process_spec(
            f"{name}{i}", WITH_GRANDCHILD, restart=Restart.TEMPORARY, shutdown=shutdown
        )
        await sup.start_child(spec)
    _wait_grandchildren(N * 2)
    t0 = time.perf_counter()
    await rt.terminate(name)
    return time.perf_counter() - t0


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
        result = {"spawn": min(spawns)}
        left = 0
        # Each stop is the median of 3; brutal_kill measures nothing but the kill itself.
        for key, order, shutdown in (
            ("stop", StopOrder.REVERSE, Shutdown(5)),
            ("stop_concurrent", StopOrder.CONCURRENT, Shutdown(5)),
            ("brutal", StopOrder.REVERSE, Shutdown.BRUTAL_KILL),
            ("brutal_concurrent", StopOrder.CONCURRENT, Shutdown.BRUTAL_KILL),
        ):
            runs = []
            for _ in range(3):
                runs.append(await _stop_run(rt, key, order, shutdown))
                left += len(_descendants())
            result[key] = statistics.median(runs)
    result["left"] = float(left)
    return result


def _fresh_cgroups(count: int) -> list[Path]:
    """*count* new cgroups beside the runtime's agents' (the same parent, the same rules)."""
    own = runtime_cgroups(token())
    assert own is not None
    base = own.path / f"bench-{next(_batches)}"
    base.mkdir()
    made = [base]
    for i in range(count):
        (base / str(i)).mkdir()
        made.append(base / str(i))
    return made


_batches = itertools.count()


def _remove(cgroups: list[Path]) -> None:
    for path in reversed(cgroups):
        path.rmdir()


def raw_shim_spawn(shim: str | None) -> float:
    """A Popen loop that puts each process in a new cgroup before exec, through *shim*
    (the built ziggie-cgexec, or None: the /bin/sh one). mkdir included."""
    program = shutil.which(PLAIN[0])
    assert program is not None
    base, *_ = made = _fresh_cgroups(0)
    t0 = time.perf_counter()
    procs = []
    for i in range(N):
        cg = base / str(i)
        cg.mkdir()
        made.append(cg)
        argv = shim_argv(program, PLAIN, cgroup_procs=str(cg / "cgroup.procs"), shim=shim)
        procs.append(subprocess.Popen(argv, start_new_session=True))
    took = time.perf_counter() - t0
    for p in procs:
        p.kill()
        p.wait()
    _remove(made)
    return took


def raw_cgroup_kill() -> float:
    """The floor: 50 agents (with a grandchild each) in cgroups, then one ``cgroup.kill``
    write each and a poll of ``cgroup.events`` until all read ``populated 0``."""
    shim = exec_shim()
    made = _fresh_cgroups(N)
    groups = made[1:]
    procs = []
    sh = shutil.which(WITH_GRANDCHILD[0])
    assert sh is not None
    for cg in groups:
        argv = shim_argv(sh, WITH_GRANDCHILD, cgroup_procs=str(cg / "cgroup.procs"), shim=shim)
        procs.append(subprocess.Popen(argv, start_new_session=True))
    for cg in groups:
        while len((cg / "cgroup.procs").read_text().split()) < 2:
            time.sleep(0.001)
    t0 = time.perf_counter()
    for cg in groups:
        (cg / "cgroup.kill").write_text("1")
    for cg in groups:
        while b"populated 1" in (cg / "cgroup.events").read_bytes():
            pass
    took = time.perf_counter() - t0
    for p in procs:
        p.wait()
    for pid in _zombies():
        os.waitpid(pid, 0)
    _remove(made)
    return took


def _zombies() -> list[int]:
    """Our zombie children (the killed grandchildren re-parent to us, the subreaper)."""
    found = []
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if child.status() == psutil.STATUS_ZOMBIE:
                found.append(child.pid)
    return found


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
    left = f"{int(ours['left'])} + {int(fallback['left'])} left"
    rows = [
        (
            f"spawn {N} agents until all running ({ours['spawns']})",
            ms(ours["spawn"]) + f"; fallback {ms(fallback['spawn'])}",
            ms(raw_sp) + " (subprocess.Popen loop)",
            f"{ours['spawn'] / raw_sp:.2f}x",
            f"<= 1.3x: {verdict(ours['spawn'] <= 1.3 * raw_sp)}",
        ),
    ]
    if by_cgroup:
        shim, sh = ours["shim_spawn"], ours["sh_spawn"]
        rows.append(
            (
                f"the shim alone: {N} x (mkdir + Popen via ziggie-cgexec)",
                f"{ms(shim)}; /bin/sh shim {ms(sh)} ({sh / ours['raw_spawn']:.2f}x)"
                if shim
                else f"not built; /bin/sh shim {ms(sh)}",
                ms(ours["raw_spawn"]) + " (Popen loop, same process)",
                f"{(shim or sh) / ours['raw_spawn']:.2f}x",
                f"<= 1.3x: {verdict((shim or sh) <= 1.3 * ours['raw_spawn'])}",
            )
        )
    rows += [
        (
            f"stop {N} agents + grandchildren, newest first, verified empty",
            f"{ms(ours['stop'])}; fallback {ms(fallback['stop'])}; {left}",
            ms(raw_st) + " (bare killpg + psutil sweep)",
            f"{ours['stop'] / raw_st:.2f}x",
            f"<= 100 ms, 0 left: {verdict(ours['stop'] <= 0.1 and ours['left'] == 0)}",
        ),
    ]
    floor = ours.get("raw_kill")
    for key, what in (("stop_concurrent", "stop"), ("brutal_concurrent", "brutal_kill")):
        rows.append(
            (
                f"{what} {N} agents + grandchildren, all at once, verified empty",
                f"{ms(ours[key])}; fallback {ms(fallback[key])}",
                f"{ms(floor)} (bare cgroup.kill each, polled)" if floor else "-",
                f"{ours[key] / floor:.2f}x" if floor else "-",
                f"cgroup <= 10 ms: {verdict(by_cgroup and ours[key] <= 0.01)}",
            )
        )
    rows += [
        (
            f"brutal_kill {N} agents + grandchildren, newest first",
            f"{ms(ours['brutal'])}; fallback {ms(fallback['brutal'])}",
            "-",
            "-",
            "(one at a time: informative)",
        ),
        (
            "crash-to-restart latency (p50 / max), no backoff",
            f"{ms(restart['p50'])} / {ms(restart['max'])}",
            "supervisord 1 s, circus 2.5 s (issue)",
            "-",
            f"< 50 ms: {verdict(restart['max'] < 0.05)}",
        ),
    ]
    table(f"process agents vs bare subprocess (same run; stops by {ours['mechanism']})", rows)


def _one() -> None:
    become_subreaper()
    result: dict[str, Any] = trio.run(ours_spawn_and_stop)
    result["mechanism"] = stop_mechanism()
    result["spawns"] = spawn_mechanism()
    if runtime_cgroups(token()) is not None:  # the same machine's floor, measured here
        shim = exec_shim()
        result["raw_spawn"] = statistics.median(raw_spawn() for _ in range(5))
        result["shim_spawn"] = (
            statistics.median(raw_shim_spawn(shim) for _ in range(5)) if shim else 0.0
        )
        result["sh_spawn"] = statistics.median(raw_shim_spawn(None) for _ in range(5))
        result["raw_kill"] = statistics.median(raw_cgroup_kill() for _ in range(3))
    print(json.dumps(result))


if __name__ == "__main__":
    _one() if "--one" in sys.argv else main()
