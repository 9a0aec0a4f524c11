"""An agent that tries to escape its confinement: ``escape.py TARGETS_JSON``.

Each probe is one attack (or one thing it must still be able to do). It prints one line
``{"probes": {name: "allowed" | "denied: <error>"}, "escapee": pid}`` and then waits to
be stopped. The escapee is a grandchild that left its session (``setsid``, a double
fork) and exec'd with an empty environment: it must not survive the agent's stop.

Requests go through the agent's own queue (``ZIGGIE_HOME``), forged as an attacker would
write them; the last probe deploys the next level (``TARGETS["next"]``), itself this
program, through that queue.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

T = json.loads(sys.argv[1])
me = os.environ["ZIGGIE_AGENT_ID"]
home, ro, rw = Path(T["home"]), Path(T["ro"]), Path(T["rw"])
coordinator, sibling = os.getppid(), int(T["sibling"])
libc = ctypes.CDLL(None, use_errno=True)
PTRACE_SEIZE, PTRACE_DETACH = 0x4206, 17


def ptrace_seize(pid: int) -> None:
    """PTRACE_SEIZE does not stop the tracee: harmless if it ever succeeded."""
    if libc.ptrace(PTRACE_SEIZE, pid, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    libc.ptrace(PTRACE_DETACH, pid, 0, 0)


def run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


def connect(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass


def connect_abstract(name: str) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect("\0" + name)


def chown_to_another_user() -> None:
    """CAP_CHOWN: giving a file away is a capability a root agent must not hold."""
    target = rw / f"mine-{me}"
    target.write_text("x")
    os.chown(target, 1, 1)


def ask(call: Callable[[Any], Any]) -> None:
    """A request through the agent's own queue; a refusal is a denial, as an errno is."""
    from supervisor import SyncAgentDeploymentClient

    with SyncAgentDeploymentClient() as client:
        answer = call(client)
    if answer.code is not None:
        raise PermissionError(0, f"{answer.code}: {answer.error}")


def child_spec(agent_id: str, level: str, **changes: Any) -> Any:
    from supervisor import AgentSpec

    data = {
        **T["spec"],
        "id": agent_id,
        "level": level,
        "name": agent_id,
        "role": "prober",
        "task": "try to escape",
        "command": [sys.executable, __file__, json.dumps({**T, "next": T["next"][1:]})],
    }
    data.update(changes)
    return AgentSpec.model_validate(data)


def wider_permissions() -> dict[str, Any]:
    perms = dict(T["spec"]["context"]["permissions"])
    perms["read"] = [*perms["read"], "/etc/**"]
    return {**T["spec"]["context"], "permissions": perms}


#: The level a child of this agent has (an L3's would-be child is refused by level).
NEXT_LEVEL = T["next"][0][1] if T["next"] else "L3"


def bind() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))


def cgroup_root() -> str:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split(" ", 1)[0] == "cgroup2":
            return left.split()[4]
    return "/sys/fs/cgroup"


def copy_of(program: str) -> list[str]:
    copy = rw / f"copy-{me}"
    shutil.copy(program, copy)
    copy.chmod(0o755)
    return [str(copy)]


def link_to(program: str) -> list[str]:
    link = rw / f"link-{me}"
    os.symlink(program, link)
    return [str(link)]


def own_child_signalled() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    os.kill(child.pid, signal.SIGTERM)
    child.wait()


