"""cgroup v2 per agent (issue 15): one write stops a whole tree; limits or a clear refusal.

These use real cgroups where the machine allows (as root here) and skip, loudly, where
not; the fallback (process groups + /proc sweep) is forced in a subprocess by
``ZIGGIE_CGROUPS=off`` and must keep its promise too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import pytest

from actors import ProcessHandle, cgroup_controllers, process_spec, spawn_mechanism, token
from actors._cgroup import AgentCgroup, cgroup2_mount, runtime_cgroups
from actors._exec import CGEXEC, exec_shim
from supervisor import Shutdown, StartError, no_events, open_runtime
from supervisor.coordinator import OPERATOR, Settings, open_coordinator
from supervisor.protocol import AgentSpec

from .helpers import build_cgexec
from .helpers import real_clock_backend as anyio_backend  # noqa: F401
from .loud import loud_skip
from .queue_helpers import agent_spec, coordinator

BEHAVE = str(Path(__file__).parent / "agents" / "behave.py")
ROOT = Path(__file__).resolve().parent.parent


def _need_cgroups() -> None:
    if runtime_cgroups(token()) is None:
        message = "no usable cgroup v2 hierarchy here: the cgroup tests did not run"
        loud_skip(message)


def _need_controller(name: str, test: str) -> None:
    controllers = cgroup_controllers()
    if controllers is None or name not in controllers:
        loud_skip(f"the {name} controller is not enabled here: the {test} test did not run")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def _ready(path: Path) -> list[int]:
    with anyio.fail_after(20):
        # Another process writes it: no event to await. Whole lines only (`echo > f`
        # creates the file before it writes).
        while not path.exists() or not path.read_text().endswith("\n"):
            await anyio.sleep(0.01)
    return [int(x) for x in path.read_text().split()]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["setsid_grandchild", "double_fork"])
async def test_one_stop_ends_the_agent_and_its_escapees(tmp_path: Path, mode: str) -> None:
    _need_cgroups()
    ready = tmp_path / "ready"
    spec = process_spec(
        "escaper", [sys.executable, BEHAVE, mode, str(ready)], shutdown=Shutdown(0.2)
    )
    async with open_runtime(events=no_events()) as rt:
        handle: ProcessHandle = await rt.start_child(spec)
        cgroup = handle.tree.cgroup
        assert cgroup is not None
        pids = await _ready(ready)
        assert len(pids) == 2
        assert set(pids) <= cgroup.pids()  # the escapee left the group, not the cgroup
        await rt.terminate("escaper")
        assert handle.last_stop is not None
        assert handle.last_stop.left == []
        assert not any(_alive(p) for p in pids)
        assert not cgroup.path.exists()  # emptied and removed


@pytest.mark.anyio
async def test_usage_comes_from_the_cgroup(tmp_path: Path) -> None:
    _need_cgroups()
    ready = tmp_path / "ready"
    spec = process_spec("user", [sys.executable, BEHAVE, "setsid_grandchild", str(ready)])
    async with open_runtime(events=no_events()) as rt:
        handle: ProcessHandle = await rt.start_child(spec)
        await _ready(ready)
        usage = handle.usage()
        assert usage["processes"] == 2
        assert usage["rss_bytes"] > 0
        assert usage["cpu_seconds"] >= 0


FALLBACK = textwrap.dedent(
    """
    import json, os, sys, anyio
    from actors import process_spec, stop_mechanism
    from supervisor import Shutdown, StartError, no_events, open_runtime

    async def main():
        ready = sys.argv[2]
        spec = process_spec("f", [sys.executable, sys.argv[1], "setsid_grandchild", ready],
                            shutdown=Shutdown(0.2))
        async with open_runtime(events=no_events()) as rt:
            handle = await rt.start_child(spec)
            while not os.path.exists(ready):
                await anyio.sleep(0.01)
            pids = [int(x) for x in open(ready).read().split()]
            await rt.terminate("f")
            print(json.dumps({"mechanism": stop_mechanism(), "pids": pids,
                              "cgroup": handle.tree.cgroup is not None,
                              "left": handle.last_stop.left}))

    anyio.run(main)
    """
)


def test_the_fallback_keeps_the_promise_when_forced(tmp_path: Path) -> None:
    env = {**os.environ, "ZIGGIE_CGROUPS": "off", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", FALLBACK, BEHAVE, str(tmp_path / "ready")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["mechanism"] == "process groups + /proc sweep"
    assert result["cgroup"] is False
    assert result["left"] == []
    assert not any(_alive(p) for p in result["pids"])


RUNTIME = textwrap.dedent(
    """
    import json, os, sys, anyio
    from actors import process_spec

    from supervisor import no_events, open_runtime

    async def main():
        ready = sys.argv[2]
        async with open_runtime(events=no_events()) as rt:
            h = await rt.start_child(process_spec("d", [sys.executable, sys.argv[1],
                                                        "double_fork", ready]))
            while not os.path.exists(ready):
                await anyio.sleep(0.01)
            print(json.dumps({"cgroup": str(h.tree.cgroup.path)}), flush=True)
            await anyio.sleep_forever()

    anyio.run(main)
    """
)


def test_a_killed_runtime_takes_its_cgroups_with_it(tmp_path: Path) -> None:
    _need_cgroups()
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNTIME, BEHAVE, str(ready)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    while not line.startswith("{"):  # the agent shares this stdout: skip its lines
        line = proc.stdout.readline()
    cgroup = Path(json.loads(line)["cgroup"])
    pids = [int(x) for x in ready.read_text().split()]
    assert all(_alive(p) for p in pids)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    deadline = time.monotonic() + 20  # the watchdog acts on EOF; nothing to await here
    while any(_alive(p) for p in pids) or cgroup.exists():
        assert time.monotonic() < deadline, "the runtime's cgroup outlived it"
        time.sleep(0.02)


@pytest.mark.anyio
async def test_limits_are_written_or_refused_never_ignored(tmp_path: Path) -> None:
    controllers = cgroup_controllers()
    data = agent_spec("limited", tmp_path, limits={"memory": "64M", "pids": 32})
    async with coordinator(tmp_path / "home") as (_rt, coord):
        from supervisor.protocol import DeploymentRequest

        request = DeploymentRequest(
            parent_agent="Ziggie", action="deploy_agent", agent_spec=AgentSpec.model_validate(data)
        )
        answer = (await coord.service.handle(request, OPERATOR)).response
        assert answer is not None
        if controllers is not None and {"memory", "pids"} <= controllers:
            assert answer.status == "deployed"
            handle = coord.service.rt.whereis("limited")
            assert (handle.tree.cgroup.path / "memory.max").read_text().strip() == str(64 << 20)
        else:
            assert answer.status == "failed"
            assert answer.code == "refused"
            assert "controller" in (answer.error or "")
            assert "limits." in (answer.error or "")


BOMB = textwrap.dedent(
    """
    import os, sys, time
    made = 0
    for _ in range(64):  # bounded: at most 64 forks, each child only sleeps
        try:
            if os.fork() == 0:
                time.sleep(30)
                os._exit(0)
            made += 1
        except OSError:
            break
    print(made, flush=True)
    time.sleep(30)
    """
)


@pytest.mark.anyio
async def test_a_fork_bomb_is_contained_by_pids_max(tmp_path: Path) -> None:
    _need_controller("pids", "fork-bomb")
    log = tmp_path / "bomb.log"
    spec = process_spec(
        "bomb", [sys.executable, "-c", BOMB], log_path=log, limits={"pids": "16"}, shutdown=0
    )
    async with open_runtime(events=no_events()) as rt:
        handle: ProcessHandle = await rt.start_child(spec)
        with anyio.fail_after(30):
            while not log.exists() or not log.read_text().strip():
                await anyio.sleep(0.01)
        assert int(log.read_text().split()[0]) < 16  # it hit the limit, not the loop's end
        assert handle.usage()["processes"] <= 16
        await rt.terminate("bomb")
        assert handle.last_stop is not None
        assert handle.last_stop.left == []


HOG = textwrap.dedent(
    """
    import time
    hog = []
    for _ in range(256):  # bounded: at most 256 MiB, far past the 32 MiB limit
        hog.append(bytearray(1 << 20))
    time.sleep(30)
    """
)


@pytest.mark.anyio
async def test_an_agent_over_memory_max_exits_with_reason_oom(tmp_path: Path) -> None:
    _need_controller("memory", "OOM")
    if len(Path("/proc/swaps").read_text().splitlines()) > 1:  # it would swap, not die
        loud_skip("swap is on here: memory.max alone does not OOM-kill; the test did not run")
    from .helpers import recording

    spec = process_spec(
        "hog", [sys.executable, "-c", HOG], limits={"memory": str(32 << 20)}, restart="temporary"
    )
    with recording() as (events, seen):
        async with open_runtime(events=events) as rt:
            await rt.start_child(spec)
            with anyio.fail_after(30):
                while "hog" in rt:  # a temporary child is gone once it has exited
                    await anyio.sleep(0.01)
    exited = [f for n, f in seen if n == "process_exited"]
    assert exited[0]["reason"] == "oom"
    reasons = [f["reason"] for n, f in seen if n == "exited"]
    assert reasons[0].startswith("ProcessExit: oom: killed by the OOM killer")


@pytest.mark.anyio
async def test_an_oom_kill_is_told_from_any_other_sigkill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wiring where the memory controller is off (as here): the one fake is the OOM
    killer's count in ``memory.events``; the SIGKILL and the exit are real."""
    _need_cgroups()
    from .helpers import recording

    with recording() as (events, seen):
        async with open_runtime(events=events) as rt:
            plain: ProcessHandle = await rt.start_child(
                process_spec("plain", ["sleep", "60"], restart="temporary")
            )
            os.kill(plain.pid, signal.SIGKILL)
            with anyio.fail_after(10):
                while "plain" in rt:
                    await anyio.sleep(0.01)
            monkeypatch.setattr(AgentCgroup, "oom_killed", lambda self: True)
            hog: ProcessHandle = await rt.start_child(
                process_spec("hog", ["sleep", "60"], restart="temporary")
            )
            os.kill(hog.pid, signal.SIGKILL)
            with anyio.fail_after(10):
                while "hog" in rt:
                    await anyio.sleep(0.01)
    exited = {f["agent_id"]: f for n, f in seen if n == "process_exited"}
    assert "reason" not in exited["plain"]
    assert exited["hog"]["reason"] == "oom"
    reasons = {f["agent_id"]: f["reason"] for n, f in seen if n == "exited"}
    assert reasons["plain"] == "ProcessExit: killed by signal 9"
    assert reasons["hog"].startswith("ProcessExit: oom: killed by the OOM killer")


