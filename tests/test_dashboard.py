"""The dashboard (issue 13) in a real headless Chromium, against a real coordinator.

The coordinator is ``ziggie serve --http`` (a process), its agents real processes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from .browser import browser_fixture  # noqa: F401  (the `browser` fixture)
from .helpers import marked
from .http_helpers import served, spec

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    with served(tmp_path) as (_proc, url, token):
        yield url, token, tmp_path


def _deploy(url: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(
        f"{url}/v1/agents", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def _page(browser: Any, url: str, token: str | None, **kwargs: Any) -> Any:
    page = browser.new_page(viewport={"width": 1280, "height": 800}, **kwargs)
    page.goto(f"{url}/#token={token}" if token else f"{url}/")
    return page


def _row(page: Any, agent_id: str) -> Any:
    return page.locator(f'li[role=treeitem][data-id="{agent_id}"] > .row')


def _live(ids: list[str]) -> list[int]:
    # This run's agents only: another session's test run may have agents of these ids.
    return [pid for pids in marked(ids).values() for pid in pids]


def test_the_tree_shows_a_live_process_tree_and_its_restarts(
    browser: Any, coordinator: Any
) -> None:
    url, token, home = coordinator
    l3 = spec("scout", home, level="L3")
    l2 = spec("analyst", home, level="L2", env={"DEMO_CHILDREN": json.dumps([l3])})
    flaky = spec("flaky", home, level="L2", restart="transient", env={"DEMO_CRASH_AT": "3"})
    l1 = spec("overwatch", home, env={"DEMO_CHILDREN": json.dumps([l2, flaky])})
    _deploy(url, token, {"agent_spec": l1})
    page = _page(browser, url, token)
    assert "token=" not in page.url  # the fragment is gone from the address bar
    for agent_id, level in (("overwatch", "L1"), ("analyst", "L2"), ("scout", "L3")):
        row = _row(page, agent_id)
        row.locator('.state[data-state="running"]').wait_for(timeout=30_000)
        assert row.locator(".level").inner_text() == level
        assert "pid " in row.locator(".pid").inner_text()
    # Nested as the hierarchy: scout under analyst under overwatch.
    nested = page.locator('li[data-id="overwatch"] li[data-id="analyst"] li[data-id="scout"]')
    assert nested.count() == 1
    # flaky crashes once (exit 3) and is restarted: the gauge moves.
    flaky_row = _row(page, "flaky")
    flaky_row.locator(".gtext", has_text="restarts 1/3").wait_for(timeout=30_000)
    assert flaky_row.locator("meter").get_attribute("value") == "1"
    flaky_row.click()
    page.locator("#d-exits li", has_text="error").wait_for(timeout=10_000)
    assert "exited with code 3" in page.locator("#d-exits").inner_text()
    # Readable without colour: the state is text.
    assert _row(page, "scout").locator(".state").inner_text() == "running"


def test_terminate_from_the_page_stops_the_subtree(browser: Any, coordinator: Any) -> None:
    url, token, home = coordinator
    l3 = spec("leaf", home, level="L3", env={"DEMO_GRANDCHILD": "1"})
    l2 = spec("mid", home, level="L2", env={"DEMO_CHILDREN": json.dumps([l3])})
    _deploy(url, token, {"agent_spec": spec("top", home, env={"DEMO_CHILDREN": json.dumps([l2])})})
    page = _page(browser, url, token)
    _row(page, "leaf").locator('.state[data-state="running"]').wait_for(timeout=30_000)
    deadline = time.monotonic() + 30  # the leaf starts its grandchild after it is up
    while len(_live(["top", "mid", "leaf"])) < 4:  # three agents and the leaf's grandchild
        assert time.monotonic() < deadline
        time.sleep(0.02)
    page.on("dialog", lambda dialog: dialog.accept())  # "terminate top and its 2 descendants?"
    _row(page, "top").click()
    page.locator("#a-terminate").click()
    _row(page, "top").locator('.state[data-state="terminated"]').wait_for(timeout=30_000)
    # The cascade, as it happened: children first.
    page.locator("#cascade-list li").nth(2).wait_for(timeout=10_000)
    order = [li.get_attribute("data-id") for li in page.locator("#cascade-list li").all()]
    assert order == ["leaf", "mid", "top"]
    assert _live(["top", "mid", "leaf"]) == []  # verified empty


def test_deploy_from_the_page_appears_live(browser: Any, coordinator: Any) -> None:
    url, token, home = coordinator
    _deploy(url, token, {"agent_spec": spec("parent", home)})
    page = _page(browser, url, token)
    _row(page, "parent").locator('.state[data-state="running"]').wait_for(timeout=30_000)
    _row(page, "parent").click()
    page.locator("#a-deploy").click()
    form = page.locator("#deploy-form")
    form.locator("input[name=id]").fill("child-1")
    form.locator("input[name=name]").fill("Child")
    form.locator("textarea[name=task]").fill("help the parent")
    form.locator("button[type=submit]").click()
    row = page.locator('li[data-id="parent"] li[data-id="child-1"] > .row')
    row.locator('.state[data-state="running"]').wait_for(timeout=30_000)
    assert row.locator(".level").inner_text() == "L2"
    # A refusal is shown, not swallowed: the id is taken.
    _row(page, "parent").click()
    page.locator("#a-deploy").click()
    form.locator("input[name=id]").fill("child-1")
    form.locator("input[name=name]").fill("Again")
    form.locator("textarea[name=task]").fill("x")
    form.locator("button[type=submit]").click()
    page.locator("#deploy-error", has_text="already exists").wait_for(timeout=10_000)


def test_without_a_token_the_page_asks_and_calls_nothing(browser: Any, coordinator: Any) -> None:
    url, token, home = coordinator
    _deploy(url, token, {"agent_spec": spec("quiet", home)})
    calls: list[tuple[str, str | None]] = []
    page = browser.new_page()
    page.on(
        "request",
        lambda r: (
            calls.append((r.url, r.headers.get("authorization"))) if "/v1/" in r.url else None
        ),
    )
    page.goto(f"{url}/")
    page.locator("#login").wait_for(state="visible")
    page.wait_for_timeout(300)  # give a buggy page time to call the API anyway
    assert calls == []
    page.locator("#token-input").fill("wrong-token-wrong-token")
    page.locator("#login button").click()
    page.locator("#login-error", has_text="refused").wait_for(timeout=10_000)
    page.locator("#token-input").fill(token)
    page.locator("#login button").click()
    _row(page, "quiet").locator('.state[data-state="running"]').wait_for(timeout=30_000)
    assert all(auth is not None and auth.startswith("Bearer ") for _, auth in calls)
    assert all("token" not in u for u, _ in calls)  # never in a URL


def test_keyboard_navigation_and_a_narrow_window(browser: Any, coordinator: Any) -> None:
    url, token, home = coordinator
    l2 = spec("kid", home, level="L2")
    _deploy(url, token, {"agent_spec": spec("root", home, env={"DEMO_CHILDREN": json.dumps([l2])})})
    page = _page(browser, url, token)
    _row(page, "kid").locator('.state[data-state="running"]').wait_for(timeout=30_000)
    _row(page, "root").click()
    page.keyboard.press("ArrowDown")
    assert page.evaluate("document.activeElement.dataset.id") == "kid"
    page.keyboard.press("ArrowLeft")  # to the parent
    assert page.evaluate("document.activeElement.dataset.id") == "root"
    page.keyboard.press("ArrowLeft")  # collapse
    assert page.locator('li[data-id="root"]').get_attribute("aria-expanded") == "false"
    assert not page.locator('li[data-id="kid"]').is_visible()
    page.keyboard.press("ArrowRight")  # expand
    assert page.locator('li[data-id="kid"]').is_visible()
    page.set_viewport_size({"width": 400, "height": 800})
    box = _row(page, "kid").bounding_box()
    assert box is not None
    assert box["x"] + box["width"] <= 400


@pytest.mark.slow
def test_a_thousand_agents_render(browser: Any, coordinator: Any) -> None:
    url, token, home = coordinator
    headers = {"Authorization": f"Bearer {token}"}
    ids: list[str] = []
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        for i in range(10):
            body = {"agent_spec": {**spec(f"a{i}", home), "command": ["sleep", "600"]}}
            assert client.post("/v1/agents", json=body).status_code == 201
            ids.append(f"a{i}")
            for j in range(9):
                s = {**spec(f"a{i}-{j}", home, level="L2"), "command": ["sleep", "600"]}
                r = client.post("/v1/agents", json={"agent_spec": s, "parent_agent": f"a{i}"})
                assert r.status_code == 201, r.text
                ids.append(f"a{i}-{j}")
                for k in range(10):
                    leaf = {**spec(f"a{i}-{j}-{k}", home, level="L3"), "command": ["sleep", "600"]}
                    r = client.post(
                        "/v1/agents", json={"agent_spec": leaf, "parent_agent": f"a{i}-{j}"}
                    )
                    assert r.status_code == 201, r.text
                    ids.append(f"a{i}-{j}-{k}")
    assert len(ids) == 1000
    page = _page(browser, url, token)
    page.locator("li[role=treeitem]").nth(len(ids) - 1).wait_for(state="attached", timeout=60_000)
    assert page.locator("li[role=treeitem]").count() == len(ids)
    rendered = page.evaluate("window.__ziggie.stats.renderedAt")
    print(f"\n{len(ids)} agents rendered {rendered:.0f} ms after navigation")
    assert page.locator('.state[data-state="running"]').count() == len(ids)
    t0 = time.monotonic()
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        for i in range(10):
            assert client.delete(f"/v1/agents/a{i}").status_code == 200
    assert _live(ids) == [], f"left after {time.monotonic() - t0:.1f} s"
    assert all(not psutil.pid_exists(p) for p in _live(ids))


def test_the_detail_pane_shows_the_trace_and_its_link(
    browser: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .otlp_helpers import otlp_receiver

    with otlp_receiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        monkeypatch.setenv("ZIGGIE_TRACE_URL", "https://traces.example/trace/{trace_id}")
        with served(tmp_path) as (_proc, url, token):
            _deploy(url, token, {"agent_spec": spec("traced", tmp_path)})
            status = httpx.get(
                f"{url}/v1/agents/traced", headers={"Authorization": f"Bearer {token}"}
            ).json()
            trace_id = status["agent"]["trace_id"]
            page = _page(browser, url, token)
            _row(page, "traced").click()
            link = page.locator("#d-trace a")
            link.wait_for(timeout=10_000)
            assert link.inner_text() == trace_id
            assert link.get_attribute("href") == f"https://traces.example/trace/{trace_id}"
            assert link.get_attribute("rel") == "noopener noreferrer"
            page.close()
