"""Issue 10, items 4, 5, 7 and issue 9, item 5: touch only what is ours, and say what a
bounded stop left behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from actors import ProcessHandle, process_spec, process_start_time
from actors import _proctree as proctree
from actors._cgroup import AgentCgroup
from actors._procfs import read_stat
from actors._watchdog import TOKEN_VAR
from supervisor import AgentSpec, Shutdown, SyncAgentDeploymentClient, no_events, open_runtime
from supervisor.coordinator import AgentService, Settings, open_coordinator

from .helpers import marked, recording
from .queue_helpers import agent_spec, reap_descendants, serve_process

REPO = Path(__file__).resolve().parent.parent
BEHAVE = str(Path(__file__).parent / "agents" / "behave.py")


def _foreign_env() -> dict[str, str]:
    """The environment of a user's own ``ziggie serve``: not of this test run's family."""
    return {k: v for k, v in os.environ.items() if k != TOKEN_VAR}


def _wait(probe: Any, what: str, timeout: float = 30) -> Any:
    # Waiting on other OS processes with no event source: a poll with a deadline.
    deadline = time.monotonic() + timeout
    while (value := probe()) in (None, False):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return value


def _pid_of(client: SyncAgentDeploymentClient, agent_id: str) -> int | None:
    status = client.check_agent_status(agent_id)
    return status.pid if status.status == "running" else None


def _alive(pid: int, created: float) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# -- item 4 ---------------------------------------------------------------------------


def test_recovery_spares_another_homes_agent_of_the_same_id(tmp_path: Path) -> None:
    """Two homes run ``worker-1``; kill -9 A's coordinator and restart it: A's recovery
    stops only A's processes (its token and id), B's ``worker-1`` lives on."""
    work = tmp_path / "work"
    work.mkdir()
    spec = AgentSpec.model_validate(agent_spec("worker-1", work, restart="permanent"))
    home_a, home_b = tmp_path / "a", tmp_path / "b"
    with serve_process(home_b), SyncAgentDeploymentClient(home_b / "agent-queue") as b:
        assert b.deploy_agent(spec).status == "deployed"
        b_pid = _wait(lambda: _pid_of(b, "worker-1"), "B's worker-1")
        b_created = psutil.Process(b_pid).create_time()
        with serve_process(home_a) as first:
            with SyncAgentDeploymentClient(home_a / "agent-queue") as a:
                assert a.deploy_agent(spec).status == "deployed"
                a_pid = _wait(lambda: _pid_of(a, "worker-1"), "A's worker-1")
            descendants = psutil.Process(first.pid).children(recursive=True)
            first.send_signal(signal.SIGKILL)
            first.wait()
            reap_descendants(descendants)  # A's watchdog took A's agent down
            _wait(lambda: not psutil.pid_exists(a_pid), "A's worker-1 to die")
        with serve_process(home_a), SyncAgentDeploymentClient(home_a / "agent-queue") as a:
            _wait(lambda: _pid_of(a, "worker-1"), "A's worker-1 restarted by recovery")
            assert _alive(b_pid, b_created)
            assert b.check_agent_status("worker-1").pid == b_pid
            a.terminate_agent("worker-1")
        events = [json.loads(x) for x in (home_a / "events.jsonl").read_text().splitlines()]
        recovered = [e for e in events if e["event"] == "agent_recovered"]
        assert [e["agent_id"] for e in recovered] == ["worker-1"]
        assert b_pid not in recovered[0]["stopped_pids"]
        assert _alive(b_pid, b_created)
        b.terminate_agent("worker-1")


# -- item 5 ---------------------------------------------------------------------------

_INNER_TESTS = """
import sys

import pytest

from actors import process_spec
from supervisor import open_runtime

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "trio"


async def test_runs_an_agent_of_the_same_id():
    async with open_runtime() as rt:
        argv = [sys.executable, "-c", "import time; time.sleep(60)"]
        await rt.start_child(process_spec("worker-1", argv))
        await rt.terminate("worker-1")


def test_does_nothing():
    pass
