"""The CLI as an operator uses it (issue 11), against a real ``ziggie serve``."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from supervisor.protocol import read_definition

from .cli_helpers import PY, ROOT, py, ziggie
from .queue_helpers import reap_descendants, serve_process


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert "errors.pydantic.dev" not in result.stderr + result.stdout


def test_version_and_json_is_a_plain_flag(tmp_path: Path) -> None:
    result = ziggie("--version", home=None)
    assert result.returncode == 0
    assert result.stdout.startswith("ziggie 0.")
    assert "--no-json" not in ziggie("list", "--help", home=None).stdout


def test_stop_stops_the_coordinator_and_its_agents(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with serve_process(home) as proc:
        deployed = ziggie("deploy", "--id", "s", "--task", "t", "--command", "sleep 600", home=home)
        assert deployed.returncode == 0, deployed.stderr
        pid = json.loads(ziggie("status", "s", "--json", home=home).stdout)["pid"]
        helpers = psutil.Process(proc.pid).children(recursive=True)  # its watchdog
        stopped = ziggie("stop", home=home)
        assert stopped.returncode == 0, stopped.stderr
        assert f"coordinator stopped (pid {proc.pid})" in stopped.stdout
        assert proc.wait(10) == 0  # stop returned once it was gone
        reap_descendants(helpers)  # what re-parented to us (pytest may be a subreaper)
    assert not _alive(pid)
    again = ziggie("stop", home=home)
    assert again.returncode == 3
    assert "no coordinator is running" in again.stderr


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# -- spec files are strict ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"id": "a", "task": "t", "comand": ["sleep", "1"]},
            "unknown key 'comand' (did you mean 'command'?)",
        ),
        ({"id": "a", "task": "t", "timeout_second": 5}, "did you mean 'timeout_seconds'?"),
        (
            {"id": "a", "task": "t", "context": {"working_dir": "/tmp"}},
            "context: unknown key 'working_dir' (did you mean 'working_directory'?)",
        ),
        ({"id": "a", "task": "t", "max_iterations": 0}, "max_iterations: Input should be"),
    ],
)
def test_spec_files_are_strict(tmp_path: Path, spec: dict[str, Any], message: str) -> None:
    spec_file = tmp_path / "agent.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    result = ziggie("deploy", str(spec_file), home=tmp_path / "home")
    assert result.returncode == 2
    assert message in result.stderr
    no_traceback(result)
    assert not (tmp_path / "home").exists()  # refused before anything was touched


def test_broken_toml_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "ziggie.toml"
    config.write_text("concurrency = [oops\n")
    result = ziggie("serve", "--config", str(config), home=tmp_path / "home")
    assert result.returncode == 2
    assert "is not valid TOML" in result.stderr
    no_traceback(result)
    config.write_text("concurency = 3\n")  # a typo in a key: named, exit 2
    result = ziggie("serve", "--config", str(config), home=tmp_path / "home")
    assert result.returncode == 2
    assert "concurency" in result.stderr
    no_traceback(result)


# -- deploy flags, nesting defaults, wait, status of an ended agent ----------------------


def test_deploy_command_env_wait_and_why_it_ended(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with serve_process(home):
        greet = py("import os, sys; print(os.environ['GREETING']); sys.exit(7)")
        deployed = ziggie(
            "deploy", "--id", "greeter", "--task", "greet", "--command", greet,
            "--env", "GREETING=hello there", "--restart", "temporary", home=home,
        )  # fmt: skip
        assert deployed.returncode == 0, deployed.stderr
        waited = ziggie("wait", "greeter", home=home)
        assert waited.returncode == 7  # the agent's own exit code
        logs = ziggie("logs", "greeter", home=home)
        assert "hello there" in logs.stdout
        status = ziggie("status", "greeter", home=home)
        assert status.returncode == 0
        assert "greeter (L1) failed" in status.stdout
        assert "ended: exit 7" in status.stdout
        assert "greeter" not in ziggie("list", home=home).stdout  # finished: hidden
        listed = ziggie("list", "--all", home=home).stdout
        assert "greeter" in listed
        assert "exit 7" in listed
        assert ziggie("wait", "ghost", home=home).returncode == 4


def test_nesting_defaults_and_a_missing_parent(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with serve_process(home):
        boss = ziggie(
            "deploy", "--id", "boss", "--task", "lead", "--command", "sleep 600",
            "--timeout-seconds", "30", home=home,
        )  # fmt: skip
        assert boss.returncode == 0, boss.stderr
        # No timeout_seconds: the parent's remaining time, not a refusal of 300 > 30.
        kid = ziggie(
            "deploy", "--id", "kid", "--level", "L2", "--task", "help", "--command", "sleep 600",
            "--parent", "boss", home=home,
        )  # fmt: skip
        assert kid.returncode == 0, kid.stdout + kid.stderr
        definition = read_definition(home / ".claude" / "agents" / "kid.md")
        assert 25 <= int(definition["timeout"]) <= 30  # type: ignore[call-overload]
        assert (
            json.loads(ziggie("status", "kid", "--json", home=home).stdout)["agent"]["parent_id"]
            == "boss"
        )
        ghost = ziggie(
            "deploy", "--id", "orphan", "--level", "L2", "--task", "t", "--parent", "ghost",
            home=home,
        )  # fmt: skip
        assert ghost.returncode == 4
        assert "parent agent 'ghost' does not exist" in ghost.stderr
        assert ziggie("status", "orphan", home=home).returncode == 4  # nothing deployed
        tree = ziggie("tree", "--usage", home=home).stdout
        assert "boss L1 running" in tree
        assert "kid L2 running" in tree
        assert " MiB" in tree  # rss with its unit
        ziggie("terminate", "boss", home=home)


def test_deploy_under_a_parent_defaults_the_level_to_one_below(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with serve_process(home):
        lead = ziggie("deploy", "--id", "lead", "--task", "t", "--command", "sleep 600", home=home)
        assert lead.returncode == 0, lead.stderr
        for agent_id, parent, level in (("kid", "lead", "L2"), ("grandkid", "kid", "L3")):
            deployed = ziggie(
                "deploy", "--id", agent_id, "--task", "t", "--command", "sleep 600",
                "--parent", parent, home=home,
            )  # fmt: skip
            assert deployed.returncode == 0, deployed.stdout + deployed.stderr
            agent = json.loads(ziggie("status", agent_id, "--json", home=home).stdout)["agent"]
            assert (agent["level"], agent["parent_id"]) == (level, parent)
        under_l3 = ziggie(
            "deploy", "--id", "x", "--task", "t", "--command", "sleep 600",
            "--parent", "grandkid", home=home,
        )  # fmt: skip
        assert under_l3.returncode == 1
        assert "'grandkid' is L3; an L3 agent has no children" in under_l3.stdout
        explicit = ziggie(
            "deploy", "--id", "y", "--level", "L3", "--task", "t", "--command", "sleep 600",
            "--parent", "lead", home=home,
        )  # fmt: skip
        assert explicit.returncode == 1  # a level given is never "fixed"
        assert "must be L2, not L3" in explicit.stdout
        ziggie("terminate", "lead", home=home)


def test_help_is_plain_text() -> None:
    """Every help screen: no markup from docstrings, no type labels on flags, and each
    command's summary whole in the list."""
    env = {**os.environ, "COLUMNS": "80"}

    def help_of(*command: str) -> subprocess.Popen[str]:
        argv = [PY, "-m", "supervisor.cli", *command, "--help"]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)

    top = help_of()
    text = top.communicate(timeout=60)[0]
    assert top.returncode == 0
    listed = text.split("Commands:\n", 1)[1].splitlines()
    commands = [line.split()[0] for line in listed if line.startswith("  ") and line.split()]
    assert {"deploy", "apply", "diff", "list", "serve", "terminate"} <= set(commands)
    for line in listed:
        assert not line.rstrip().endswith("..."), f"summary cut short: {line!r}"
    running = {name: help_of(name) for name in commands}  # all at once: 2 cores, 16 starts
    screens = {"ziggie": text}
    for name, proc in running.items():
        screens[name] = proc.communicate(timeout=60)[0]
        assert proc.returncode == 0, name
        assert f"Usage: python -m supervisor.cli {name} [OPTIONS]" in screens[name]
    for name, screen in screens.items():
        for mark in ("`", "<bool>", "<list[", "[/", "[bold", "\x1b", "╭", "\\f", "--no-quiet"):
            assert mark not in screen, f"{name} --help shows {mark!r}:\n{screen}"
        assert "--help" in screen
    assert "--version      Print the version" in screens["ziggie"]
    assert "  --json " in screens["list"]


