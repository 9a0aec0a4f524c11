"""Process agents with real processes: the no-orphan guarantee, exits, restarts, logs."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import psutil
import pytest

from actors import ProcessHandle, has_marker, process_spec, token
from supervisor import (
    ChildState,
    Outcome,
    Restart,
    Shutdown,
    StartError,
    open_runtime,
)

from .helpers import real_clock_backend as anyio_backend  # noqa: F401
from .helpers import recording
from .waiting import event_waits, until_files, until_files_sync, until_gone_sync

pytestmark = pytest.mark.anyio
BEHAVE = str(Path(__file__).parent / "agents" / "behave.py")


async def _wait_file(path: Path, timeout: float = 20) -> list[int]:
    await until_files([path.parent], path.exists, timeout)
    return [int(x) for x in path.read_text().split()]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _marked(agent_id: str) -> list[int]:
    # This runtime's token only: another test run on the host may use the same ids
    # (issue 10, item 5).
    return [p.pid for p in psutil.process_iter() if has_marker(p.pid, agent_id, token())]


def _zombie_children() -> list[int]:
    return [p.pid for p in psutil.Process().children() if p.status() == psutil.STATUS_ZOMBIE]


@pytest.mark.parametrize(
    "mode", ["child_ignores_term", "setsid_grandchild", "double_fork", "ignore_term"]
)
async def test_stop_leaves_no_process_and_no_zombie(mode: str, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    spec = process_spec(
        f"agent-{mode}",
        [sys.executable, BEHAVE, mode, str(ready)],
        shutdown=Shutdown(0.3),
        restart=Restart.TEMPORARY,
    )
    with recording() as (events, seen):
        async with open_runtime(events=events) as rt:
            handle = await rt.start_child(spec)
            assert isinstance(handle, ProcessHandle)
            pids = await _wait_file(ready)
            assert all(_alive(pid) for pid in pids)
            assert set(pids) <= set(_marked(spec.id))
            await rt.terminate(spec.id)
            # terminate returns only once the tree is verified empty
            assert [pid for pid in pids if _alive(pid)] == []
            assert _marked(spec.id) == []
            assert _zombie_children() == []
    killed = [f for n, f in seen if n == "killed"]
    if mode in ("child_ignores_term", "ignore_term"):
        assert len(killed) == 1
        expected = pids[1:] if mode == "child_ignores_term" else pids
        assert set(expected) <= set(killed[0]["pids"])
    else:
        assert killed == []  # everything honoured SIGTERM
    stopped = next(f for n, f in seen if n == "process_stopped")
    assert stopped["pid"] == pids[0]


@pytest.mark.parametrize(("code", "outcome"), [(0, Outcome.NORMAL), (7, Outcome.ERROR)])
async def test_exit_code_decides_normal_or_abnormal(
    code: int, outcome: Outcome, tmp_path: Path
) -> None:
    spec = process_spec(
        "exiter",
        [sys.executable, BEHAVE, f"exit{code}", str(tmp_path / "r")],
        restart=Restart.TRANSIENT,
    )
    with recording() as (events, seen):
        async with open_runtime(events=events) as rt:
            with event_waits(rt) as waits:
                await rt.start_child(spec)
                # The event of its first exit (a transient one exiting 7 is restarted).
                ended = await waits.event("exited", "exiter")
            assert ended["outcome"] == outcome
            if code:
                assert ended["reason"] == f"ProcessExit: exited with code {code}"
    exits = [f for n, f in seen if n == "process_exited"]
    assert exits[0]["exit_code"] == code
    assert exits[0]["signal"] is None


async def test_crashing_process_is_restarted_with_its_policy(tmp_path: Path) -> None:
    spec = process_spec(
        "crashy",
        [sys.executable, BEHAVE, "exit3", str(tmp_path / "r")],
        restart=Restart.PERMANENT,
    )
    from supervisor import RestartIntensityExceeded

    with pytest.raises(RestartIntensityExceeded):
        async with open_runtime(children=[spec], max_restarts=2, max_seconds=60) as rt:
            await anyio.sleep_forever()
    assert rt.ids() == []


async def test_killed_by_signal_is_abnormal(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    spec = process_spec(
        "victim", [sys.executable, BEHAVE, "plain", str(ready)], restart=Restart.TRANSIENT
    )
    async with open_runtime() as rt:
        handle = await rt.start_child(spec)
        await _wait_file(ready)
        with event_waits(rt) as waits:
            os.kill(handle.pid, signal.SIGKILL)
            await waits.until(
                lambda: sum(n == "started" for n, _ in waits.seen) >= 1  # its next incarnation
            )
        assert rt.info("victim").reason == "ProcessExit: killed by signal 9"
        assert rt.whereis("victim").pid != handle.pid


async def test_timeout_stops_the_tree_and_says_so(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    with recording() as (events, seen):
        async with open_runtime(events=events, max_restarts=0) as rt:
            await rt.start_child(
                process_spec(
                    "slow2",
                    [sys.executable, BEHAVE, "setsid_grandchild", str(ready)],
                    timeout=1.0,
                    restart=Restart.TEMPORARY,
                )
            )
            pids = await _wait_file(ready)
            with anyio.fail_after(20):
                while "slow2" in rt:
                    await anyio.sleep(0.02)
            assert [pid for pid in pids if _alive(pid)] == []
    assert [f["outcome"] for n, f in seen if n == "timed_out"] == ["timeout"]


async def test_output_reaches_the_log_file_even_on_terminate(tmp_path: Path) -> None:
    log = tmp_path / "agent.log"
    script = tmp_path / "chatty.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, time
            for i in range(1000):
                sys.stdout.write(f"line {i}\\n")
            sys.stdout.flush()
            open(sys.argv[1], "w").close()
            time.sleep(3600)
            """
        )
    )
    ready = tmp_path / "ready"
    spec = process_spec(
        "chatty",
        [sys.executable, str(script), str(ready)],
        log_path=log,
        restart=Restart.TEMPORARY,
    )
    async with open_runtime() as rt:
        await rt.start_child(spec)
        await _wait_file(ready)
        await rt.terminate("chatty")
    lines = log.read_text().splitlines()
    assert lines[0] == "line 0"
    assert lines[-1] == "line 999"
    assert len(lines) == 1000
    assert (log.stat().st_mode & 0o777) == 0o600


