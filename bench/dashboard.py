"""Dashboard benchmark (issue 13): 1,000 agents in headless Chromium, under 100 events/s.

- render: navigation -> the whole tree of 1,000 real (``sleep``) agents drawn;
- live updates: how far behind each event's server timestamp the page applied it;
- frames: the longest event-applying frame while >= 100 events/s arrive.
Skipped (with a line saying so) where no Chromium is installed.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench._table import table, verdict
from bench.http import ziggie_server


def _spec(agent_id: str, home: str, level: str) -> dict[str, Any]:
    return {
        "id": agent_id,
        "level": level,
        "name": agent_id,
        "role": "bench",
        "task": "idle",
        "context": {"working_directory": home},
        "command": ["sleep", "600"],
        "timeout_seconds": 600 if level == "L1" else 500 if level == "L2" else 400,
    }


def main() -> None:
    from tests.browser import CHROMIUM, FLAGS

    if CHROMIUM is None:
        print("\n## dashboard: skipped (no chromium-headless-shell or chromium installed)")
        return
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, ziggie_server(Path(tmp)) as (url, token):
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            for i in range(10):
                client.post("/v1/agents", json={"agent_spec": _spec(f"a{i}", tmp, "L1")})
                for j in range(9):
                    body = {"agent_spec": _spec(f"a{i}-{j}", tmp, "L2"), "parent_agent": f"a{i}"}
                    client.post("/v1/agents", json=body)
                    for k in range(10):
                        leaf = _spec(f"a{i}-{j}-{k}", tmp, "L3")
                        body = {"agent_spec": leaf, "parent_agent": f"a{i}-{j}"}
                        assert client.post("/v1/agents", json=body).status_code == 201
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.goto(f"{url}/#token={token}")
                page.locator("li[role=treeitem]").nth(999).wait_for(state="attached")
                rendered = page.evaluate("window.__ziggie.stats.renderedAt")
                page.evaluate(
                    "window.__ziggie.stats.frames = []; window.__ziggie.stats.eventLag = []"
                )
                # Load: start and stop agents, paced to about 100 events/s for 5 s (each
                # cycle is ~7 lifecycle events: spawned, started, stop_requested, ...).
                t0 = time.monotonic()
                n = 0
                while time.monotonic() - t0 < 5:
                    body = {"agent_spec": _spec(f"churn-{n}", tmp, "L1")}
                    client.post("/v1/agents", json=body)
                    client.delete(f"/v1/agents/churn-{n}")
                    n += 1
                    time.sleep(max(0.0, t0 + n / 14 - time.monotonic()))
                page.wait_for_timeout(500)
                stats = page.evaluate(
                    "({lag: window.__ziggie.stats.eventLag, frames: window.__ziggie.stats.frames,"
                    " events: window.__ziggie.stats.events})"
                )
                browser.close()
            for i in range(10):
                client.delete(f"/v1/agents/a{i}", timeout=120)
    lag = sorted(stats["lag"])
    rate = len(lag) / 5
    p50 = statistics.median(lag) if lag else float("nan")
    p99 = lag[int(len(lag) * 0.99) - 1] if lag else float("nan")
    longest = max(stats["frames"] or [0])
    table(
        "dashboard: 1,000 agents in headless Chromium",
        [
            (
                "render the tree of 1,000 agents",
                f"{rendered:.0f} ms",
                "-",
                "-",
                f"< 1 s: {verdict(rendered < 1000)}",
            ),
            (
                f"live update lag at {rate:.0f} events/s (p50 / p99)",
                f"{p50:.0f} / {p99:.0f} ms",
                "-",
                "-",
                f"< 200 ms: {verdict(p99 < 200)}",
            ),
            (
                "longest frame applying events",
                f"{longest:.1f} ms",
                "-",
                "-",
                f"< 100 ms: {verdict(longest < 100)}",
            ),
        ],
    )


if __name__ == "__main__":
    main()