# -- logs and events ---------------------------------------------------------------------


def test_logs_tail_and_follow_until_the_agent_ends(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with serve_process(home):
        count = py(
            "import time\n"
            "for i in range(30):\n    print('line', i, flush=True)\n    time.sleep(0.05)"
        )
        assert (
            ziggie(
                "deploy", "--id", "counter", "--task", "count", "--command", count, home=home
            ).returncode
            == 0
        )
        followed = ziggie("logs", "counter", "-f", home=home, timeout=30)  # returns by itself
        assert followed.returncode == 0
        assert "line 29" in followed.stdout
        tail = ziggie("logs", "counter", "--tail", "2", home=home)
        assert tail.stdout.splitlines() == ["line 28", "line 29"]
        events = [json.loads(x) for x in ziggie("events", home=home).stdout.splitlines()]
        names = {e["event"] for e in events}
        assert "spawned" in names
        assert not names & {"request_received", "response_written"}  # noise hidden
        everything = ziggie("events", "--all", home=home).stdout
        assert "request_received" in everything
        mine = ziggie("events", "--agent", "counter", "--type", "exited", home=home).stdout
        picked = [json.loads(x) for x in mine.splitlines()]
        assert [(e["event"], e["agent_id"]) for e in picked] == [("exited", "counter")]


# -- apply / diff ------------------------------------------------------------------------


def _tree_file(path: Path, sleeper_seconds: str, with_helper: bool = True) -> None:
    children: list[dict[str, Any]] = [
        {"id": "sleeper", "task": "sleep", "command": ["sleep", sleeper_seconds]}
    ]
    if with_helper:
        children.append({"id": "helper", "task": "help", "command": ["sleep", "600"]})
    tree = {
        "agents": [
            {
                "id": "lead",
                "task": "lead",
                "command": ["sleep", "600"],
                "timeout_seconds": 120,
                "restart": "transient",
                "env": {"ROLE": "lead"},
                "children": children,
            }
        ]
    }
    path.write_text(yaml.safe_dump(tree, sort_keys=False))


def _pids(home: Path) -> dict[str, int]:
    listed = json.loads(ziggie("list", "--json", home=home).stdout)
    return {a["agent_id"]: a["pid"] for a in listed}


def test_apply_deploys_a_tree_then_only_what_changed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    tree_file = tmp_path / "tree.yaml"
    _tree_file(tree_file, "600")
    with serve_process(home):
        plan = ziggie("diff", str(tree_file), home=home)
        assert plan.returncode == 1  # something to do
        assert plan.stdout.split() == [
            "+",
            "add",
            "lead",
            "(new)",
            "+",
            "add",
            "sleeper",
            "(new)",
            "+",
            "add",
            "helper",
            "(new)",
        ]
        applied = ziggie("apply", str(tree_file), home=home)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        first = _pids(home)
        assert set(first) == {"lead", "sleeper", "helper"}
        assert (
            json.loads(ziggie("status", "helper", "--json", home=home).stdout)["agent"]["parent_id"]
            == "lead"
        )
        assert ziggie("diff", str(tree_file), home=home).returncode == 0  # nothing to do

        _tree_file(tree_file, "700", with_helper=False)
        plan = ziggie("diff", str(tree_file), home=home).stdout
        assert "~ change   sleeper (command)" in plan
        assert "- remove   helper (no longer declared)" in plan
        assert "lead" not in plan
        assert ziggie("apply", str(tree_file), home=home).returncode == 0
        second = _pids(home)
        assert set(second) == {"lead", "sleeper"}
        assert second["lead"] == first["lead"]  # unchanged: untouched
        assert second["sleeper"] != first["sleeper"]  # changed: redeployed
        assert ziggie("diff", str(tree_file), home=home).returncode == 0
        ziggie("terminate", "lead", home=home)


def test_a_bad_tree_file_names_the_agent_and_key(tmp_path: Path) -> None:
    tree_file = tmp_path / "tree.yaml"
    tree_file.write_text(
        yaml.safe_dump(
            {"agents": [{"id": "a", "task": "t", "children": [{"id": "b", "tsk": "x"}]}]}
        )
    )
    result = ziggie("apply", str(tree_file), home=tmp_path / "home")
    assert result.returncode == 2
    assert "agents[0].children[0]: unknown key 'tsk' (did you mean 'task'?)" in result.stderr
    no_traceback(result)


# -- housekeeping ------------------------------------------------------------------------


def _old_files(home: Path) -> tuple[Path, Path]:
    queue = home / "agent-queue"
    old_answer = queue / "responses" / "old.response.json"
    old_answer.write_text("{}")
    ten_days_ago = time.time() - 10 * 86_400
    os.utime(old_answer, (ten_days_ago, ten_days_ago))
    old_day = queue / "archive" / "2001-01-01"
    old_day.mkdir(parents=True)
    (old_day / "x.request.json").write_text("{}")
    return old_answer, old_day


def test_prune_with_and_without_a_coordinator(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with serve_process(home):
        assert ziggie("status", "fresh", home=home).returncode == 4  # a fresh answer: kept
        old_answer, old_day = _old_files(home)
        result = ziggie("prune", "--json", home=home)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["responses"] == 1
        assert report["archive_days"] == 1
        assert not old_answer.exists()
        assert not old_day.exists()
        assert len(list((home / "agent-queue" / "responses").iterdir())) >= 1
    old_answer, old_day = _old_files(home)
    (home / "events.jsonl").write_text("x" * 4096)
    env_result = subprocess.run(
        [PY, "-m", "supervisor.cli", "prune", "--json", "--home", str(home)],
        capture_output=True,
        text=True,
        env={**os.environ, "ZIGGIE_EVENTS_MAX_BYTES": "1024"},
        timeout=60,
    )
    report = json.loads(env_result.stdout)
    assert (report["responses"], report["archive_days"], report["events_rotated"]) == (1, 1, True)
    assert (home / "events.jsonl").stat().st_size == 0
    assert (home / "events.jsonl.1").stat().st_size == 4096


def test_prune_of_a_mistyped_home_says_so(tmp_path: Path) -> None:
    result = ziggie("prune", home=tmp_path / "nowhere")
    assert result.returncode == 3
    assert "no ziggie home at" in result.stderr
    assert not (tmp_path / "nowhere").exists()


def test_py_typed_ships_with_both_packages() -> None:
    assert (ROOT / "supervisor" / "py.typed").is_file()
    assert (ROOT / "actors" / "py.typed").is_file()


def test_the_readme_spec_and_tree_examples_are_valid(tmp_path: Path) -> None:
    from supervisor.cli._specs import load_spec, load_tree

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## The CLI") : text.index("## The embedded API")]
    blocks = section.split("```yaml\n")[1:]
    spec_text, tree_text = (block.split("```", 1)[0] for block in blocks)
    (tmp_path / "agent.yaml").write_text(spec_text)
    assert load_spec(tmp_path / "agent.yaml")["id"] == "overwatch-001"
    (tmp_path / "tree.yaml").write_text(tree_text)
    declared = load_tree(tmp_path / "tree.yaml")
    assert [(d.spec.id, d.spec.level, d.parent) for d in declared] == [
        ("overwatch", "L1", None),
        ("analyst-a", "L2", "overwatch"),
        ("analyst-b", "L2", "overwatch"),
    ]
