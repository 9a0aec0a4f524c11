"""A stopped agent's id can be deployed again, and ``apply`` never leaves a changed agent
dead: through the CLI against a real ``ziggie serve``, over the file queue (the default)
and over HTTP (``--url``), for children of every restart type at L2 and L3.

OTP's ``terminate_child`` keeps a permanent or transient child's spec (a transient one's
also after it ends normally): the coordinator must still let a new deploy take that id.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from .cli_helpers import ziggie
from .http_helpers import served
from .queue_helpers import serve_process

RESTARTS = ("permanent", "transient", "temporary")
TRANSPORTS = ("filequeue", "http")


class Cli:
    """The CLI of one home, over one transport."""

    def __init__(self, home: Path, via: tuple[str, ...]) -> None:
        self.home, self.via = home, via

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return ziggie(*self.via, *args, home=self.home)

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = self(*args)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def status(self, agent_id: str) -> dict[str, Any]:
        agent: dict[str, Any] = json.loads(self.ok("status", agent_id, "--json").stdout)["agent"]
        return agent

    def agents(self) -> dict[str, dict[str, Any]]:
        listed = json.loads(self.ok("list", "--all", "--json").stdout)
        return {a["agent_id"]: a for a in listed}


@contextmanager
def cli(kind: str, home: Path) -> Iterator[Cli]:
    """A coordinator serving *home*, driven through the file queue or over HTTP."""
    if kind == "http":
        with served(home) as (_, url, _token):
            yield Cli(home, ("--url", url))
    else:
        with serve_process(home):
            yield Cli(home, ())


def _deploy(z: Cli, agent_id: str, level: str, parent: str, restart: str, task: str) -> Any:
    return z(
        "deploy", "--id", agent_id, "--level", level, "--parent", parent,
        "--restart", restart, "--task", task, "--command", "sleep 600", "--json",
    )  # fmt: skip


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_a_terminated_child_can_be_deployed_again(tmp_path: Path, kind: str) -> None:
    home = tmp_path / "home"
    with cli(kind, home) as z:
        z.ok("deploy", "--id", "lead", "--task", "lead", "--command", "sleep 600",
             "--timeout-seconds", "120")  # fmt: skip
        z.ok("deploy", "--id", "mid", "--level", "L2", "--parent", "lead", "--task", "mid",
             "--command", "sleep 600")  # fmt: skip
        for restart in RESTARTS:
            for level, parent in (("L2", "lead"), ("L3", "mid")):
                agent_id = f"{level.lower()}-{restart}"
                first = _deploy(z, agent_id, level, parent, restart, "one")
                assert first.returncode == 0, first.stdout + first.stderr
                z.ok("terminate", agent_id)
                ended = z.status(agent_id)  # its record stays readable
                assert (ended["state"], ended["outcome"], ended["level"]) == (
                    "terminated",
                    "shutdown",
                    level,
                )
                again = _deploy(z, agent_id, level, parent, restart, "two")
                assert again.returncode == 0, f"{agent_id}: {again.stdout}{again.stderr}"
                now = z.status(agent_id)
                assert now["state"] == "running"
                assert now["pid"] != json.loads(first.stdout)["pid"]
                assert (now["spec"]["task"], now["restart"], now["parent_id"]) == (
                    "two",
                    restart,
                    parent,
                )
                z.ok("terminate", agent_id)  # and once more: still the same rules
                assert _deploy(z, agent_id, level, parent, restart, "three").returncode == 0
        children = z.status("mid")["children"]
        assert children == ["l3-permanent", "l3-transient", "l3-temporary"]
        z.ok("terminate", "lead")


def _tree(path: Path, task: str, command: list[str] | None = None) -> None:
    """lead (L1) -> mid (L2) -> one L3 per restart type, and one L2 per restart type."""
    command = command or ["sleep", "600"]

    def child(agent_id: str, restart: str) -> dict[str, Any]:
        return {"id": agent_id, "task": task, "command": command, "restart": restart}

    tree = {
        "agents": [
            {
                "id": "lead",
                "task": "lead",
                "command": ["sleep", "600"],
                "timeout_seconds": 120,
                "children": [
                    {
                        "id": "mid",
                        "task": "mid",
                        "command": ["sleep", "600"],
                        "children": [child(f"l3-{r}", r) for r in RESTARTS],
                    },
                    *(child(f"l2-{r}", r) for r in RESTARTS),
                ],
            }
        ]
    }
    path.write_text(yaml.safe_dump(tree, sort_keys=False))


CHANGED = [f"{level}-{r}" for level in ("l3", "l2") for r in RESTARTS]


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_apply_redeploys_a_changed_child_of_every_restart_type(tmp_path: Path, kind: str) -> None:
    home = tmp_path / "home"
    tree_file = tmp_path / "tree.yaml"
    _tree(tree_file, "B")
    with cli(kind, home) as z:
        z.ok("apply", str(tree_file))
        before = z.agents()
        _tree(tree_file, "B2")
        plan = z("diff", str(tree_file)).stdout
        for agent_id in CHANGED:
            assert f"~ change   {agent_id} (task)" in plan
        applied = z("apply", str(tree_file))
        assert applied.returncode == 0, applied.stdout + applied.stderr
        for agent_id in CHANGED:  # each line says how the agent ended up
            assert f"~ change   {agent_id} (task): running" in applied.stdout
        assert "= keep     lead: running" in applied.stdout
        after = z.agents()
        for agent_id in CHANGED:
            assert after[agent_id]["state"] == "running", after[agent_id]
            assert after[agent_id]["pid"] != before[agent_id]["pid"]
            assert z.status(agent_id)["spec"]["task"] == "B2"
        assert after["lead"]["pid"] == before["lead"]["pid"]  # unchanged: untouched
        assert after["mid"]["pid"] == before["mid"]["pid"]
        assert z("diff", str(tree_file)).returncode == 0  # nothing left to do
        z.ok("terminate", "lead")


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_apply_restores_what_the_new_version_cannot_replace(tmp_path: Path, kind: str) -> None:
    home = tmp_path / "home"
    tree_file = tmp_path / "tree.yaml"
    _tree(tree_file, "B")
    with cli(kind, home) as z:
        z.ok("apply", str(tree_file))
        _tree(tree_file, "B2", ["no-such-program-ziggie"])
        applied = z("apply", str(tree_file))
        assert applied.returncode == 1, applied.stdout + applied.stderr
        for agent_id in CHANGED:
            assert f"~ change   {agent_id} (command, task): running, previous version" in (
                applied.stdout
            )
            assert f"failed {agent_id}: program 'no-such-program-ziggie' not found" in (
                applied.stdout
            )
        agents = z.agents()
        for agent_id in CHANGED:  # the old version runs again
            assert agents[agent_id]["state"] == "running", agents[agent_id]
            assert z.status(agent_id)["spec"]["task"] == "B"
        # Nothing was applied: the plan is the same again, and a fixed file then applies.
        assert "~ change   l2-permanent (command, task)" in z("diff", str(tree_file)).stdout
        _tree(tree_file, "B2")
        z.ok("apply", str(tree_file))
        assert z.status("l2-permanent")["spec"]["task"] == "B2"
        assert z("diff", str(tree_file)).returncode == 0
        z.ok("terminate", "lead")


def test_apply_says_when_a_restored_parent_brought_its_children_back(tmp_path: Path) -> None:
    """A parent whose new version cannot start is restored, and its subtree with it."""
    home = tmp_path / "home"
    tree_file = tmp_path / "tree.yaml"
    _tree(tree_file, "B")
    with cli("filequeue", home) as z:
        z.ok("apply", str(tree_file))
        data = yaml.safe_load(tree_file.read_text())
        data["agents"][0]["children"][0]["command"] = ["no-such-program-ziggie"]  # mid
        tree_file.write_text(yaml.safe_dump(data, sort_keys=False))
        applied = z("apply", str(tree_file))
        assert applied.returncode == 1, applied.stdout + applied.stderr
        assert "~ change   mid (command): running, previous version" in applied.stdout
        for restart in RESTARTS:
            line = f"~ restart  l3-{restart} (its parent 'mid' is redeployed): running"
            assert line in applied.stdout
        agents = z.agents()
        assert all(agents[a]["state"] == "running" for a in ("mid", *CHANGED)), agents
        assert z.status("mid")["spec"]["command"] == ["sleep", "600"]
        z.ok("terminate", "lead")


def test_a_child_that_ended_on_its_own_can_be_deployed_again(tmp_path: Path) -> None:
    """A transient child that exits 0 is not restarted, and OTP keeps its spec: its id is
    free all the same. (It runs its parent's program: a child may run only what its
    parent may.)"""
    home = tmp_path / "home"
    with cli("filequeue", home) as z:
        z.ok("deploy", "--id", "lead", "--task", "lead", "--command", "sleep 600")
        for task in ("one", "two"):
            z.ok("deploy", "--id", "once", "--parent", "lead", "--restart", "transient",
                 "--task", task, "--command", "sleep 0")  # fmt: skip
            assert z("wait", "once").returncode == 0
            assert z.status("once")["state"] == "completed"
        assert z.status("once")["spec"]["task"] == "two"
        z.ok("terminate", "lead")


def test_a_record_of_every_field_plans_as_one_of_those_set(tmp_path: Path) -> None:
    """An applied record written before it kept only the fields a file set (every field,
    defaults included) plans the same: nothing changed, nothing to do."""
    from supervisor.cli._specs import load_tree
    from supervisor.cli._tree import plan

    tree_file = tmp_path / "tree.yaml"
    _tree(tree_file, "B")
    declared = load_tree(tree_file)
    every_field = {
        d.spec.id: {"spec": d.spec.model_dump(mode="json"), "parent": d.parent} for d in declared
    }
    live = {d.spec.id: {"state": "running"} for d in declared}
    assert {s.action for s in plan(declared, every_field, live)} == {"keep"}
    assert [(s.action, s.why) for s in plan(declared, {}, live)][:1] == [
        ("keep", "running, not applied before: left as is")
    ]