ATTACKS: dict[str, Callable[[], object]] = {
    "read /etc/shadow": lambda: Path("/etc/shadow").read_bytes(),
    "read the home's token": lambda: (home / "api-token").read_text(),
    "read the journal": lambda: (home / "journal.sqlite3").read_bytes(),
    "list the home": lambda: os.listdir(home),
    "write a request into the operator's queue": lambda: (
        home / "agent-queue" / "requests" / f"evil-{me}.request.json"
    ).write_text("{}"),
    "read a sibling's private directory": lambda: os.listdir(T["sibling_dir"]),
    "write a read-only directory": lambda: (ro / f"x-{me}").write_text("x"),
    "write outside every permission": lambda: Path(f"/var/tmp/ziggie-escape-{me}").write_text("x"),
    "mkdir outside": lambda: os.mkdir(ro / f"d-{me}"),
    "rename a readable file into the writable dir": lambda: os.rename(
        ro / "data.txt", rw / f"moved-{me}"
    ),
    "hard-link a readable file into the writable dir": lambda: os.link(
        ro / "data.txt", rw / f"hard-{me}"
    ),
    "hard-link /etc/shadow into the writable dir": lambda: os.link(
        "/etc/shadow", rw / f"shadow-{me}"
    ),
    "truncate a readable file": lambda: os.truncate(ro / "data.txt", 0),
    "exec an unlisted program by path": lambda: run([T["unlisted"]]),
    "exec through sh": lambda: run(["/bin/sh", "-c", "true"]),
    "exec a copy of a listed program": lambda: run(copy_of(T["listed"])),
    "exec a symlink to an unlisted program": lambda: run(link_to(T["unlisted"])),
    "signal the coordinator": lambda: os.kill(coordinator, 0),
    "signal a sibling": lambda: os.kill(sibling, 0),
    "ptrace the coordinator": lambda: ptrace_seize(coordinator),
    "ptrace a sibling": lambda: ptrace_seize(sibling),
    "read a sibling's environ": lambda: Path(f"/proc/{sibling}/environ").read_bytes(),
    "read the coordinator's environ": lambda: Path(f"/proc/{coordinator}/environ").read_bytes(),
    "leave its cgroup": lambda: Path(cgroup_root(), "cgroup.procs").write_text(str(os.getpid())),
    "connect to an unlisted port": lambda: connect(T["port_closed"]),
    "connect to the coordinator's abstract socket": lambda: connect_abstract(T["abstract"]),
    "use a capability (chown to another user)": chown_to_another_user,
    "bind a port": bind,
    "deploy under a sibling": lambda: ask(
        lambda c: c.deploy_agent(child_spec("intruder", "L2"), parent_agent="victim")
    ),
    "terminate a sibling": lambda: ask(lambda c: c.terminate_agent("victim")),
    "list every agent": lambda: ask(lambda c: c.list_agents()),
    "deploy a child wider than itself": lambda: ask(
        lambda c: c.deploy_agent(
            child_spec(
                f"wide-{me}", T["next"][0][1] if T["next"] else "L3", context=wider_permissions()
            )
        )
    ),
}
ALLOWED: dict[str, Callable[[], object]] = {
    "read a listed file": lambda: (ro / "data.txt").read_text(),
    "list a listed directory": lambda: os.listdir(ro),
    "write the writable directory": lambda: (rw / f"out-{me}").write_text("x"),
    "mkdir and rename within the writable directory": lambda: (
        os.mkdir(rw / f"sub-{me}"),
        os.rename(rw / f"sub-{me}", rw / f"sub2-{me}"),
    ),
    "exec a listed program": lambda: run([T["listed"]]),
    "write its own TMPDIR": lambda: Path(tempfile.mkstemp()[1]).write_text("x"),
    "read its definition": lambda: Path(os.environ["ZIGGIE_DEFINITION"]).read_text(),
    "read its own /proc": lambda: Path("/proc/self/status").read_text(),
    "signal its own child": own_child_signalled,
    "connect to a listed port": lambda: connect(T["port_open"]),
    "status of itself through its queue": lambda: ask(lambda c: c.check_agent_status(me)),
}


def attempt(probe: Callable[[], object]) -> str:
    try:
        probe()
    except OSError as exc:
        return f"denied: {exc.strerror or exc}"
    except Exception as exc:  # a probe that broke is neither allowed nor denied
        return f"error: {exc!r}"
    return "allowed"


def escapee() -> int:
    """A grandchild in its own session, exec'd with an empty environment."""
    r, w = os.pipe()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.write(w, f"{os.getpid()}\n".encode())
            code = "import time\nwhile True: time.sleep(60)"
            os.execve(sys.executable, [sys.executable, "-c", code], {})
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        return int(f.readline())


results = {name: attempt(probe) for name, probe in {**ATTACKS, **ALLOWED}.items()}
if T["next"]:  # the next level, deployed by this agent through its own queue
    agent_id, level = T["next"][0]
    results["deploy its child through its queue"] = attempt(
        lambda: ask(lambda c: c.deploy_agent(child_spec(agent_id, level)))
    )
print(json.dumps({"probes": results, "escapee": escapee()}), flush=True)
while True:
    time.sleep(3600)
