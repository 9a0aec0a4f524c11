"""Screenshots of the dashboard for the README: ``python -m docs.screenshots``.

A real coordinator, a real L1 -> L2 -> L3 tree of demo agents (one crashes once and is
restarted), headless Chromium; then a terminate shows a cascade.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import httpx

from bench.http import ziggie_server
from tests.browser import CHROMIUM, FLAGS

OUT = Path(__file__).parent


def spec(agent_id: str, home: str, level: str, **env: str) -> dict[str, object]:
    return {
        "id": agent_id,
        "level": level,
        "name": agent_id.replace("-", " ").title(),
        "role": "demo",
        "task": f"{agent_id}: keep watch",
        "context": {"working_directory": home, "permissions": {"execute": ["sleep"]}},
        "max_iterations": 100000,
        "timeout_seconds": {"L1": 900, "L2": 800, "L3": 700}[level],
        "restart": "transient",
        "env": {"DEMO_PACE": "0.2", **env},
    }


def main() -> None:
    assert CHROMIUM, "needs chromium-headless-shell"
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, ziggie_server(Path(tmp)) as (url, token):
        scouts = [spec(f"scout-{c}", tmp, "L3", DEMO_GRANDCHILD="1") for c in "ab"]
        analysts = [
            spec("analyst-a", tmp, "L2", DEMO_CHILDREN=json.dumps(scouts[:1])),
            spec("analyst-b", tmp, "L2", DEMO_CHILDREN=json.dumps(scouts[1:]), DEMO_CRASH_AT="4"),
        ]
        root = spec("overwatch", tmp, "L1", DEMO_CHILDREN=json.dumps(analysts))
        headers = {"Authorization": f"Bearer {token}"}
        httpx.post(f"{url}/v1/agents", json={"agent_spec": root}, headers=headers, timeout=60)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{url}/#token={token}")
            page.locator('li[data-id="scout-b"] .state[data-state="running"]').wait_for()
            page.locator('li[data-id="analyst-b"] .gtext', has_text="restarts 1/3").wait_for()
            time.sleep(2.5)  # a usage sample arrives
            page.locator('li[data-id="analyst-b"] > .row').click()
            page.locator("#d-log").wait_for()
            time.sleep(0.5)
            page.screenshot(path=str(OUT / "dashboard.png"))
            page.on("dialog", lambda d: d.accept())
            page.locator('li[data-id="overwatch"] > .row').click()
            page.locator("#a-terminate").click()
            page.locator("#cascade-list li").nth(4).wait_for()
            time.sleep(0.3)
            page.screenshot(path=str(OUT / "dashboard-cascade.png"), full_page=True)
            page.set_viewport_size({"width": 420, "height": 800})
            page.screenshot(path=str(OUT / "dashboard-narrow.png"))
            browser.close()


if __name__ == "__main__":
    main()
