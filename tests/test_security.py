"""Issue 10, items 8-11: task text, permission globs, the environment, file modes."""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import time
from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from actors import ProcessHandle
from supervisor import AgentDeploymentClient, AgentSpec, Outcome, open_runtime
from supervisor.coordinator import AgentHome, AgentRefused, default_runners
from supervisor.coordinator._agents import agent_child_spec
from supervisor.coordinator._globs import BadPattern, TooLarge, matches, normalize, within
from supervisor.coordinator._nesting import Family, check_child

from .queue_helpers import agent_spec, coordinator

RUNNERS = default_runners()


def make_spec(tmp_path: Path, **overrides: object) -> AgentSpec:
    data: dict[str, object] = {
        "id": "agent-1",
        "level": "L1",
        "name": "Test Agent",
        "role": "Testing",
        "task": "t",
        "context": {"working_directory": str(tmp_path)},
        "timeout_seconds": 60,
    }
    data.update(overrides)
    return AgentSpec.model_validate(data)


# -- item 8: the claude runner's task is never an option ------------------------------

_FAKE_CLAUDE = """#!{python}
import argparse, json, sys
p = argparse.ArgumentParser()
p.add_argument("-p", "--print", action="store_true")
p.add_argument("--max-turns")
p.add_argument("--allowedTools")
p.add_argument("--add-dir", action="append")
p.add_argument("--append-system-prompt")
p.add_argument("--dangerously-skip-permissions", action="store_true")
p.add_argument("prompt", nargs="?")
args = p.parse_args()
json.dump({{"argv": sys.argv[1:], "prompt": args.prompt,
           "skip": args.dangerously_skip_permissions}}, open({record!r}, "w"))
"""


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_claude_task_that_looks_like_a_flag_stays_the_prompt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fake ``claude`` parses its argv as a real CLI would: the task must be the prompt."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "argv.json"
    fake = bin_dir / "claude"
    fake.write_text(_FAKE_CLAUDE.format(python=sys.executable, record=str(record)))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    home = AgentHome.at(tmp_path / "home")
    task = "--dangerously-skip-permissions"
    record.touch()  # the one file it may write
    context = {"working_directory": str(tmp_path), "permissions": {"write": [str(record)]}}
    spec = make_spec(tmp_path, runner="claude", task=task, restart="transient", context=context)
    async with open_runtime() as rt:
        handle: ProcessHandle = await rt.start_child(agent_child_spec(spec, home, RUNNERS))
        assert handle.argv[0] == str(fake)  # resolved before the execute check (item 10)
        with anyio.fail_after(20):
            while rt.info("agent-1").last_outcome is None:
                await anyio.sleep(0.01)
        assert rt.info("agent-1").last_outcome is Outcome.NORMAL
    recorded = json.loads(record.read_text())
    assert recorded["prompt"] == task
    assert recorded["skip"] is False
    assert recorded["argv"][-2:] == ["--", task]


# -- item 9: permission containment by glob semantics ----------------------------------


def test_containment_examples() -> None:
    assert not within("/data/*", ["/data/?"])
    assert within("/data/?", ["/data/*"])
    with pytest.raises(BadPattern, match=r"'\.\.' segments"):
        within("/srv/../etc/**", ["/srv/*"])
    assert within("/srv/data/**", ["/srv/**"])
    assert within("/srv", ["/srv/**"])  # "/srv/**" is the directory and what is in it
    assert not within("/srv/**", ["/srv/*"])  # ** crosses "/", * does not
    assert within("/srv/a/*.md", ["/srv/*/*"])
    assert within("/srv//./a", ["/srv/a"])
    assert within("/a/[!x]*", ["/a/*"])
    assert within("/a/b", ["/a/**/b"])  # a ** segment may match no segment at all
    assert not within("/a/*", ["/a/[!x]*", "/a/x*"])
    # Sound, not complete: a union of parents is not combined (list it plainly instead).
    assert not within("/a/?*", ["/a/[!x]*", "/a/x*"])


