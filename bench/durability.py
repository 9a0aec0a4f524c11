"""What durability costs (issue 10, item 12): ``durability = "full"`` against ``"fast"``.

Requests that change something (here: terminate of unknown ids, answered "not found",
recorded and, under ``full``, fsynced before their answer appears) through a real
``ziggie serve``: one at a time (the latency of one fsync) and 1,000 dropped at once
(group commit: one fsync per wake-up). Both settings run in the same process, in turn.
Run: ``python -m bench.durability``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
from inotify_simple import INotify
from inotify_simple import flags as iflags

from bench._table import ms, table
from supervisor import AgentDeploymentClient, DeploymentRequest

ROUNDS = 200
BURST = 1000


@contextlib.contextmanager
def serving(home: Path, durability: str) -> Iterator[None]:
    env = {**os.environ, "ZIGGIE_DURABILITY": durability}
    proc = subprocess.Popen(
        [sys.executable, "-m", "supervisor.cli", "serve", "--home", str(home), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        events = home / "events.jsonl"
        while not (events.exists() and "coordinator_ready" in events.read_text()):
            assert time.monotonic() < deadline
            assert proc.poll() is None
            time.sleep(0.02)
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


async def one_at_a_time(queue: Path) -> list[float]:
    async with AgentDeploymentClient(queue) as client:
        for i in range(20):
            await client.terminate_agent(f"warm-{i}")
        took = []
        for i in range(ROUNDS):
            t0 = time.perf_counter()
            await client.terminate_agent(f"ghost-{i}")
            took.append(time.perf_counter() - t0)
    return took


def burst(queue: Path) -> float:
    ino = INotify()
    ino.add_watch(str(queue / "responses"), iflags.MOVED_TO | iflags.CLOSE_WRITE)
    rids = [f"b-{i}" for i in range(BURST)]
    for rid in rids:
        req = DeploymentRequest(
            request_id=rid, parent_agent="bench", action="terminate_agent", target_agent_id="x"
        )
        (queue / "requests" / f".{rid}.tmp").write_text(req.model_dump_json())
    t0 = time.perf_counter()
    for rid in rids:
        os.replace(queue / "requests" / f".{rid}.tmp", queue / "requests" / f"{rid}.request.json")
    seen: set[str] = set()
    while len(seen) < BURST:
        for ev in ino.read(timeout=20_000):
            if ev.name.startswith("b-"):
                seen.add(ev.name)
    took = time.perf_counter() - t0
    ino.close()
    return took


def main() -> None:
    runs: dict[str, list[tuple[float, float]]] = {"full": [], "fast": []}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp_name:
        for n in range(3):
            for durability in ("full", "fast"):  # interleaved: the machine is noisy
                home = Path(tmp_name) / f"home-{durability}-{n}"
                with serving(home, durability):
                    queue = home / "agent-queue"
                    rounds = anyio.run(one_at_a_time, queue)
                    took = burst(queue)
                runs[durability].append((statistics.median(rounds), took))
    rows = []
    for durability, got in runs.items():
        p50s = sorted(p for p, _ in got)
        bursts = sorted(b for _, b in got)
        rows.append(
            (
                f"durability = {durability!r}",
                f"{ms(p50s[0])}–{ms(p50s[-1])} p50, one at a time",
                f"{bursts[0]:.3f}–{bursts[-1]:.3f} s for {BURST:,} at once",
                "-",
                "-",
            )
        )
    table("durability: changes (terminate) answered through ziggie serve, 3 runs", rows)


if __name__ == "__main__":
    main()
