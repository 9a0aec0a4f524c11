"""Shared fixtures: both anyio backends (trio on a MockClock), and a no-leftover-process check.

The check owns only what this test run started (issue 10, item 5): the run takes a runtime
token of its own, ``test-...``, and puts it in its environment as ``ZIGGIE_RUNTIME``
before any runtime starts. Every runtime token made in this process, or in a coordinator
a test starts as a subprocess, is then of that family (``<run token>.<...>``). A live
``ziggie serve`` beside the test run, or another user's agents, carry tokens of other
families: never counted, never killed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import trio.testing

from actors._watchdog import TOKEN_VAR, in_family, new_token, watchdog_pid

from .loud import LOUD_SKIPS
from .ray_helpers import _helper_subtrees
from .ray_helpers import ray_cluster as ray_cluster

#: This test run's token family; set before anything asks for a runtime token.
_inherited = os.environ.get(TOKEN_VAR)
RUN_TOKEN = f"{_inherited}.test-{new_token()}" if _inherited else f"test-{new_token()}"
os.environ[TOKEN_VAR] = RUN_TOKEN


@pytest.fixture(
    params=[
        pytest.param("trio", id="trio"),
        pytest.param("asyncio", id="asyncio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> object:
    """trio runs on a MockClock that jumps ahead whenever every task is blocked."""
    if request.param == "trio":
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})
    return "asyncio"


@pytest.fixture
def trio_only(anyio_backend: object) -> None:
    """For tests that assert exact virtual time: only trio has a mock clock."""
    if anyio_backend == "asyncio":
        pytest.skip("exact virtual time needs trio's MockClock")


def ours(proc: psutil.Process, family: str | None = None) -> bool:
    """True if *proc* is an agent of this test run (its token is of the run's family)."""
    try:
        env = proc.environ()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return "ZIGGIE_AGENT_ID" in env and in_family(env.get(TOKEN_VAR), family or RUN_TOKEN)


def leftover_processes(before: set[int]) -> list[psutil.Process]:
    """Our descendants not present before, plus any agent of this run's token family.

    The runtime's watchdog is not a leftover: it lives as long as this process, by design.
    """
    me = psutil.Process()
    before = before | {watchdog_pid() or -1}
    helpers = _helper_subtrees()
    found = {p.pid: p for p in me.children(recursive=True) if p.pid not in before | helpers}
    for proc in psutil.process_iter(["pid"]):
        if proc.pid != os.getpid() and proc.pid not in before and ours(proc):
            found[proc.pid] = proc
    alive = []
    for proc in found.values():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE or proc.ppid() == os.getpid():
                alive.append(proc)
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """Every test must leave no process (or zombie child) behind: asserted with psutil."""
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    yield
    left = leftover_processes(before)
    for proc in left:  # clean up so one failure does not cascade into the next test
        try:
            proc.kill()
            proc.wait(5)
        except psutil.Error:
            pass
    assert not left, f"processes left behind: {[_describe(p) for p in left]}"


def _describe(proc: psutil.Process) -> str:
    try:
        return f"{proc.pid} {proc.status()} {' '.join(proc.cmdline())[:120]}"
    except psutil.Error:
        return str(proc.pid)


SEED_DIR = Path(__file__).resolve().parents[2] / "shared" / "seed"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say loudly when the seed-compatibility tests could not run (issue 11), and every
    other loud skip (no browser, no cgroups, no controller)."""
    for reason in LOUD_SKIPS:
        terminalreporter.write_sep("!", f"NOT TESTED: {reason}", red=True, bold=True)
    if not SEED_DIR.is_dir():
        terminalreporter.write_sep(
            "!",
            f"SEED COMPATIBILITY NOT TESTED: {SEED_DIR} is absent (CI=1 makes it a failure)",
            red=True,
            bold=True,
        )