async def test_log_is_size_capped_with_rotation(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    script = tmp_path / "big.py"
    script.write_text("import sys\nsys.stdout.write('x' * 25000)\n")
    spec = process_spec(
        "big",
        [sys.executable, str(script)],
        log_path=log,
        log_max_bytes=10000,
        restart=Restart.TEMPORARY,
    )
    async with open_runtime() as rt:
        await rt.start_child(spec)
        with anyio.fail_after(20):
            while "big" in rt:
                await anyio.sleep(0.01)
    sizes = sorted(p.stat().st_size for p in tmp_path.glob("big.log*"))
    assert sizes == [5000, 10000, 10000]
    assert {p.name for p in tmp_path.glob("big.log*")} == {"big.log", "big.log.1", "big.log.2"}


async def test_missing_program_is_a_clear_start_error(tmp_path: Path) -> None:
    async with open_runtime() as rt:
        with pytest.raises(StartError, match="cannot start '/nonexistent/agent'"):
            await rt.start_child(process_spec("ghost", ["/nonexistent/agent"]))
        assert "ghost" not in rt


async def test_status_reports_pid_and_tree_usage(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    spec = process_spec("busy", [sys.executable, BEHAVE, "setsid_grandchild", str(ready)])
    async with open_runtime() as rt:
        handle: ProcessHandle = await rt.start_child(spec)
        await _wait_file(ready)
        usage = handle.usage()
        assert usage["processes"] == 2
        assert usage["rss_bytes"] > 1_000_000
        assert rt.info("busy").state is ChildState.RUNNING
        await rt.terminate("busy")


def test_sigkilled_runtime_takes_its_agents_and_their_escapees_with_it(
    tmp_path: Path,
) -> None:
    ready = tmp_path / "ready"
    program = textwrap.dedent(
        f"""
        import sys, trio
        from pathlib import Path
        from actors import process_spec
        from supervisor import no_events, open_runtime

        async def main():
            async with open_runtime(events=no_events()) as rt:
                for i in range(3):
                    mode = ("plain", "setsid_grandchild", "double_fork")[i]
                    argv = [sys.executable, {BEHAVE!r}, mode, {str(ready)!r} + str(i)]
                    log = Path({str(ready)!r} + str(i) + ".log")  # not our stdout: "up" only
                    await rt.start_child(process_spec(f"orphan-{{i}}", argv, log_path=log))
                print("up", flush=True)
                await trio.sleep_forever()
        trio.run(main)
        """
    )
    runtime = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE)
    try:
        assert runtime.stdout is not None
        assert runtime.stdout.readline().strip() == b"up"
        agents = []
        for i in range(3):
            path = Path(f"{ready}{i}")
            until_files_sync([path.parent], path.exists, 20, str(path))
            agents += [int(x) for x in path.read_text().split()]
        assert all(_alive(pid) for pid in agents)
        everything = {p.pid for p in psutil.Process(runtime.pid).children(recursive=True)}
        runtime.kill()
        runtime.wait()
        until_gone_sync(agents, 10, "agents outliving their SIGKILLed runtime")
        until_gone_sync(list(everything), 10, "the runtime's watchdog to finish its sweep")
        # pytest may itself be a subreaper (earlier tests made it one): reap what re-parented.
        for proc in psutil.Process().children():
            if proc.status() == psutil.STATUS_ZOMBIE:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(proc.pid, 0)
    finally:
        runtime.kill()
        runtime.wait()
        if runtime.stdout is not None:
            runtime.stdout.close()
