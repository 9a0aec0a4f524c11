"""``make demo``: an L1 -> L2 -> L3 tree of real agent processes, supervised in-process.

Overwatch (L1) deploys two analysts (L2) through the file-queue client, and each analyst
deploys a scout (L3): every one a real process running the demo agent. Then:

1. the tree is shown;
2. scout-b crashes (exit code 3) and its supervisor, analyst-b, restarts it;
3. analyst-a reaches its deadline: its scout (and the scout's own child process) go first;
4. Overwatch is terminated: the cascade stops everything, children before parents.

Lifecycle events stream to stdout as JSON lines; the tree and a summary go to stderr.
No separate coordinator is needed: the runtime serves the queue from inside this program.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from rich.console import Console
from rich.tree import Tree

from actors import marked_processes, token
from supervisor import (
    AgentDeploymentClient,
    AgentSpec,
    json_events,
    open_runtime,
)
from supervisor.coordinator import Coordinator, Settings, open_coordinator

console = Console(stderr=True)
IDS = ["overwatch", "analyst-a", "scout-a", "analyst-b", "scout-b"]


def agent(
    agent_id: str,
    level: str,
    work: Path,
    *,
    timeout: int,
    children: list[dict[str, Any]] | None = None,
    **env: str,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "id": agent_id,
        "level": level,
        "name": agent_id.replace("-", " ").title(),
        "role": {"L1": "oversight", "L2": "analysis", "L3": "reconnaissance"}[level],
        "task": f"Demo task for {agent_id}",
        "context": {
            "working_directory": str(work),
            # What the kernel holds each agent to (a child's are within its parent's):
            # the demo agent reads the work tree, writes reports, and may run `sleep`.
            "permissions": {
                "read": [f"{work}/**"],
                "write": [f"{work}/reports/**"],
                "execute": ["sleep"],
            },
        },
        "max_iterations": 200,
        "timeout_seconds": timeout,
        "env": {"DEMO_PACE": "0.5", **env},
    }
    if children:
        spec["env"]["DEMO_CHILDREN"] = json.dumps(children)
    return spec


def overwatch_spec(work: Path) -> AgentSpec:
    # As long as its parent may live: when analyst-a times out, the cascade takes scout-a.
    scout_a = agent("scout-a", "L3", work, timeout=8, DEMO_GRANDCHILD="1")
    scout_b = agent("scout-b", "L3", work, timeout=30, DEMO_CRASH_AT="3")
    scout_b["restart"] = "transient"  # crashes once, restarted by analyst-b's supervisor
    analyst_a = agent("analyst-a", "L2", work, timeout=8, children=[scout_a])
    analyst_b = agent("analyst-b", "L2", work, timeout=50, children=[scout_b])
    return AgentSpec.model_validate(
        agent("overwatch", "L1", work, timeout=60, children=[analyst_a, analyst_b])
    )


def show_tree(coord: Coordinator, title: str) -> None:
    tree = Tree(f"[bold]{title}[/]")
    nodes: dict[str | None, Tree] = {None: tree}
    for agent_id in IDS:
        d = coord.service.agent_detail(agent_id)
        if d is None:
            continue
        colour = {"running": "green", "timed_out": "yellow", "failed": "red"}.get(d["state"], "dim")
        parent = nodes.get(d["parent_id"], tree)
        nodes[agent_id] = parent.add(
            f"[bold]{agent_id}[/] {d['level']} [{colour}]{d['state']}[/] pid={d['pid']}"
            f" restarts={d['restarts']}"
        )
    console.print(tree)


class Waiter:
    """Lets the demo wait for lifecycle events, e.g. ``await waiter("restarted", "scout-b")``."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self._wanted: dict[tuple[str, str], anyio.Event] = {}

    def listener(self, name: str, fields: dict[str, Any]) -> None:
        self.seen.append((name, fields))
        event = self._wanted.get((name, fields.get("agent_id", "")))
        if event is not None:
            event.set()

    async def __call__(self, name: str, agent_id: str) -> None:
        if any(n == name and f.get("agent_id") == agent_id for n, f in self.seen):
            return
        with anyio.fail_after(20):
            await self._wanted.setdefault((name, agent_id), anyio.Event()).wait()


async def main() -> int:
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ziggie-demo-") as tmp:
        # The home is the operator's: no agent may touch it, so it lies beside the work
        # tree the agents are given, never inside it.
        work, home = Path(tmp) / "work", Path(tmp) / "home"
        (work / "reports").mkdir(parents=True)
        events = json_events(sys.stdout)
        waiter = Waiter()
        seen = waiter.seen
        with events.listen(waiter.listener):
            async with (
                open_runtime("ziggie", events=events) as rt,
                open_coordinator(rt, Settings(home=home)) as coord,
                AgentDeploymentClient(home / "agent-queue") as client,
            ):
                answer = await client.deploy_agent(overwatch_spec(work))
                console.print(f"[bold]deploy overwatch:[/] {answer.status} pid={answer.pid}")
                for agent_id in IDS:
                    await waiter("started", agent_id)
                show_tree(coord, "1. the tree: L1 -> 2 x L2 -> L3, every node a process")
                await waiter("restarted", "scout-b")
                show_tree(coord, "2. scout-b crashed (exit 3) and analyst-b restarted it")
                await waiter("timed_out", "analyst-a")
                show_tree(coord, "3. analyst-a hit its 8 s deadline; scout-a was stopped first")
                t_term = time.monotonic()
                answer = await client.terminate_agent("overwatch", timeout=60)
                cascade = time.monotonic() - t_term
                show_tree(coord, f"4. terminate overwatch: {answer.status}, whole tree stopped")
        # Ours only (this runtime's token and the tokens made under it): another demo may
        # run on this host with the same ids.
        mine = token()
        left = [
            p.pid
            for p in marked_processes()
            if p.agent_id in IDS and p.token and (p.token + ".").startswith(mine + ".")
        ]
    counts: dict[str, int] = {}
    for name, _ in seen:
        counts[name] = counts.get(name, 0) + 1
    # What the kernel held every agent process to (the ``spawned`` events say it).
    confined = {
        f["confinement"].get("mechanism", "none")
        for n, f in seen
        if n == "spawned" and f.get("confinement")
    }
    console.print(
        "\n[bold]summary[/]: 5 agents in 3 levels; "
        f"{counts.get('spawned', 0)} processes spawned, {counts.get('restarted', 0)} restart, "
        f"{counts.get('timed_out', 0)} timeout, {counts.get('terminated', 0)} terminations; "
        f"cascade stop of overwatch took {cascade * 1000:.0f} ms; "
        f"{len(seen)} events; every agent confined by {', '.join(sorted(confined)) or 'nothing'};"
        f" processes left: {len(left)}; "
        f"total {time.monotonic() - t0:.1f} s"
    )
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(anyio.run(main, backend="trio"))
