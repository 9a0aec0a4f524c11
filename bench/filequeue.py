"""File-queue benchmark: ``ziggie serve`` and our client, against the seed's way of doing it.

Baselines measured in the same run: a client that polls every 100 ms (the seed's), and a
bare inotify responder with no validation and no journal (the floor for a burst).
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
from inotify_simple import INotify
from inotify_simple import flags as iflags

from bench._table import ms, table, verdict
from supervisor import AgentDeploymentClient, AgentSpec, DeploymentRequest

ROUNDS = 200
BURST = 1000


@contextlib.contextmanager
def coordinator(home: Path) -> Iterator[None]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "supervisor.cli", "serve", "--home", str(home), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
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


BARE = textwrap.dedent(
    """
    import json, os, sys
    from inotify_simple import INotify, flags
    q = sys.argv[1]
    ino = INotify()
    ino.add_watch(q + "/requests", flags.CLOSE_WRITE | flags.MOVED_TO)
    print("ready", flush=True)
    while True:
        for ev in ino.read():
            if not ev.name.endswith(".request.json") or ev.name.startswith("."):
                continue
            rid = ev.name[: -len(".request.json")]
            tmp = f"{q}/responses/.{rid}.tmp"
            with open(tmp, "w") as f:
                json.dump({"request_id": rid, "status": "completed"}, f)
            os.replace(tmp, f"{q}/responses/{rid}.response.json")
    """
)


def _drop_burst(queue: Path, prefix: str) -> float:
    """Drop BURST status requests at once; seconds until every answer exists."""
    ino = INotify()
    ino.add_watch(str(queue / "responses"), iflags.MOVED_TO | iflags.CLOSE_WRITE)
    bodies = []
    for i in range(BURST):
        rid = f"{prefix}-{i}"
        req = DeploymentRequest(
            request_id=rid, parent_agent="bench", action="status_check", target_agent_id="x"
        )
        bodies.append((rid, req.model_dump_json()))
    for rid, body in bodies:  # written first, renamed in together: "dropped at once"
        (queue / "requests" / f".{rid}.tmp").write_text(body)
    t0 = time.perf_counter()
    for rid, _ in bodies:
        os.replace(queue / "requests" / f".{rid}.tmp", queue / "requests" / f"{rid}.request.json")
    seen: set[str] = set()
    while len(seen) < BURST:
        for ev in ino.read(timeout=10_000):
            if ev.name.startswith(prefix):
                seen.add(ev.name)
    took = time.perf_counter() - t0
    ino.close()
    return took


def _settle(queue: Path, timeout: float = 30) -> None:
    """Until the coordinator has archived every request (processing/ and requests/ empty)."""
    ino = INotify()
    for sub in ("requests", "processing"):
        ino.add_watch(str(queue / sub), iflags.MOVED_FROM | iflags.DELETE)
    deadline = time.monotonic() + timeout
    while os.listdir(queue / "requests") or os.listdir(queue / "processing"):
        assert time.monotonic() < deadline, "the coordinator did not settle"
        ino.read(timeout=100)
    ino.close()


def bare_burst(tmp: Path) -> float:
    queue = tmp / "bare"
    (queue / "requests").mkdir(parents=True)
    (queue / "responses").mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", BARE, str(queue)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        return _drop_burst(queue, "b")
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


async def polling_round_trips(queue: Path) -> list[float]:
    """The seed's client: write the request, then look for the answer every 100 ms."""
    times = []
    for _ in range(20):
        rid = str(uuid.uuid4())
        req = DeploymentRequest(
            request_id=rid, parent_agent="bench", action="status_check", target_agent_id="x"
        )
        t0 = time.perf_counter()
        (queue / "requests" / f"{rid}.request.json").write_text(req.model_dump_json())
        while not (queue / "responses" / f"{rid}.response.json").exists():
            await anyio.sleep(0.1)
        times.append(time.perf_counter() - t0)
    return times