@pytest.mark.anyio
async def test_status_and_coordinator_ready_say_how_agents_are_stopped(tmp_path: Path) -> None:
    from supervisor.protocol import DeploymentRequest

    from .helpers import recording

    with recording() as (events, seen):
        async with (
            open_runtime(events=events) as rt,
            open_coordinator(rt, Settings(home=tmp_path / "home")) as coord,
        ):
            ready = [f for n, f in seen if n == "coordinator_ready"]
            spec = AgentSpec.model_validate(agent_spec("told", tmp_path))
            request = DeploymentRequest(
                parent_agent="Ziggie", action="deploy_agent", agent_spec=spec
            )
            await coord.service.handle(request, OPERATOR)
            status = coord.service.agent_detail("told")
            assert status is not None
            if runtime_cgroups(token()) is not None:
                assert ready[0]["stops"].startswith("cgroup2 ")
                assert status["stops"].startswith("cgroup2 ")
            else:
                assert ready[0]["stops"] == "process groups + /proc sweep"
                assert status["stops"] == "process group + sweep"
            assert ready[0]["spawns"] == spawn_mechanism()


# -- the exec shim: the agent joins its cgroup before it runs ------------------------------


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def _cgroup_of(pid: int) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return line[3:]
    raise AssertionError(f"{pid} is in no cgroup v2")