def test_containment_is_polynomial_on_hostile_patterns() -> None:
    """The case that took 16 s on the event loop: 16 ``?`` after ``**a``, under the
    README's pattern. Answered at once now, and a pattern too large is refused."""
    hostile = "/srv/ziggie/**a" + "?" * 16
    t0 = time.perf_counter()
    assert not within(hostile, ["/srv/ziggie/**a" + "?" * 15 + "*b"])
    assert within(hostile, ["/srv/ziggie/**"])
    assert time.perf_counter() - t0 < 5  # a bound on a bug, not a benchmark (was 16 s)
    with pytest.raises(TooLarge):
        within("/srv/" + "*a" * 2000, ["/srv/" + "?" * 1000] * 20)


def test_child_with_wider_or_escaping_patterns_is_refused(tmp_path: Path) -> None:
    parent = make_spec(
        tmp_path,
        context={
            "working_directory": str(tmp_path),
            "permissions": {"read": ["/data/?", "/srv/*"], "write": ["/srv/out/**"]},
        },
    )
    family = Family(frozenset(), frozenset())

    def child(read: list[str], write: list[str] | None = None) -> AgentSpec:
        perms = {"read": read, "write": write or []}
        return make_spec(
            tmp_path,
            id="kid",
            level="L2",
            context={"working_directory": str(tmp_path), "permissions": perms},
        )

    with pytest.raises(AgentRefused, match=r"permissions\.read"):
        check_child(parent, child(["/data/*"]), family)
    with pytest.raises(AgentRefused, match=r"permissions.read: .*'\.\.' segments"):
        check_child(parent, child(["/srv/../etc/**"]), family)
    with pytest.raises(AgentRefused, match=r"permissions\.write"):
        check_child(parent, child([], ["/srv/x"]), family)  # read is not write
    check_child(parent, child(["/data/[ab]", "/srv/x", "/srv/out/y"], ["/srv/out/a/b.md"]), family)


def _oracle(pattern: str, path: str) -> bool:
    """The dialect by regular expression, independently of the code under test."""
    regex = ""
    for segment in [s for s in pattern.split("/") if s not in ("", ".")]:
        if segment == "**":
            regex += "(?:/[^/]+)*"
            continue
        body, i = "", 0
        while i < len(segment):
            ch = segment[i]
            if ch == "*":
                while i < len(segment) and segment[i] == "*":
                    i += 1
                body += "[^/]*"
                continue
            if ch == "?":
                body += "[^/]"
            elif (ch == "[" and "]" in segment[i + 2 :]) or segment[i + 1 : i + 2] == "]":
                end = (
                    segment.index("]", i + 2)
                    if segment[i + 1 : i + 2] in ("!", "^") or (segment[i + 1 : i + 2] == "]")
                    else segment.index("]", i + 1)
                )
                inner = segment[i + 1 : end]
                negated = inner[:1] in ("!", "^")
                inner = inner[1:] if negated else inner
                cls = "".join("\\" + c if c in "\\]^[" else c for c in inner)
                body += f"[^/{cls}]" if negated else f"(?!/)[{cls}]"
                i = end + 1
                continue
            else:
                body += re.escape(ch)
            i += 1
        regex += "/" + body
    segments = [s for s in path.split("/") if s not in ("", ".")]
    text = "".join("/" + s for s in segments)
    return pattern.startswith("/") == path.startswith("/") and re.fullmatch(regex, text) is not None


_PIECES = ["a", "b", "/", "*", "**", "?", "[ab]", "[!a]", "[a-c]"]
patterns = st.lists(st.sampled_from(_PIECES), max_size=6).map("".join)
paths = st.lists(st.sampled_from(["a", "b", "c", "/"]), max_size=8).map("".join)


@settings(max_examples=300, deadline=None)
@given(pattern=patterns, path=paths)
def test_matching_agrees_with_a_regular_expression(pattern: str, path: str) -> None:
    assert matches(pattern, path) == _oracle(pattern, path), (pattern, path)


@settings(max_examples=500, deadline=None)
@given(child=patterns, parent=patterns, probes=st.lists(paths, max_size=30))
def test_containment_is_sound(child: str, parent: str, probes: list[str]) -> None:
    """Accepted only if every path the child matches, the parent matches too."""
    if within(child, [parent]):
        for path in probes:
            if _oracle(child, path):
                assert _oracle(parent, path), (child, parent, path)