async def our_round_trips(queue: Path, work: Path) -> tuple[list[float], list[float]]:
    async with AgentDeploymentClient(queue) as client:
        for _ in range(20):  # warm up
            await client.check_agent_status("x")
        status = []
        for _ in range(ROUNDS):
            t0 = time.perf_counter()
            await client.check_agent_status("x")
            status.append(time.perf_counter() - t0)
        deploys = []
        for i in range(20):
            spec = AgentSpec(
                id=f"bench-{i}",
                level="L1",
                name="bench",
                role="bench",
                task="bench",
                context={"working_directory": str(work)},  # type: ignore[arg-type]
                command=["sleep", "3600"],
            )
            t0 = time.perf_counter()
            answer = await client.deploy_agent(spec)
            deploys.append(time.perf_counter() - t0)
            assert answer.status == "deployed", answer
        for i in range(20):
            await client.terminate_agent(f"bench-{i}")
    return status, deploys


CONCURRENT = 1000


async def _gather_status(queue: Path, n: int, backend: str) -> tuple[float, int]:
    """*n* concurrent ``check_agent_status`` on one client (an L1 fanning out).

    asyncio uses ``asyncio.gather`` (as the issue's reproduction), trio a nursery.
    Returns (seconds until every call returned, how many came back as a timeout).
    """
    async with AgentDeploymentClient(queue) as client:
        await client.check_agent_status("x")  # warm: the watch exists
        t0 = time.perf_counter()
        if backend == "asyncio":
            import asyncio

            answers = await asyncio.gather(
                *(client.check_agent_status(f"c-{i}", timeout=10) for i in range(n))
            )
        else:
            answers = []

            async def one(i: int) -> None:
                answers.append(await client.check_agent_status(f"c-{i}", timeout=10))

            async with anyio.create_task_group() as tg:
                for i in range(n):
                    tg.start_soon(one, i)
        took = time.perf_counter() - t0
    lost = sum(1 for a in answers if a.message == "Request timeout")
    return took, lost


def concurrent_calls(queue: Path) -> dict[str, tuple[float, int]]:
    """Best of two runs per backend, alternated: the first run after the burst pays for
    the coordinator's and the disk's warm-up whichever backend it is."""
    runs: dict[str, list[tuple[float, int]]] = {"asyncio": [], "trio": []}
    for _ in range(2):
        for backend, results in runs.items():
            results.append(anyio.run(_gather_status, queue, CONCURRENT, backend, backend=backend))
    return {
        backend: (min(t for t, _ in results), max(lost for _, lost in results))
        for backend, results in runs.items()
    }


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        work = tmp / "work"
        work.mkdir()
        home = tmp / "home"
        bare = bare_burst(tmp)
        with coordinator(home):
            queue = home / "agent-queue"
            status, deploys = anyio.run(our_round_trips, queue, work)
            polled = anyio.run(polling_round_trips, queue)
            burst = _drop_burst(queue, "z")
            _settle(queue)  # the burst's archiving is not the next measurement's cost
            fanout = concurrent_calls(queue)
    p50, p99 = statistics.median(status), pct(status, 99)
    poll50 = statistics.median(polled)
    rows = [
        (
            "status round trip p50 / p99",
            f"{ms(p50)} / {ms(p99)}",
            f"{ms(poll50)} p50 (client polling every 100 ms)",
            f"{poll50 / p50:.0f}x faster",
            f"p50 <= 1 ms: {verdict(p50 <= 1e-3)}",
        ),
        (
            f"{BURST:,} requests dropped at once, all answered",
            f"{burst:.3f} s",
            f"{bare:.3f} s (bare inotify responder, no validation/journal)",
            f"{burst / bare:.2f}x",
            f"<= 0.6 s: {verdict(burst <= 0.6)}",
        ),
        *(
            (
                f"{CONCURRENT:,} concurrent client calls ({backend}, best of 2)",
                f"{took:.3f} s, {lost} lost",
                f"{bare:.3f} s (bare responder burst)",
                f"{took / bare:.2f}x",
                f"<= 0.6 s, none lost: {verdict(took <= 0.6 and lost == 0)}",
            )
            for backend, (took, lost) in fanout.items()
        ),
        (
            "deploy round trip to 'deployed' (p50 / max)",
            f"{ms(statistics.median(deploys))} / {ms(max(deploys))}",
            "seed: 602 ms (issue)",
            "-",
            f"<= 20 ms: {verdict(statistics.median(deploys) <= 0.02)}",
        ),
    ]
    table("file queue: ziggie serve + client vs polling (same run)", rows)


if __name__ == "__main__":
    main()
