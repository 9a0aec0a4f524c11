"""Kernel benchmark: a 10 x 10 x 100 tree of in-process actors against raw trio tasks.

``python -m bench.kernel`` prints the table; ``python -m bench.kernel VARIANT`` runs one
measurement in this interpreter and prints it as JSON (the table runs each variant in a
fresh interpreter).
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
import time
from typing import Any

import psutil
import trio

from actors import function_spec
from bench._table import isolated, ms, table, verdict
from supervisor import ChildContext, ChildSpec, no_events, open_runtime, supervisor_spec

SHAPE = (10, 10, 100)


def rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


async def _raw_leaf(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()
    await trio.sleep_forever()


async def _raw_node(fanout: tuple[int, ...], task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    async with trio.open_nursery() as nursery:
        first, rest = fanout[0], fanout[1:]
        for _ in range(first):
            await nursery.start(_raw_node, rest) if rest else await nursery.start(_raw_leaf)
        task_status.started()
        await trio.sleep_forever()


async def raw_trio() -> dict[str, float]:
    async with trio.open_nursery() as nursery:
        t0 = time.perf_counter()
        await nursery.start(_raw_node, SHAPE)
        spawn = time.perf_counter() - t0
        rss = rss_mb()
        t0 = time.perf_counter()
        nursery.cancel_scope.cancel()
    cancel = time.perf_counter() - t0
    return {"spawn": spawn, "cancel": cancel, "rss": rss}


def _tree() -> ChildSpec:
    l1, l2, l3 = SHAPE
    return supervisor_spec(
        "top",
        [
            supervisor_spec(
                f"l1-{i}",
                [
                    supervisor_spec(
                        f"l2-{i}-{j}",
                        [function_spec(f"l3-{i}-{j}-{k}", trio.sleep_forever) for k in range(l3)],
                    )
                    for j in range(l2)
                ],
            )
            for i in range(l1)
        ],
    )


async def ziggie_tree() -> dict[str, float]:
    spec = _tree()
    async with open_runtime(events=no_events()) as rt:
        t0 = time.perf_counter()
        await rt.start_child(spec)
        spawn = time.perf_counter() - t0
        rss = rss_mb()
        t0 = time.perf_counter()
        await rt.root.terminate_child("top")
        cancel = time.perf_counter() - t0
    return {"spawn": spawn, "cancel": cancel, "rss": rss, "nodes": float(len(rt.ids()))}


async def ziggie_restart() -> dict[str, float]:
    """Crash-to-started latency of a one_for_one restart, no backoff."""
    crashed_at: list[float] = []
    latencies: list[float] = []
    rounds = 2000

    async def start(ctx: ChildContext) -> None:
        now = time.perf_counter()
        if crashed_at:
            latencies.append(now - crashed_at[-1])
        ctx.started()
        await trio.sleep(0)
        if len(latencies) < rounds:
            crashed_at.append(time.perf_counter())
            raise RuntimeError("crash")
        await trio.sleep_forever()

    async with open_runtime(events=no_events(), max_restarts=10**9) as rt:
        await rt.start_child(ChildSpec("crashy", start))
        while len(latencies) < rounds:
            await trio.sleep(0.01)
    return {
        "p50": statistics.median(latencies),
        "p99": statistics.quantiles(latencies, n=100)[98],
    }


VARIANTS = {"raw": raw_trio, "tree": ziggie_tree, "restart": ziggie_restart}


def main() -> None:
    if len(sys.argv) > 1:
        print(json.dumps(trio.run(VARIANTS[sys.argv[1]])))
        return
    base_interp = isolated("bench.kernel_base")
    raw = isolated("bench.kernel", "raw")
    ours = isolated("bench.kernel", "tree")
    restart = isolated("bench.kernel", "restart")
    n = SHAPE[0] * SHAPE[1] * SHAPE[2]
    rows = [
        (
            f"spawn {n:,} actors ({'x'.join(map(str, SHAPE))}), each awaited",
            ms(ours["spawn"]),
            ms(raw["spawn"]) + " (raw trio nursery.start)",
            f"{ours['spawn'] / raw['spawn']:.2f}x",
            f"<= 2x: {verdict(ours['spawn'] <= 2 * raw['spawn'])}",
        ),
        (
            "cascade stop of the whole tree",
            ms(ours["cancel"]),
            ms(raw["cancel"]) + " (raw trio cancel)",
            f"{ours['cancel'] / raw['cancel']:.2f}x",
            f"<= 1.5x: {verdict(ours['cancel'] <= 1.5 * raw['cancel'])}",
        ),
        (
            "RSS with the tree running",
            f"{ours['rss']:.0f} MB",
            f"{raw['rss']:.0f} MB (raw trio); {base_interp['rss']:.0f} MB idle",
            f"{ours['rss'] / raw['rss']:.2f}x",
            f"< 150 MB: {verdict(ours['rss'] < 150)}",
        ),
        (
            "restart latency, crash to started (p50 / p99)",
            f"{restart['p50'] * 1e3:.3f} / {restart['p99'] * 1e3:.3f} ms",
            "-",
            "-",
            f"< 1 ms: {verdict(restart['p99'] < 1e-3)}",
        ),
    ]
    table("kernel: supervision tree vs raw trio (same run, fresh interpreter each)", rows)


if __name__ == "__main__":
    main()