@settings(max_examples=200, deadline=None)
@given(pattern=patterns)
def test_a_pattern_contains_itself_and_is_within_globstar(pattern: str) -> None:
    assert within(pattern, [pattern])
    assert within(pattern, ["/**" if pattern.startswith("/") else "**"])


@settings(max_examples=100, deadline=None)
@given(segments=st.lists(st.sampled_from(["a", "*", ".", "..", ""]), min_size=1, max_size=5))
def test_normalize_refuses_every_dotdot_segment(segments: list[str]) -> None:
    pattern = "/" + "/".join(segments)
    if ".." in segments:
        with pytest.raises(BadPattern):
            normalize(pattern)
    else:
        assert "/./" not in normalize(pattern) + "/"
        assert "//" not in normalize(pattern)


# -- a spec's env: no loader, start-up code, program choice or runtime variables ----------


@pytest.mark.parametrize(
    "name",
    [
        "PATH",
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "GLIBC_TUNABLES",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONWARNINGS",  # imports a module named in it at interpreter start
        "PYTHONBREAKPOINT",
        "NODE_OPTIONS",
        "BASH_ENV",
        "BASH_FUNC_ls%%",
        "BROWSER",
        "GIT_SSH_COMMAND",
        "HOME",
        "TMPDIR",
        "ZIGGIE_RUNTIME",
    ],
)
def test_env_may_not_set_loader_startup_or_runtime_variables(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValidationError, match=f"env: '{re.escape(name)}'|invalid environment"):
        make_spec(tmp_path, env={name: "/tmp/evil"})
    make_spec(tmp_path, env={"MY_SETTING": "1", "PYTHONUNBUFFERED": "1"})  # these are fine


def test_command_is_resolved_before_the_execute_check(tmp_path: Path) -> None:
    home = AgentHome.at(tmp_path / "home")
    ctx = {"working_directory": str(tmp_path), "permissions": {"execute": ["sleep"]}}
    spec = make_spec(tmp_path, context=ctx, command=["sleep", "1"])
    agent_child_spec(spec, home, RUNNERS)  # found on our PATH, and allowed
    with pytest.raises(AgentRefused, match="not found on the coordinator's PATH"):
        agent_child_spec(make_spec(tmp_path, command=["no-such-program-xyz"]), home, RUNNERS)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_refused_env_reaches_the_client_with_the_variable_named(tmp_path: Path) -> None:
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    data = agent_spec("sneaky", work, env={"LD_PRELOAD": "/tmp/x.so"})
    (home / "agent-queue" / "requests").mkdir(parents=True)
    request = {
        "request_id": "r1",
        "parent_agent": "Ziggie",
        "action": "deploy_agent",
        "agent_spec": data,
    }
    async with coordinator(home):
        (home / "agent-queue" / "requests" / "r1.request.json").write_text(json.dumps(request))
        path = home / "agent-queue" / "responses" / "r1.error.json"
        with anyio.fail_after(20):
            while not path.exists():
                await anyio.sleep(0.01)
    assert "LD_PRELOAD" in json.loads(path.read_text())["error"]


# -- item 11: 0700 directories, 0600 files ---------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_everything_the_coordinator_creates_is_private(tmp_path: Path) -> None:
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    old = os.umask(0o022)  # the usual umask, under which parents came out 0755
    try:
        async with (
            coordinator(home) as (_, coord),
            AgentDeploymentClient(home / "agent-queue") as client,
        ):
            spec = AgentSpec.model_validate(agent_spec("private", work))
            assert (await client.deploy_agent(spec)).status == "deployed"
            assert (await client.check_agent_status("private")).status == "running"
            await client.terminate_agent("private")
            del coord
    finally:
        os.umask(old)
    wrong = []
    for root, dirs, files in os.walk(home):
        for name in dirs:
            mode = stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode)
            if mode != 0o700:
                wrong.append((os.path.join(root, name), oct(mode)))
        for name in files:
            mode = stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode)
            if mode != 0o600:
                wrong.append((os.path.join(root, name), oct(mode)))
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert not wrong
