"""Shared fixtures: both anyio backends (trio on a MockClock), and a no-leftover-process check."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import trio.testing

from actors._watchdog import watchdog_pid


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


#: Every process this session starts inherits this marker, so the leftover check acts only
#: on our own agents: sessions of other engineers share the machine, and without it this
#: fixture killed their agents (seen while working on issue 11). Own what you touch.
SESSION = f"{os.getpid()}-{uuid.uuid4().hex}"
os.environ["ZIGGIE_TEST_SESSION"] = SESSION


def _marked(proc: psutil.Process) -> bool:
    try:
        env = proc.environ()
        return "ZIGGIE_AGENT_ID" in env and env.get("ZIGGIE_TEST_SESSION") == SESSION
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def leftover_processes(before: set[int]) -> list[psutil.Process]:
    """Our descendants not present before, plus any process carrying an agent marker.

    The runtime's watchdog is not a leftover: it lives as long as this process, by design.
    """
    me = psutil.Process()
    before = before | {watchdog_pid() or -1}
    found = {p.pid: p for p in me.children(recursive=True) if p.pid not in before}
    for proc in psutil.process_iter(["pid"]):
        if proc.pid != os.getpid() and proc.pid not in before and _marked(proc):
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
    """Say loudly when the seed-compatibility tests could not run (issue 11)."""
    if not SEED_DIR.is_dir():
        terminalreporter.write_sep(
            "!",
            f"SEED COMPATIBILITY NOT TESTED: {SEED_DIR} is absent (CI=1 makes it a failure)",
            red=True,
            bold=True,
        )