"""


def test_the_test_suite_leaves_a_live_serve_alone(tmp_path: Path) -> None:
    """A test run beside a user's live ``ziggie serve`` (another token family) checks and
    cleans only its own processes: the serve's agent, same id as the run's, survives."""
    work = tmp_path / "work"
    work.mkdir()
    home = tmp_path / "home"
    inner = tmp_path / "test_inner.py"
    inner.write_text(textwrap.dedent(_INNER_TESTS))
    with (
        serve_process(home, env=_foreign_env()),
        SyncAgentDeploymentClient(home / "agent-queue") as client,
    ):
        spec = AgentSpec.model_validate(agent_spec("worker-1", work))
        assert client.deploy_agent(spec).status == "deployed"
        pid = _wait(lambda: _pid_of(client, "worker-1"), "the user's agent")
        created = psutil.Process(pid).create_time()
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "tests.conftest",
                "-p",
                "no:cacheprovider",
                "--rootdir",
                str(REPO),
                "-c",
                str(REPO / "pyproject.toml"),
                str(inner),
            ],
            cwd=REPO,
            env=_foreign_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert "2 passed" in run.stdout
        assert _alive(pid, created)
        assert client.check_agent_status("worker-1").pid == pid
        client.terminate_agent("worker-1")


# -- item 7 ---------------------------------------------------------------------------

_SPAWN_ONLY = """
import ctypes, sys, anyio
from actors import is_subreaper, process_spec
from supervisor import no_events, open_runtime

async def main():
    async with open_runtime(events=no_events()) as rt:
        await rt.start_child(process_spec("p", [sys.executable, "-c", "pass"]))
        libc = ctypes.CDLL(None, use_errno=True)
        flag = ctypes.c_int(-1)
        assert libc.prctl(37, ctypes.byref(flag), 0, 0, 0) == 0  # PR_GET_CHILD_SUBREAPER
        print(flag.value, is_subreaper())

anyio.run(main, backend="trio")
"""


def test_spawning_does_not_make_the_host_a_subreaper() -> None:
    run = subprocess.run(
        [sys.executable, "-c", _SPAWN_ONLY], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["0", "False"]


def _escapee(agent_id: str, leader: int) -> psutil.Process | None:
    for pid in marked([agent_id]).get(agent_id, []):
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            if pid != leader and proc.ppid() != leader:
                return proc
    return None


@pytest.mark.parametrize("subreaper", ["true", "false"])
def test_serve_is_the_subreaper_by_choice(tmp_path: Path, subreaper: str) -> None:
    """``serve`` is the subreaper by default (an escapee re-parents to it); with
    ``subreaper=false`` it is not, and terminate still finds and stops the escapee."""
    work = tmp_path / "work"
    work.mkdir()
    home = tmp_path / "home"
    env = {**os.environ, "ZIGGIE_SUBREAPER": subreaper}
    command = ["sh", "-c", "(sleep 60 &); exec sleep 60"]
    with (
        serve_process(home, env=env) as serve,
        SyncAgentDeploymentClient(home / "agent-queue") as client,
    ):
        ctx = {"working_directory": str(work), "permissions": {"execute": ["sleep"]}}
        spec = AgentSpec.model_validate(agent_spec("esc", work, command=command, context=ctx))
        assert client.deploy_agent(spec).status == "deployed"
        leader = _wait(lambda: _pid_of(client, "esc"), "the agent")
        escapee = _wait(lambda: _escapee("esc", leader), "the escapee")
        if subreaper == "true":
            assert escapee.ppid() == serve.pid
        else:
            assert escapee.ppid() != serve.pid
        assert client.terminate_agent("esc").status == "terminated"
        assert not marked(["esc"])


def test_reaping_never_touches_a_pid_it_did_not_see_start() -> None:
    """A host's own child whose pid an agent's process once had keeps its exit status."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
    st = read_stat(proc.pid)
    assert st is not None
    assert st.zombie
    proctree.seen_starts[proc.pid] = st.start + 1  # the pid, as an agent's process had it once
    try:
        proctree.reap_orphans()
        after = read_stat(proc.pid)
        assert after is not None
        assert after.zombie
    finally:
        proctree.seen_starts.pop(proc.pid, None)
        assert proc.wait() == 0


