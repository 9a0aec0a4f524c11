"""Agents are untrusted: the escape corpus, run by real agents at L1, L2 and L3.

Every agent runs ``tests/agents/escape.py``, which tries each attack of the threat model
(the README's "Agents are untrusted") and each thing it must still be able to do. The
kernel (Landlock, scoping, no capabilities) must deny every attack, with a permission
error, and allow every permitted operation. Where the kernel has no Landlock the corpus
skips loudly, and fails under CI, which runs on a kernel that has it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

from actors import landlock_abi
from actors._exec import exec_shim
from supervisor import AgentDeploymentClient, AgentSpec

from .helpers import build_cgexec
from .helpers import real_clock_backend as anyio_backend  # noqa: F401
from .loud import loud_skip
from .queue_helpers import coordinator
from .waiting import until_files, until_gone_sync, until_text

pytestmark = pytest.mark.anyio

AGENTS = Path(__file__).with_name("agents")
ESCAPE = AGENTS / "escape.py"
#: How a denial reads: Landlock's EACCES, a scope's EPERM, a refused link's EXDEV.
DENIALS = ("Permission denied", "Operation not permitted", "Invalid cross-device link")
#: How a refused request reads (its code): not its caller's to make, or wider than allowed.
REFUSALS = ("forbidden: ", "refused: ")


def need_landlock() -> None:
    if landlock_abi() < 6:
        if os.environ.get("CI"):
            pytest.fail(f"Landlock ABI {landlock_abi()} here: the escape corpus must run in CI")
        loud_skip(f"Landlock ABI {landlock_abi()} (< 6) here: the escape corpus did not run")


@contextmanager
def listeners(count: int) -> Iterator[list[int]]:
    """Ports that accept connections (so a refused connect is the kernel's doing)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen(16)
            socks.append(s)
        yield [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@contextmanager
def abstract_listener(name: str) -> Iterator[None]:
    """An abstract UNIX socket of ours (the coordinator's side of the scope)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.bind("\0" + name)
        s.listen(4)
        yield


def spec(agent_id: str, level: str, tmp_path: Path, argv: list[str], **extra: Any) -> AgentSpec:
    return AgentSpec.model_validate(
        {
            "id": agent_id,
            "level": level,
            "name": agent_id,
            "role": "prober",
            "task": "try to escape",
            "command": argv,
            "context": {"working_directory": str(tmp_path / "rw")},
            **extra,
        }
    )


async def _probe_results(home: Path, agent_id: str) -> dict[str, Any]:
    logs = home / "agent-logs"
    found: list[dict[str, Any]] = []

    def printed(text: str) -> bool:
        for line in text.splitlines():
            if line.startswith('{"probes"'):
                found.append(json.loads(line))
                return True
        return False

    log = await _log_of(logs, agent_id)
    await until_text(log, printed, timeout=60)
    return found[0]


async def _log_of(logs: Path, agent_id: str) -> Path:
    await until_files([logs], lambda: any(logs.glob(f"{agent_id}_*.log")), timeout=30)
    return next(logs.glob(f"{agent_id}_*.log"))


@pytest.mark.parametrize("shim", ["ziggie-cgexec", "python"])
async def test_the_escape_corpus_is_denied_at_every_level(
    tmp_path: Path, shim: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the native shim, and through its Python twin (where no C compiler built
    one): the same promises."""
    need_landlock()
    if shim == "ziggie-cgexec" and exec_shim() is None:
        loud_skip("ziggie-cgexec was not built: the corpus ran through the Python shim only")
    monkeypatch.setenv("ZIGGIE_CGROUP_SHIM", "auto" if shim == "ziggie-cgexec" else "sh")
    home, ro, rw = tmp_path / "home", tmp_path / "ro", tmp_path / "rw"
    ro.mkdir()
    rw.mkdir()
    (ro / "data.txt").write_text("readable")
    listed, unlisted = shutil.which("true"), shutil.which("id")
    assert listed
    assert unlisted
    abstract = f"ziggie-probe-{os.getpid()}"
    with listeners(2) as (port_open, port_closed), abstract_listener(abstract):
        permissions = {
            "read": [f"{ro}/**", f"{AGENTS}/**"],
            "write": [f"{rw}/**"],
            "execute": [sys.executable, listed],
            "network": {"connect": [port_open]},
        }
        async with coordinator(home, http="127.0.0.1:0"):
            client = AgentDeploymentClient(home / "agent-queue")
            victim = spec(
                "victim", "L1", tmp_path, [sys.executable, "-c", "import time; time.sleep(600)"]
            )
            answer = await client.deploy_agent(victim)
            assert answer.status == "deployed", answer.error
            targets = {
                "home": str(home),
                "ro": str(ro),
                "rw": str(rw),
                "sibling": answer.pid,
                "sibling_dir": str(home / "agents" / "victim"),
                "listed": listed,
                "unlisted": unlisted,
                "port_open": port_open,
                "port_closed": port_closed,
                "abstract": abstract,
            }
            # The L1 is deployed by the operator; it deploys the L2 through its own
            # queue, which deploys the L3 through its own.
            template = {
                "context": {"working_directory": str(rw), "permissions": permissions},
                "timeout_seconds": 100,
            }
            targets["spec"] = template
            targets["next"] = [["l2", "L2"], ["l3", "L3"]]
            answer = await client.deploy_agent(
                spec(
                    "l1",
                    "L1",
                    tmp_path,
                    [sys.executable, str(ESCAPE), json.dumps(targets)],
                    timeout_seconds=120,
                    context=template["context"],
                )
            )
            assert answer.status == "deployed", answer.error
            results = {a: await _probe_results(home, a) for a in ("l1", "l2", "l3")}
            assert results["l1"]["probes"]["deploy its child through its queue"] == "allowed"
            assert results["l2"]["probes"]["deploy its child through its queue"] == "allowed"
            l3 = await client.check_agent_status("l3")
            assert l3.agent is not None
            assert l3.agent["parent_id"] == "l2"
            for agent_id, result in results.items():
                probes = result["probes"]
                for name in ATTACKS:
                    assert probes[name].startswith("denied: "), (agent_id, name, probes[name])
                    reason = probes[name].removeprefix("denied: ")
                    assert reason in DENIALS or reason.startswith(REFUSALS), (agent_id, name)
                for name in ALLOWED:
                    assert probes[name] == "allowed", (agent_id, name, probes[name])
                assert set(probes) - {"deploy its child through its queue"} == set(ATTACKS) | set(
                    ALLOWED
                )
                assert psutil.pid_exists(result["escapee"])
            terminated = await client.terminate_agent("l1")
            assert terminated.status == "terminated"
            # The escapees left their sessions and environment: gone with their agents.
            until_gone_sync([r["escapee"] for r in results.values()], 10, "escapees")
            await client.terminate_agent("victim")
    assert not (home / "agent-queue" / "requests" / "evil-l1.request.json").exists()
    assert (ro / "data.txt").read_text() == "readable"


ATTACKS = [
    "read /etc/shadow",
    "read the home's token",
    "read the journal",
    "list the home",
    "write a request into the operator's queue",
    "read a sibling's private directory",
    "write a read-only directory",
    "write outside every permission",
    "mkdir outside",
    "rename a readable file into the writable dir",
    "hard-link a readable file into the writable dir",
    "hard-link /etc/shadow into the writable dir",
    "truncate a readable file",
    "exec an unlisted program by path",
    "exec through sh",
    "exec a copy of a listed program",
    "exec a symlink to an unlisted program",
    "signal the coordinator",
    "signal a sibling",
    "ptrace the coordinator",
    "ptrace a sibling",
    "read a sibling's environ",
    "read the coordinator's environ",
    "leave its cgroup",
    "connect to an unlisted port",
    "connect to the coordinator's abstract socket",
    "use a capability (chown to another user)",
    "bind a port",
    "deploy under a sibling",
    "terminate a sibling",
    "list every agent",
    "deploy a child wider than itself",
]
ALLOWED = [
    "read a listed file",
    "list a listed directory",
    "write the writable directory",
    "mkdir and rename within the writable directory",
    "exec a listed program",
    "write its own TMPDIR",
    "read its definition",
    "read its own /proc",
    "signal its own child",
    "connect to a listed port",
    "status of itself through its queue",
]


# -- what the deploy answer, status and events say; what is refused -----------------------


def _work(tmp_path: Path) -> tuple[Path, Path]:
    home, work = tmp_path / "home", tmp_path / "work"
    (work / "docs").mkdir(parents=True)
    return home, work


def _with(work: Path, agent_id: str = "a", level: str = "L1", **perms: Any) -> AgentSpec:
    return spec(
        agent_id,
        level,
        work.parent,
        [sys.executable, "-c", "import time; time.sleep(600)"],
        context={"working_directory": str(work), "permissions": perms},
        timeout_seconds=120,
    )


async def test_widened_patterns_are_said_and_hostile_ones_refused(tmp_path: Path) -> None:
    need_landlock()
    home, work = _work(tmp_path)
    seen: list[tuple[str, dict[str, Any]]] = []
    async with coordinator(home) as (rt, _coord):
        with rt.events.listen(lambda event, fields: seen.append((event, fields))):
            client = AgentDeploymentClient(home / "agent-queue")
            for pattern, why in (
                ("/**", "would allow the whole filesystem"),
                (f"{tmp_path}/**", "reaches the coordinator's home"),
                (f"{home}/agents/other/**", "reaches the coordinator's home"),
                ("/sys/fs/cgroup/**", "reaches cgroup files"),
            ):
                refused = await client.deploy_agent(_with(work, read=[pattern]))
                assert refused.status == "failed"
                assert refused.code == "refused"
                assert "context.permissions.read" in str(refused.error)
                assert why in str(refused.error)
            refused = await client.deploy_agent(_with(work, write=["/proc/self/**"]))
            assert "the kernel's interfaces cannot be written" in str(refused.error)
            answer = await client.deploy_agent(
                _with(work, read=[f"{work}/docs/*.md", f"{work}/missing/**"])
            )
            assert answer.status == "deployed", answer.error
            assert answer.agent is not None
            said = answer.agent["confinement"]
            assert said["mechanism"] == f"landlock abi {landlock_abi()}"
            assert said["widened"] == {f"{work}/docs/*.md": str(work / "docs")}
            assert said["missing"] == [f"{work}/missing/**"]
            status = await client.check_agent_status("a")
            assert status.agent is not None
            assert status.agent["confinement"] == said
            spawned = [f for e, f in seen if e == "spawned" and f["agent_id"] == "a"]
            assert spawned[-1]["confinement"] == said
            await client.terminate_agent("a")


@pytest.mark.parametrize(
    ("parent", "child", "field"),
    [
        ({"read": ["{w}/docs/**"]}, {"read": ["{w}/**"]}, "context.permissions.read"),
        ({"read": ["{w}/**"]}, {"write": ["{w}/docs/**"]}, "context.permissions.write"),
        ({"read": ["{w}/**"]}, {"read": ["{w}/link/**"]}, "context.permissions.read"),
        ({}, {"execute": ["true"]}, "context.permissions.execute"),
        ({"network": {"connect": [443]}}, {}, "context.permissions.network"),
        ({"network": {"connect": [443]}}, {"network": {"connect": [80]}}, "network.connect"),
    ],
)
async def test_a_child_is_never_wider_than_its_parent(
    tmp_path: Path, parent: dict[str, Any], child: dict[str, Any], field: str
) -> None:
    """By the paths the patterns match and by the real directories the kernel enforces
    (``link`` points outside the parent's tree), by real executables, by network."""
    need_landlock()
    home, work = _work(tmp_path)
    (work / "link").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").mkdir()

    def fill(perms: dict[str, Any]) -> dict[str, Any]:
        return json.loads(json.dumps(perms).replace("{w}", str(work)))

    async with coordinator(home) as _:
        client = AgentDeploymentClient(home / "agent-queue")
        assert (await client.deploy_agent(_with(work, "p", **fill(parent)))).status == "deployed"
        answer = await client.deploy_agent(_with(work, "c", "L2", **fill(child)), parent_agent="p")
        assert answer.status == "failed"
        assert answer.code == "refused"
        assert field in str(answer.error)
        await client.terminate_agent("p")


async def test_caps_and_limits_are_inherited_and_never_lifted(tmp_path: Path) -> None:
    need_landlock()
    home, work = _work(tmp_path)
    async with coordinator(home) as (_rt, coord):
        client = AgentDeploymentClient(home / "agent-queue")
        parent = _with(work, "p").model_copy(
            update={"max_children": 2, "tools": ["Read"], "max_restarts": 2, "max_seconds": 60.0}
        )
        assert (await client.deploy_agent(parent)).status == "deployed"
        for update, field in (
            ({"max_children": 3}, "max_children"),
            ({"tools": ["Read", "Bash"]}, "tools"),
            ({"max_restarts": 3}, "max_restarts"),
            ({"max_restarts": 2, "max_seconds": 10.0}, "max_seconds"),
        ):
            kid = _with(work, "c", "L2").model_copy(update={"tools": ["Read"], **update})
            answer = await client.deploy_agent(kid, parent_agent="p")
            assert answer.code == "refused", update
            assert field in str(answer.error)
        kid = _with(work, "c", "L2").model_copy(update={"tools": ["Read"]})
        assert (await client.deploy_agent(kid, parent_agent="p")).status == "deployed"
        row = coord.service.journal.agent("c")
        assert row is not None
        assert row["spec"]["max_children"] == 2  # inherited, not lifted by omission
        await client.terminate_agent("p")


async def test_recovery_refuses_what_it_cannot_trust(tmp_path: Path) -> None:
    """Rows planted in the journal (as a pre-confinement agent could have) are validated
    like requests before anything runs: none of these starts a process."""
    need_landlock()
    home, work = _work(tmp_path)
    planted = tmp_path / "planted"
    async with coordinator(home) as (_rt, coord):
        journal = coord.service.journal
        evil = _with(work, "evil").model_dump(mode="json")
        evil["command"] = ["/bin/sh", "-c", f"touch {planted}"]
        rows = {
            "bad-env": {**evil, "id": "bad-env", "env": {"LD_PRELOAD": "/tmp/x.so"}},
            "orphan-l2": {**evil, "id": "orphan-l2", "level": "L2"},
            "mismatch": {**evil, "id": "someone-else"},
            "home-reader": {
                **evil,
                "id": "home-reader",
                "context": {
                    "working_directory": str(work),
                    "permissions": {"read": [f"{home}/**"]},
                },
            },
        }
        for agent_id, data in rows.items():
            journal.add_agent(
                agent_id,
                json.dumps(data),
                parent_id=None,
                level=data["level"],
                request_id=None,
                restart="permanent",
            )
            journal.update_agent(agent_id, state="running")
        journal.add_agent(
            "not-json", "{", parent_id=None, level="L1", request_id=None, restart="permanent"
        )
        journal.update_agent("not-json", state="running")
        from supervisor.coordinator._recovery import recover_agents

        await recover_agents(coord.service)
        for agent_id in [*rows, "not-json"]:
            row = journal.agent(agent_id)
            assert row is not None
            assert row["state"] == "failed", agent_id
            assert "redeploy after recovery failed" in row["reason"]
            assert agent_id not in coord.service.rt
    assert not planted.exists()


async def test_without_landlock_deploys_are_refused_unless_best_effort(tmp_path: Path) -> None:
    """Fail closed: a kernel that cannot confine refuses, naming the setting; with
    ``confinement = "best_effort"`` the agent runs and every view says it is unconfined."""
    from .queue_helpers import serve_process

    _home, work = _work(tmp_path)
    base = {**os.environ, "ZIGGIE_LANDLOCK": "off"}
    for mode, home in (("enforce", tmp_path / "strict"), ("best_effort", tmp_path / "loose")):
        with serve_process(home, env={**base, "ZIGGIE_CONFINEMENT": mode}):
            client = AgentDeploymentClient(home / "agent-queue")
            answer = await client.deploy_agent(_with(work))
            events = (home / "events.jsonl").read_text()
            ready = [json.loads(x) for x in events.splitlines() if "coordinator_ready" in x]
            if mode == "enforce":
                assert answer.code == "refused"
                assert 'confinement = "best_effort"' in str(answer.error)
                assert ready[-1]["confinement"].startswith("unavailable: no Landlock")
                continue
            assert answer.status == "deployed", answer.error
            assert answer.agent is not None
            assert answer.agent["confinement"]["mechanism"] == "none"
            status = await client.check_agent_status("a")
            assert status.agent is not None
            assert status.agent["confinement"]["mechanism"] == "none"
            assert ready[-1]["confinement"].startswith("none: no Landlock")
            await client.terminate_agent("a")


@pytest.mark.parametrize("variant", ["nolibc", "libc"])
def test_the_shim_source_confines_in_both_builds(tmp_path: Path, variant: str) -> None:
    """``cgexec.c`` built here with the Makefile's flags: rules allow exactly what they
    name, a symlinked rule path grants nothing, capabilities are gone, and a ruleset the
    kernel refuses stops the exec (126), never runs the program unconfined."""
    import subprocess

    need_landlock()
    binary = build_cgexec(tmp_path, variant)
    secret = tmp_path / "secret"
    secret.write_text("s")
    (tmp_path / "link").symlink_to(secret)
    cat = shutil.which("cat")
    assert cat is not None

    def run(*rules: str, path: Path = secret) -> subprocess.CompletedProcess[str]:
        argv = [str(binary), "-L", "ffff", "0", "3", "-r", "d", "/usr", *rules, "-c"]
        return subprocess.run(
            [*argv, "--", cat, "cat", str(path), "/proc/self/status"],
            capture_output=True,
            text=True,
        )

    denied = run()
    assert denied.returncode == 1
    assert "Permission denied" in denied.stderr
    allowed = run("-r", "4", str(secret), "-r", "c", "/proc/self")
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.startswith("s")
    assert "CapEff:\t0000000000000000" in allowed.stdout
    assert "CapBnd:\t0000000000000000" in allowed.stdout
    assert run("-r", "4", str(tmp_path / "link")).returncode == 1  # a link is not followed
    refused = subprocess.run(
        [str(binary), "-L", "ffff", "0", "ff", "--", cat, "cat"], capture_output=True, text=True
    )
    assert refused.returncode == 126
    assert "cannot create" in refused.stderr
