"""Tracing benchmark: ``ziggie serve`` with OpenTelemetry traces on (a collector answering
on 127.0.0.1) against the same with tracing off, in the same run, rounds interleaved.

Measured through the file queue, as an operator or an agent deploys: one deploy at a time
(round trip to ``deployed``), and 50 deploys at once until every one answered (each one
a real process started, with its span, its TRACEPARENT and its journal record).
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
import psutil

from bench._table import ms, table, verdict
from supervisor import AgentDeploymentClient, AgentSpec
from tests.otlp_helpers import otlp_receiver

ROUNDS = 7
DEPLOYS = 20
AT_ONCE = 50


@contextlib.contextmanager
def serve(home: Path, env: dict[str, str]) -> Iterator[psutil.Process]:
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
        yield psutil.Process(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def _spec(agent_id: str, work: Path) -> AgentSpec:
    return AgentSpec(
        id=agent_id,
        level="L1",
        name=agent_id,
        role="bench",
        task="bench",
        context={"working_directory": str(work)},  # type: ignore[arg-type]
        command=["sleep", "3600"],
    )


async def one_round(queue: Path, work: Path, tag: str) -> tuple[list[float], float]:
    """Deploy round trips one at a time, then 50 at once; everything terminated after."""
    async with AgentDeploymentClient(queue) as client:
        for _ in range(5):  # warm up
            await client.check_agent_status("x")
        trips = []
        for i in range(DEPLOYS):
            t0 = time.perf_counter()
            answer = await client.deploy_agent(_spec(f"{tag}-one-{i}", work))
            trips.append(time.perf_counter() - t0)
            assert answer.status == "deployed", answer

        async def deploy(i: int) -> None:
            answer = await client.deploy_agent(_spec(f"{tag}-many-{i}", work), timeout=120)
            assert answer.status == "deployed", answer

        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(AT_ONCE):
                tg.start_soon(deploy, i)
        at_once = time.perf_counter() - t0
        async with anyio.create_task_group() as tg:
            for name in [f"{tag}-one-{i}" for i in range(DEPLOYS)] + [
                f"{tag}-many-{i}" for i in range(AT_ONCE)
            ]:
                tg.start_soon(client.terminate_agent, name)
    return trips, at_once


def main() -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    with (
        tempfile.TemporaryDirectory(prefix="ziggie-bench-trace-") as tmp,
        otlp_receiver() as receiver,
    ):
        root = Path(tmp)
        work = root / "work"
        work.mkdir()
        traced_env = {**base, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}
        results: dict[str, tuple[list[float], list[float]]] = {"off": ([], []), "on": ([], [])}
        cpu: dict[str, list[float]] = {"off": [], "on": []}
        with serve(root / "off", base) as off, serve(root / "on", traced_env) as on:
            for n in range(ROUNDS):
                for variant in ("off", "on") if n % 2 == 0 else ("on", "off"):
                    proc = off if variant == "off" else on
                    before = sum(proc.cpu_times()[:2])
                    trips, at_once = anyio.run(
                        one_round, root / variant / "agent-queue", work, f"r{n}"
                    )
                    cpu[variant].append(sum(proc.cpu_times()[:2]) - before)
                    results[variant][0].extend(trips)
                    results[variant][1].append(at_once)
        spans = len(receiver.spans)
    trip_off, trip_on = (statistics.median(results[v][0]) for v in ("off", "on"))
    many_off, many_on = (statistics.median(results[v][1]) for v in ("off", "on"))
    cpu_off, cpu_on = (statistics.median(cpu[v]) for v in ("off", "on"))
    table(
        "Tracing on (a collector answering) against off, same run, rounds interleaved",
        [
            (
                "deploy round trip to 'deployed', p50",
                ms(trip_on),
                ms(trip_off),
                f"{trip_on / trip_off:.2f}x",
                f"<= 1.1x: {verdict(trip_on / trip_off <= 1.1)}",
            ),
            (
                f"{AT_ONCE} deploys at once, until all deployed (median of {ROUNDS})",
                ms(many_on),
                ms(many_off),
                f"{many_on / many_off:.2f}x",
                f"<= 1.1x: {verdict(many_on / many_off <= 1.1)}",
            ),
            (
                "the coordinator's CPU for one round (20 + 50 deploys, 70 stops)",
                ms(cpu_on),
                ms(cpu_off),
                f"{cpu_on / cpu_off:.2f}x",
                "-",
            ),
            ("spans the collector received", str(spans), "-", "-", "all exported"),
        ],
    )


if __name__ == "__main__":
    main()