@pytest.mark.anyio
@pytest.mark.parametrize("shim", ["ziggie-cgexec", "sh"])
async def test_the_agent_runs_in_its_cgroup_as_itself(
    tmp_path: Path, shim: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Either shim: the leader is the program itself (argv[0] as given, found on PATH),
    already in its cgroup, and so is what it forks; missing programs are refused."""
    _need_cgroups()
    if shim == "ziggie-cgexec" and exec_shim() is None:
        loud_skip(f"{CGEXEC} was not built (no C compiler?): the native shim did not run")
    monkeypatch.setenv("ZIGGIE_CGROUP_SHIM", "auto" if shim == "ziggie-cgexec" else "sh")
    assert spawn_mechanism() == ("ziggie-cgexec" if shim == "ziggie-cgexec" else "sh shim")
    ready = tmp_path / "ready"
    argv = ["python3", BEHAVE, "setsid_grandchild", str(ready)]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    async with open_runtime(events=no_events()) as rt:
        handle: ProcessHandle = await rt.start_child(process_spec("self", argv, env=env))
        cgroup = handle.tree.cgroup
        assert cgroup is not None
        pids = await _ready(ready)
        assert _cmdline(handle.pid) == argv  # the shim exec'd away, argv[0] untouched
        mount = cgroup2_mount()
        assert mount is not None
        for pid in {handle.pid, *pids}:
            assert _cgroup_of(pid) == "/" + str(cgroup.path.relative_to(mount))
        with pytest.raises(StartError, match="no-such-program"):
            await rt.start_child(process_spec("missing", ["no-such-program"]))
        await rt.terminate("self")
    assert not any(_alive(p) for p in {handle.pid, *pids})


@pytest.mark.parametrize("variant", ["nolibc", "libc"])
def test_cgexec_source_builds_and_keeps_the_shell_contract(tmp_path: Path, variant: str) -> None:
    """The C source, built here (both variants) with the Makefile's flags: it joins the
    cgroup file it is given, then execs; 126 when it cannot join, 127 when the program is
    missing. (The Makefile uses the nolibc variant on x86-64, libc elsewhere.)"""
    binary = build_cgexec(tmp_path, variant)
    procs = tmp_path / "procs"  # a plain file stands in for cgroup.procs
    procs.touch()
    out = subprocess.run(
        [binary, "-g", procs, "--", "/bin/sh", "my-name", "-c", 'echo "$0 $$"'],
        capture_output=True,
        text=True,
        check=True,
    )
    name, pid = out.stdout.split()
    assert name == "my-name"
    assert procs.read_text() == f"{pid}\n"  # the pid that then ran the program
    cannot_join = subprocess.run(
        [binary, "-g", tmp_path / "none" / "procs", "--", "/bin/true", "true"]
    )
    assert cannot_join.returncode == 126
    missing = subprocess.run(
        [binary, "--", tmp_path / "missing", "missing"], capture_output=True, text=True
    )
    assert missing.returncode == 127
    assert "cannot execute" in missing.stderr
    usage = subprocess.run([binary], capture_output=True, text=True)
    assert usage.returncode == 126
    assert "usage" in usage.stderr


@pytest.mark.anyio
async def test_the_program_is_found_as_popen_would_find_it(tmp_path: Path) -> None:
    """Through a shim, PATH search is ours: the agent's PATH (relative entries from its
    own working directory), else the default PATH; never the runtime's PATH."""
    _need_cgroups()
    work = tmp_path / "work"
    (work / "bin").mkdir(parents=True)
    tool = work / "bin" / "my-tool"
    tool.write_text("#!/bin/sh\necho $$ > found\nexec sleep 60\n")
    tool.chmod(0o755)
    async with open_runtime(events=no_events()) as rt:
        env = {"PATH": f"bin{os.pathsep}/usr/bin{os.pathsep}/bin"}
        handle: ProcessHandle = await rt.start_child(
            process_spec("tool", ["my-tool"], cwd=work, env=env)
        )
        assert await _ready(work / "found") == [handle.pid]  # it ran, as the leader
        bare = ["sh", "-c", "echo $$ > bare; exec sleep 60"]
        no_path: ProcessHandle = await rt.start_child(process_spec("bare", bare, cwd=work, env={}))
        assert await _ready(work / "bare") == [no_path.pid]  # sh, from the default PATH
        with pytest.raises(StartError, match="my-tool"):
            await rt.start_child(process_spec("elsewhere", ["my-tool"], cwd=tmp_path, env=env))
        await rt.terminate("tool")
        await rt.terminate("bare")
