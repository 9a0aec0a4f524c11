"""An L1 placed on a Ray cluster with its whole subtree: its L2 (deployed by the L1 itself,
over HTTP with its agent token) runs in the same remote runtime, and shows its node.

    python -m examples.ray_placement              # a private loopback head ("local")
    python -m examples.ray_placement HOST:PORT    # an existing cluster

Needs the extra: ``pip install 'ziggie[ray]'``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import anyio
import httpx

from supervisor import no_events, open_runtime
from supervisor.coordinator import Settings, open_coordinator


def spec(agent_id: str, level: str, home: Path, **extra: object) -> dict[str, object]:
    return {
        "id": agent_id,
        "level": level,
        "name": agent_id,
        "role": "example",
        "task": "count to 20",
        "context": {"working_directory": str(home)},
        "max_iterations": 20,
        "env": {"DEMO_PACE": "0.1", **extra.pop("env", {})},  # type: ignore[dict-item]
        **extra,
    }


async def main(address: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        l2 = spec("writer", "L2", home)
        l1 = spec(
            "lead",
            "L1",
            home,
            timeout_seconds=60,
            placement={"engine": "ray", "resources": {}},  # or "node": "<node id or IP>"
            env={"DEMO_CHILDREN": json.dumps([l2])},
        )
        settings = Settings(home=home, http="127.0.0.1:0", ray=address)
        async with (
            open_runtime(events=no_events()) as rt,
            open_coordinator(rt, settings) as coord,
        ):
            assert coord.url is not None
            token = (home / "api-token").read_text().strip()
            auth = {"Authorization": f"Bearer {token}"}
            writer_up = anyio.Event()

            def on_event(event: str, fields: dict[str, object]) -> None:
                # The remote runtime's events come home, with their node.
                if event == "started" and fields.get("agent_id") == "writer":
                    print(f"event from node {fields.get('node')}: writer started")
                    writer_up.set()

            async with httpx.AsyncClient(base_url=coord.url, headers=auth, timeout=60) as api:
                with rt.events.listen(on_event):
                    r = await api.post("/v1/agents", json={"agent_spec": l1})
                    print("deploy:", r.json()["message"])
                    with anyio.fail_after(30):
                        await writer_up.wait()  # the L1 deploys its L2 as it starts
                for agent in ("lead", "writer"):
                    a = (await api.get(f"/v1/agents/{agent}")).json()["agent"]
                    print(f"{agent}: {a['state']} on node {a['node']} (pid {a['pid']})")
                r = await api.delete("/v1/agents/lead")
                print("terminate:", r.json()["message"], "- the writer went first")
        # Leaving the coordinator stopped the private head it started (address "local").


if __name__ == "__main__":
    anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else "local", backend="trio")
