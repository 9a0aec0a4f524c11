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
from supervisor import AgentDeploymentClient, AgentSpec

from .helpers import real_clock_backend as anyio_backend  # noqa: F401
from .loud import loud_skip
from .queue_helpers import coordinator
from .waiting import until_files, until_gone_sync, until_text

pytestmark = pytest.mark.anyio

AGENTS = Path(__file__).with_name("agents")
ESCAPE = AGENTS / "escape.py"
#: How a denial reads: Landlock's EACCES, a scope's EPERM, a refused link's EXDEV.
DENIALS = ("Permission denied", "Operation not permitted", "Invalid cross-device link")


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


async def test_the_escape_corpus_is_denied_at_every_level(tmp_path: Path) -> None:
    need_landlock()
    home, ro, rw = tmp_path / "home", tmp_path / "ro", tmp_path / "rw"
    ro.mkdir()
    rw.mkdir()
    (ro / "data.txt").write_text("readable")
    listed, unlisted = shutil.which("true"), shutil.which("id")
    assert listed
    assert unlisted
    with listeners(2) as (port_open, port_closed):
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
            }
            argv = [sys.executable, str(ESCAPE), json.dumps(targets)]
            parent = "Ziggie"
            results = {}
            for agent_id, level in (("l1", "L1"), ("l2", "L2"), ("l3", "L3")):
                answer = await client.deploy_agent(
                    spec(
                        agent_id,
                        level,
                        tmp_path,
                        argv,
                        timeout_seconds=120,
                        context={"working_directory": str(rw), "permissions": permissions},
                    ),
                    parent_agent=parent,
                )
                assert answer.status == "deployed", answer.error
                results[agent_id] = await _probe_results(home, agent_id)
                parent = agent_id
            for agent_id, result in results.items():
                probes = result["probes"]
                for name in ATTACKS:
                    assert probes[name].startswith("denied: "), (agent_id, name, probes[name])
                    assert probes[name].removeprefix("denied: ") in DENIALS, (agent_id, name)
                for name in ALLOWED:
                    assert probes[name] == "allowed", (agent_id, name, probes[name])
                assert set(probes) == set(ATTACKS) | set(ALLOWED)
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
    "bind a port",
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
]
