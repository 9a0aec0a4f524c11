"""Confinement benchmark: what Landlock rules, scoping and dropped capabilities cost a spawn.

Two measures, each against a baseline taken in the same run:

- the cost per spawn: a confined ``/bin/true`` run to its exit (through the exec shim,
  with the rules an agent really gets, about 60) against a plain one, p50 of 300 each;
- spawning 50 confined agents until all run, through the runtime (cgroup + confinement),
  against a bare ``subprocess.Popen`` loop.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from actors import Confinement, become_subreaper, process_spec
from actors._confine import landlock_abi
from actors._exec import exec_shim, shim_argv
from bench._table import isolated, ms, table, verdict
from supervisor import Restart, no_events, open_runtime, supervisor_spec
from supervisor.coordinator import AgentHome
from supervisor.coordinator._confinement import AgentPaths, compile_confinement
from supervisor.protocol import AgentSpec

N = 50
RUNS = 300
PLAIN = ["sleep", "3600"]


def agent_confinement(home: Path, work: Path) -> Confinement:
    """The confinement the coordinator compiles for a ``sleep`` agent (baseline included)."""
    spec = AgentSpec.model_validate(
        {
            "id": "bench",
            "level": "L1",
            "name": "bench",
            "role": "bench",
            "task": "sleep",
            "command": PLAIN,
            "context": {
                "working_directory": str(work),
                "permissions": {"read": [f"{work}/**"], "execute": ["true"]},
            },
        }
    )
    agents = AgentHome.at(home)
    confinement = compile_confinement(
        spec,
        [shutil.which("sleep") or "sleep", "3600"],
        home=agents.root,
        paths=AgentPaths(agents.ensure_agent("bench"), agents.definitions / "bench.md"),
    )
    assert confinement is not None
    return confinement


def _run_to_exit(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True)
    return time.perf_counter() - t0


def per_spawn(confinement: Confinement) -> dict[str, float]:
    """p50 of /bin/true run to its exit: plain, then through each shim with the rules."""
    true = shutil.which("true") or "/bin/true"
    abi = landlock_abi()
    shim = exec_shim()
    variants = {"plain": [true]}
    if shim:
        variants["native"] = shim_argv(true, ["true"], confinement=confinement, abi=abi)
    variants["python"] = shim_argv(true, ["true"], confinement=confinement, abi=abi, shim=None)
    out: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(RUNS):  # interleaved, so the machine's noise falls on every variant
        for name, argv in variants.items():
            out[name].append(_run_to_exit(argv))
    return {name: statistics.median(times) for name, times in out.items()}


def raw_spawn() -> float:
    t0 = time.perf_counter()
    procs = [subprocess.Popen(PLAIN, start_new_session=True) for _ in range(N)]
    took = time.perf_counter() - t0
    for p in procs:
        p.kill()
        p.wait()
    return took


async def ours_spawn(confinement: Confinement) -> dict[str, float]:
    """50 agents until all run, unconfined and confined, interleaved (best of 5 each), so
    the machine's noise falls on both alike."""
    best = {"spawn_unconfined": float("inf"), "spawn_confined": float("inf")}
    async with open_runtime(events=no_events()) as rt:
        for _ in range(5):
            for key, confined in (("spawn_unconfined", None), ("spawn_confined", confinement)):
                sup = await rt.start_child(supervisor_spec("b", restart=Restart.TEMPORARY))
                t0 = time.perf_counter()
                for i in range(N):
                    spec = process_spec(
                        f"c{i}", PLAIN, restart=Restart.TEMPORARY, confinement=confined
                    )
                    await sup.start_child(spec)
                best[key] = min(best[key], time.perf_counter() - t0)
                await rt.terminate("b")
    return best


def _one() -> dict[str, Any]:
    become_subreaper()
    with tempfile.TemporaryDirectory() as tmp:
        home, work = Path(tmp) / "home", Path(tmp) / "work"
        work.mkdir()
        confinement = agent_confinement(home, work)
        result: dict[str, Any] = {"rules": len(confinement.paths), "abi": landlock_abi()}
        result.update(per_spawn(confinement))
        result["raw_spawn"] = min(raw_spawn() for _ in range(5))
        result.update(trio.run(ours_spawn, confinement))
        result["raw_spawn_after"] = min(raw_spawn() for _ in range(5))
    return result


def main() -> None:
    if landlock_abi() == 0:
        print("\n## confinement: Landlock is not available here: nothing to measure")
        return
    r = isolated("bench.confinement", "--one")
    raw = min(r["raw_spawn"], r["raw_spawn_after"])
    added = r.get("native", r["python"]) - r["plain"]
    rows = [
        (
            f"confinement's cost per spawn, p50 of {RUNS} ({r['rules']} rules, abi {r['abi']})",
            f"+{ms(added)} ({'ziggie-cgexec' if 'native' in r else 'python shim'})"
            + f"; python shim +{ms(r['python'] - r['plain'])}",
            f"{ms(r['plain'])} (/bin/true run to exit)",
            f"{(r['plain'] + added) / r['plain']:.2f}x",
            f"<= +0.3 ms: {verdict(added <= 0.0003)}",
        ),
        (
            f"spawn {N} confined agents until running (cgroup + Landlock)",
            f"{ms(r['spawn_confined'])}; unconfined {ms(r['spawn_unconfined'])}"
            f" ({r['spawn_confined'] / r['spawn_unconfined']:.2f}x)",
            f"{ms(raw)} (subprocess.Popen loop)",
            f"{r['spawn_confined'] / raw:.2f}x",
            f"<= 1.5x: {verdict(r['spawn_confined'] <= 1.5 * raw)}",
        ),
    ]
    table("confinement (same run)", rows)


if __name__ == "__main__":
    import json
    import sys

    if "--one" in sys.argv:
        print(json.dumps(_one()))
    else:
        main()
