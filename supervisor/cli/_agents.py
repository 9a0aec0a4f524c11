"""Commands on agents: deploy, status, terminate, restart, list, tree, wait.

Every one is a client call (or a read of the home's files): no agent logic here.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.tree import Tree

from supervisor.client import AgentDeploymentClient
from supervisor.protocol import DeploymentResponse

from . import _output
from ._common import (
    NOT_FOUND,
    USAGE,
    AgentIdArg,
    HomeOpt,
    JsonOpt,
    TimeoutOpt,
    app,
    call,
    err,
    exit_code_of,
    fail,
    home_of,
    no_coordinator_exit,
    out,
    run_client,
)
from ._output import escape
from ._specs import SpecError, child_level, complete, load_spec, validate


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def finish(response: DeploymentResponse, as_json: bool) -> NoReturn:
    """Print an answer, then exit with the code its ``code`` maps to."""
    if as_json:
        print_json(response.model_dump(mode="json"))
    else:
        colour = "red" if response.status == "failed" else "green"
        out.print(
            f"[{colour}]{response.status}[/] {escape(response.agent_id)}: "
            f"{escape(response.message)}"
        )
        if response.pid:
            out.print(f"  pid: {response.pid}")
        if response.output_log:
            out.print(f"  log: {escape(response.output_log)}")
        if response.error:
            out.print(f"  error: {escape(response.error)}")
    raise typer.Exit(exit_code_of(response))


def _env_pairs(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            fail(f"--env {pair!r}: expected NAME=VALUE", USAGE)
        env[name] = value
    return env


@app.command()
def deploy(
    spec_file: Annotated[
        Path | None, typer.Argument(help="Agent spec as YAML or JSON (flags override it)")
    ] = None,
    agent_id: Annotated[str | None, typer.Option("--id", help="Agent id")] = None,
    level: Annotated[
        str | None, typer.Option(help="L1, L2 or L3 (default: one below --parent's, else L1)")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Human-readable name")] = None,
    role: Annotated[str | None, typer.Option(help="Role description")] = None,
    task: Annotated[str | None, typer.Option(help="The task")] = None,
    command: Annotated[
        str | None,
        typer.Option(help="Program and arguments, split like a shell would (never run by one)"),
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", metavar="<name=value>", help="For the agent (repeatable)"),
    ] = None,
    workdir: Annotated[Path | None, typer.Option(help="Working directory")] = None,
    runner: Annotated[str | None, typer.Option(help="Runner name")] = None,
    max_iterations: Annotated[int | None, typer.Option(help="Iterations")] = None,
    timeout_seconds: Annotated[
        int | None, typer.Option(help="Deadline (default: the parent's remaining time, or 300)")
    ] = None,
    restart: Annotated[str | None, typer.Option(help="permanent|transient|temporary")] = None,
    parent: Annotated[
        str | None, typer.Option(help="Deploy as a child of this (running) agent")
    ] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
    timeout: TimeoutOpt = 30,
) -> None:
    """Deploy an agent from a spec file and/or flags.

    Under --parent, the level is one below the parent's unless given.
    """
    try:
        data: dict[str, Any] = load_spec(spec_file) if spec_file else {}
    except SpecError as exc:
        fail(str(exc), USAGE)
    flags = {
        "id": agent_id,
        "level": level,
        "name": name,
        "role": role,
        "task": task,
        "runner": runner,
        "max_iterations": max_iterations,
        "timeout_seconds": timeout_seconds,
        "restart": restart,
    }
    data.update({k: v for k, v in flags.items() if v is not None})
    if command is not None:
        try:
            data["command"] = shlex.split(command)
        except ValueError as exc:
            fail(f"--command: {exc}", USAGE)
    if env:
        data["env"] = {**(data.get("env") or {}), **_env_pairs(env)}
    if workdir is not None:
        data["context"] = {**(data.get("context") or {}), "working_directory": str(workdir)}
    base = spec_file.parent if spec_file else Path.cwd()
    level_given = "level" in data
    try:
        spec = validate(complete(data, base), str(spec_file or "agent spec"))
    except SpecError as exc:
        fail(str(exc), USAGE)
    home_dir = home_of(home)

    async def job(client: AgentDeploymentClient) -> DeploymentResponse:
        nonlocal spec
        if parent is not None:  # never a silent top-level deploy under a mistyped parent
            found = await client.check_agent_status(parent, timeout=timeout)
            if found.code is not None:  # not found, no coordinator: nothing to deploy under
                return found
            if not level_given:  # one below the parent's, as in a tree file
                level = child_level((found.agent or {}).get("level"))
                spec = spec.model_copy(update={"level": level})
        return await client.deploy_agent(spec, timeout=timeout)

    response: DeploymentResponse = run_client(home_dir, job, parent or "cli")
    no_coordinator_exit(response, home_dir)
    if parent is not None and response.code == "not_found" and response.agent_id == parent:
        fail(f"parent agent {parent!r} does not exist: nothing was deployed", NOT_FOUND)
    finish(response, as_json)


@app.command()
def status(
    agent_id: AgentIdArg, home: HomeOpt = None, as_json: JsonOpt = False, timeout: TimeoutOpt = 10
) -> None:
    """Show one agent: state, pid, parent, children.

    Also its restarts, why it ended, and its usage. Exit 0 whatever its state.
    """
    response = call(home_of(home), "check_agent_status", agent_id, timeout=timeout)
    agent = response.agent
    if response.code is not None or not agent:  # not found, no answer, ...
        finish(response, as_json)
    if as_json:  # found: exit 0, whatever state it is in
        print_json(response.model_dump(mode="json"))
        return
    for line in _output.status_lines(agent_id, agent):
        out.print(line)


@app.command()
def terminate(
    agent_id: AgentIdArg, home: HomeOpt = None, as_json: JsonOpt = False, timeout: TimeoutOpt = 60
) -> None:
    """Stop an agent and its whole subtree, children first.

    Its record stays (status, logs), and its id can be deployed again.
    """
    finish(call(home_of(home), "terminate_agent", agent_id, timeout=timeout), as_json)


@app.command()
def restart(
    agent_id: AgentIdArg, home: HomeOpt = None, as_json: JsonOpt = False, timeout: TimeoutOpt = 60
) -> None:
    """Stop an agent (subtree first) and start it afresh."""
    finish(call(home_of(home), "restart_agent", agent_id, timeout=timeout), as_json)


AllOpt = Annotated[bool, typer.Option("--all", "-a", help="Include finished agents")]
UsageOpt = Annotated[bool, typer.Option("--usage", "-u", help="Show rss, cpu, processes")]


def _agents(home: Path, show_all: bool, timeout: float) -> list[dict[str, Any]]:
    response = call(home, "list_agents", timeout=timeout)
    if response.status == "failed":
        finish(response, False)
    agents = response.agents or []
    return agents if show_all else [a for a in agents if a.get("state") in _output.LIVE]


@app.command("list")
def list_agents(
    show_all: AllOpt = False,
    with_usage: UsageOpt = False,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
    timeout: TimeoutOpt = 10,
) -> None:
    """List running agents, one line each.

    With --all, finished ones too, with why they ended.
    """
    agents = _agents(home_of(home), show_all, timeout)
    if as_json:
        print_json(agents)
        return
    for agent in agents:
        out.print(_output.list_line(agent, with_usage))


@app.command()
def tree(
    show_all: AllOpt = False,
    with_usage: UsageOpt = False,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
    timeout: TimeoutOpt = 10,
) -> None:
    """Show the hierarchy of running agents.

    With --all, finished ones too.
    """
    agents = _agents(home_of(home), show_all, timeout)
    if as_json:
        print_json(_output.nest(agents))
        return
    root = Tree(f"[bold]ziggie[/] ({escape(str(home_of(home)))})")
    for node in _output.nest(agents):
        _output.render(root, node, with_usage)
    # A tree is not wrapped like text: a pipe gets whole lines, a terminal its width.
    wide = out if out.is_terminal else Console(width=4096, highlight=False)
    wide.print(root, crop=False)


def _exit_of(agent: dict[str, Any]) -> int:
    if agent.get("exit_code") is not None:
        return int(agent["exit_code"])
    if agent.get("signal") is not None:
        return 128 + int(agent["signal"])  # as a shell reports a signal
    return 0 if agent.get("state") == "completed" else 1


@app.command()
def wait(
    agent_id: AgentIdArg,
    home: HomeOpt = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Give up after this many seconds")
    ] = None,
    interval: Annotated[float, typer.Option(help="Seconds between looks")] = 0.1,
) -> None:
    """Block until the agent ends; exit with its exit code.

    An agent killed by signal N exits 128+N, as a shell reports it.
    \f
    A look is one status round trip (well under a millisecond): cheap enough to repeat.
    """
    home_dir = home_of(home)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        response = call(home_dir, "check_agent_status", agent_id, timeout=10)
        if response.code == "not_found":
            fail(f"no agent {agent_id!r}", NOT_FOUND)
        agent = response.agent or {}
        if response.code is None and _output.ended_for_good(agent):
            why = _output.ending(agent)
            suffix = f" ({escape(why)})" if why else ""
            err.print(f"{escape(agent_id)} {agent.get('state')}{suffix}")
            raise typer.Exit(_exit_of(agent))
        if deadline is not None and time.monotonic() > deadline:
            fail(f"{agent_id!r} is still {agent.get('state')} after {timeout:g} s", 1)
        time.sleep(interval)
