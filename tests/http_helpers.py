"""Helpers for HTTP API tests: a coordinator serving its API on 127.0.0.1, port 0."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from supervisor import Runtime, no_events, open_runtime
from supervisor.coordinator import Coordinator, Settings, open_coordinator

from .helpers import TEST_PROGRAMS
from .queue_helpers import reap_descendants, serve_process


@dataclass
class Api:
    rt: Runtime
    coord: Coordinator
    home: Path
    url: str
    token: str
    client: httpx.AsyncClient  # carries the operator token

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@asynccontextmanager
async def api(home: Path, **settings: Any) -> AsyncIterator[Api]:
    """A coordinator with its REST API, in this test's event loop, and an operator client."""
    async with (
        open_runtime(events=no_events()) as rt,
        open_coordinator(rt, Settings(home=home, http="127.0.0.1:0", **settings)) as coord,
    ):
        assert coord.url is not None
        token = (home / "api-token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=coord.url, headers=headers, timeout=60) as client:
            yield Api(rt, coord, home, coord.url, token, client)


def spec(agent_id: str, home: Path, level: str = "L1", **extra: Any) -> dict[str, Any]:
    """A demo agent that keeps running (until terminated or its iterations run out)."""
    env = {"DEMO_PACE": "0.05", **extra.pop("env", {})}
    return {
        "id": agent_id,
        "level": level,
        "name": agent_id,
        "role": "tester",
        "task": "stay up",
        # What test agents start (the demo agent's DEMO_GRANDCHILD ``sleep``, the escapee
        # scripts): they may execute it, and so may their parents (never wider).
        "context": {"working_directory": str(home), "permissions": {"execute": TEST_PROGRAMS}},
        "max_iterations": extra.pop("max_iterations", 100_000),
        # A child's deadline, unless given, is its parent's remaining time (issue 11).
        **({"timeout_seconds": extra.pop("timeout_seconds", 120)} if level == "L1" else {}),
        "env": env,
        **extra,
    }


@contextmanager
def served(home: Path, *extra: str) -> Iterator[tuple[subprocess.Popen[bytes], str, str]]:
    """``ziggie serve --http 127.0.0.1:0`` as a process; yields (proc, url, token)."""
    with serve_process(home, "--http", "127.0.0.1:0", *extra) as proc:
        deadline = time.monotonic() + 30
        while (info := _http_json(home)) is None or info.get("pid") != proc.pid:
            # Written once the API answers; a killed predecessor's file names another pid.
            assert proc.poll() is None, "coordinator died"
            assert time.monotonic() < deadline, "no http.json"
            time.sleep(0.01)
        url = info["url"]
        yield proc, url, (home / "api-token").read_text().strip()


def _http_json(home: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((home / "http.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data


__all__ = ["Api", "api", "reap_descendants", "served", "spec", "sys"]
