"""The test session's Ray cluster: one loopback head, started once, swept at the end."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from actors import TOKEN_VAR, new_token
from supervisor.coordinator._ray import family_processes, sweep

from .loud import loud_skip

ROOT = Path(__file__).resolve().parents[1]

#: Pids of helpers that outlive single tests by design: the session's Ray head (its
#: workers start whenever a test places an actor). Their subtrees are not leftovers of a
#: test, but the agents in them are still checked, by token, as every agent is.
SESSION_HELPERS: set[int] = set()


def _helper_subtrees() -> set[int]:
    pids: set[int] = set()
    for pid in SESSION_HELPERS:
        try:
            helper = psutil.Process(pid)
            pids |= {pid, *(p.pid for p in helper.children(recursive=True))}
        except psutil.Error:
            continue
    return pids


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """The address of this session's loopback Ray head; this process is its driver."""
    from supervisor.coordinator._ray import RayEngine, RayUnavailable, import_ray

    try:
        ray = import_ray()
    except RayUnavailable:
        loud_skip("Ray placement (issue 14): ray is not installed here")
    family = f"ray-head-{new_token()}"
    env = {**os.environ, TOKEN_VAR: family}
    helper = subprocess.Popen(
        [sys.executable, "-m", "tests.ray_head", family],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    SESSION_HELPERS.add(helper.pid)
    try:
        assert helper.stdout is not None
        address = helper.stdout.readline().strip()
        assert address, "the Ray head did not start"
        driver = RayEngine(address, token=family)
        driver.connect()
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        assert helper.stdin is not None
        helper.stdin.close()
        helper.stdout.close()
        try:
            helper.wait(60)
        except subprocess.TimeoutExpired:
            helper.kill()
            helper.wait()
        deadline = time.monotonic() + 30
        while family_processes(family) and time.monotonic() < deadline:
            time.sleep(0.2)
        sweep(family)
        SESSION_HELPERS.discard(helper.pid)