# -- issue 9, item 5 --------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_a_stop_that_cannot_kill_gives_up_and_says_what_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shielded stop loop is bounded: a process SIGKILL cannot end (faked here: as one
    in uninterruptible sleep, which cannot be made on purpose) is reported, not awaited."""
    real_signal = proctree.ProcessTree._signal_each
    real_killpg = os.killpg

    def no_kill(self: proctree.ProcessTree, pids: Any, sig: signal.Signals, *held: Any) -> None:
        # The one fake: the OS boundary drops SIGKILL, as for a process in D state.
        if sig is not signal.SIGKILL:
            real_signal(self, pids, sig, *held)

    def no_killpg(pgid: int, sig: int) -> None:
        if sig != signal.SIGKILL:
            real_killpg(pgid, sig)

    monkeypatch.setattr(proctree.ProcessTree, "_signal_each", no_kill)
    monkeypatch.setattr(proctree.os, "killpg", no_killpg)
    monkeypatch.setattr(AgentCgroup, "kill", lambda self: None)  # cgroup.kill, dropped too
    monkeypatch.setattr(proctree, "KILL_WAIT", 0.05)
    ready = tmp_path / "ready"
    spec = process_spec(
        "stubborn", [sys.executable, BEHAVE, "ignore_term", str(ready)], shutdown=Shutdown(0.1)
    )
    with recording() as (events, seen):
        async with open_runtime(events=events) as rt:
            handle: ProcessHandle = await rt.start_child(spec)
            with anyio.fail_after(20):
                while not ready.exists():
                    await anyio.sleep(0.01)
            with anyio.fail_after(10):
                await rt.terminate("stubborn")
            gave_up = [f for n, f in seen if n == "stop_gave_up"]
            assert [f["left"] for f in gave_up] == [[handle.pid]]
            assert handle.last_stop is not None
            assert handle.last_stop.left == [handle.pid]
            os.kill(handle.pid, signal.SIGKILL)  # the test's own cleanup, for real
            handle.tree.popen.wait()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_a_stray_sweep_that_cannot_kill_gives_up_and_says_what_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recovery's stray sweep is bounded too: a stray of this home that SIGKILL cannot end
    (the same fake: dropped at the OS boundary) is named in a ``strays_left`` event."""
    home, work, ready = tmp_path / "home", tmp_path / "work", tmp_path / "ready"
    work.mkdir()
    # A predecessor that crashed: its journal believes "stuck" alive, and it is.
    async with open_runtime(events=no_events()) as rt:
        predecessor = AgentService(rt, Settings(home=home))
        spec = AgentSpec.model_validate(agent_spec("stuck", work))
        predecessor.journal.add_agent(
            "stuck",
            spec.model_dump_json(),
            parent_id=None,
            level="L1",
            request_id=None,
            restart="temporary",
        )
        env = {**os.environ, "ZIGGIE_AGENT_ID": "stuck", TOKEN_VAR: predecessor.token}
        proc = subprocess.Popen(
            [sys.executable, BEHAVE, "ignore_term", str(ready)], env=env, start_new_session=True
        )
        _wait(ready.exists, "the stray to be ready")
        predecessor.journal.update_agent(
            "stuck", state="running", pid=proc.pid, pid_start=process_start_time(proc.pid)
        )
        predecessor.close()  # no clean stop recorded: a crash

    real_kill = os.kill

    def no_kill(pid: int, sig: int) -> None:
        if not (pid == proc.pid and sig == signal.SIGKILL):
            real_kill(pid, sig)

    monkeypatch.setattr(os, "kill", no_kill)
    monkeypatch.setattr(proctree, "KILL_WAIT", 0.05)
    try:
        with recording() as (events, seen):
            async with open_runtime(events=events) as rt:
                with anyio.fail_after(20):
                    async with open_coordinator(rt, Settings(home=home, recovery_grace=0.1)):
                        pass
        left = [f for n, f in seen if n == "strays_left"]
        assert [f["pids"] for f in left] == [[proc.pid]]
        recovered = [f for n, f in seen if n == "agent_recovered"]
        assert recovered[0]["stopped_pids"] == [proc.pid]
    finally:
        monkeypatch.undo()
        os.kill(proc.pid, signal.SIGKILL)  # the test's own cleanup, for real
        proc.wait()
