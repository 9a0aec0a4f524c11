"""``ziggie``: serve the file queue, and deploy, inspect and stop agents through it.

Exit codes: 0 success; 1 the coordinator answered ``failed``; 2 bad usage or input;
3 no coordinator is running at the home; 4 no such agent.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import anyio
import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.tree import Tree

from supervisor.client import AgentDeploymentClient
from supervisor.coordinator import CoordinatorRunning, Settings, coordinator_running, serve_home
from supervisor.protocol import AgentSpec, DeploymentResponse

app = typer.Typer(
    name="ziggie",
    help="A supervision runtime for nested AI agents (L1 -> L2 -> L3).",
    no_args_is_help=True,
    add_completion=False,
)
out = Console()
err = Console(stderr=True)

NOT_RUNNING, NOT_FOUND = 3, 4

HomeOpt = Annotated[
    Path | None,
    typer.Option("--home", help="Coordinator home (default: $ZIGGIE_HOME, else ./.ziggie)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the raw JSON response")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Seconds to wait for an answer")]


def _home(home: Path | None) -> Path:
    if home is not None:
        return home
    return Path(os.environ.get("ZIGGIE_HOME") or ".ziggie")


def _fail(message: str, code: int) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _require_coordinator(home: Path) -> None:
    if not coordinator_running(home):
        _fail(
            f"no coordinator is running at {home} (start one: ziggie serve --home {home})",
            NOT_RUNNING,
        )


def _call(home: Path, method: str, *args: Any, timeout: float) -> DeploymentResponse:
    _require_coordinator(home)
    client = AgentDeploymentClient(home / "agent-queue", parent_agent="cli")

    async def run() -> DeploymentResponse:
        try:
            result: DeploymentResponse = await getattr(client, method)(*args, timeout=timeout)
            return result
        finally:
            client.close()

    return anyio.run(run)


def _finish(response: DeploymentResponse, as_json: bool) -> None:
    if as_json:
        out.print_json(response.model_dump_json())
    else:
        colour = "red" if response.status == "failed" else "green"
        out.print(f"[{colour}]{response.status}[/] {response.agent_id}: {response.message}")
        if response.pid:
            out.print(f"  pid: {response.pid}")
        if response.output_log:
            out.print(f"  log: {response.output_log}")
        if response.error:
            out.print(f"  error: {response.error}")
    if response.status == "failed":
        raise typer.Exit(NOT_FOUND if response.code == "not_found" else 1)


# -- serve -----------------------------------------------------------------------------


@app.command()
def serve(
    home: HomeOpt = None,
    config: Annotated[Path | None, typer.Option(help="TOML settings file")] = None,
    runner: Annotated[str | None, typer.Option(help="Default runner (demo, claude, ...)")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Deploys handled at once")] = None,
    polling: Annotated[bool | None, typer.Option(help="Poll instead of inotify")] = None,
    quiet: Annotated[bool, typer.Option(help="Events to the events file only")] = False,
    http: Annotated[
        str | None, typer.Option(help="Also serve the REST API at HOST:PORT (port 0: any)")
    ] = None,
    http_public: Annotated[
        bool, typer.Option("--http-public", help="Allow --http on a non-loopback address")
    ] = False,
) -> None:
    """Run the coordinator in the foreground until SIGINT or SIGTERM."""
    try:
        settings = Settings.load(
            config,
            home=home,
            default_runner=runner,
            concurrency=concurrency,
            polling=polling,
            http=http,
            http_public=http_public or None,
        )
    except (ValidationError, FileNotFoundError) as exc:
        _fail(str(exc), 2)
    if settings.http is not None:
        from supervisor.coordinator import check_http

        try:
            check_http(settings)
        except ValueError as exc:
            _fail(str(exc), 2)
    try:
        serve_home(settings, quiet=quiet)
    except CoordinatorRunning as exc:
        _fail(str(exc), 1)


# -- requests --------------------------------------------------------------------------


def _load_spec(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror}", 2)
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        _fail(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}", 2)
    if not isinstance(data, dict):
        _fail(f"{path} must hold one agent spec (a mapping)", 2)
    return data


@app.command()
def deploy(
    spec_file: Annotated[
        Path | None, typer.Argument(help="Agent spec as JSON or YAML (flags override it)")
    ] = None,
    agent_id: Annotated[str | None, typer.Option("--id", help="Agent id")] = None,
    level: Annotated[str | None, typer.Option(help="L1, L2 or L3")] = None,
    name: Annotated[str | None, typer.Option(help="Human-readable name")] = None,
    role: Annotated[str | None, typer.Option(help="Role description")] = None,
    task: Annotated[str | None, typer.Option(help="The task")] = None,
    workdir: Annotated[Path | None, typer.Option(help="Working directory")] = None,
    runner: Annotated[str | None, typer.Option(help="Runner name")] = None,
    max_iterations: Annotated[int | None, typer.Option(help="Iterations")] = None,
    timeout_seconds: Annotated[int | None, typer.Option(help="Agent deadline")] = None,
    restart: Annotated[str | None, typer.Option(help="permanent|transient|temporary")] = None,
    parent: Annotated[str, typer.Option(help="Deploy as a child of this agent")] = "cli",
    home: HomeOpt = None,
    as_json: JsonOpt = False,
    timeout: TimeoutOpt = 30,
) -> None:
    """Deploy an agent from a spec file and/or flags."""
    data: dict[str, Any] = _load_spec(spec_file) if spec_file else {}
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
    data.setdefault("level", "L1")
    data.setdefault("role", "agent")
    data.setdefault("name", data.get("id", "agent"))
    context = dict(data.get("context") or {})
    if workdir is not None or "working_directory" not in context:
        context["working_directory"] = str((workdir or Path.cwd()).absolute())
    data["context"] = context
    try:
        spec = AgentSpec.model_validate(data)
    except ValidationError as exc:
        _fail(f"invalid agent spec: {exc}", 2)
    home_dir = _home(home)
    _require_coordinator(home_dir)
    client = AgentDeploymentClient(home_dir / "agent-queue", parent_agent=parent)
    response = anyio.run(lambda: client.deploy_agent(spec, timeout=timeout))
    client.close()
    _finish(response, as_json)


@app.command()
def status(
    agent_id: str, home: HomeOpt = None, as_json: JsonOpt = False, timeout: TimeoutOpt = 10
) -> None:
    """Status of one agent: state, pid, exit, restarts, parent, children, usage."""
    response = _call(_home(home), "check_agent_status", agent_id, timeout=timeout)
    if as_json or response.status == "failed" or not response.agent:
        _finish(response, as_json)
        return
    detail = response.agent
    out.print(f"[bold]{agent_id}[/] ({detail.get('level')}) [green]{detail.get('state')}[/]")
    for key in (
        "pid",
        "parent_id",
        "children",
        "restarts",
        "exit_code",
        "signal",
        "outcome",
        "reason",
        "uptime",
        "cpu_seconds",
        "rss_bytes",
        "path",
        "log",
    ):
        if detail.get(key) not in (None, [], ""):
            out.print(f"  {key}: {detail[key]}")


@app.command()
def terminate(
    agent_id: str, home: HomeOpt = None, as_json: JsonOpt = False, timeout: TimeoutOpt = 60
) -> None:
    """Stop an agent and its whole subtree, children first."""
    _finish(_call(_home(home), "terminate_agent", agent_id, timeout=timeout), as_json)


@app.command()
def restart(
    agent_id: str, home: HomeOpt = None, as_json: JsonOpt = False, timeout: TimeoutOpt = 60
) -> None:
    """Stop an agent (subtree first) and start it afresh."""
    _finish(_call(_home(home), "restart_agent", agent_id, timeout=timeout), as_json)


@app.command("list")
def list_agents(home: HomeOpt = None, as_json: JsonOpt = False, timeout: TimeoutOpt = 10) -> None:
    """Every agent the coordinator knows, one line each."""
    response = _call(_home(home), "list_agents", timeout=timeout)
    if as_json:
        out.print_json(json.dumps(response.agents or []))
        return
    for agent in response.agents or []:
        out.print(
            f"{agent['agent_id']:<24} {agent['level']}  {agent['state']:<10} "
            f"pid={agent.get('pid')}  parent={agent.get('parent_id') or '-'}"
        )


@app.command()
def tree(home: HomeOpt = None, as_json: JsonOpt = False, timeout: TimeoutOpt = 10) -> None:
    """The live hierarchy: level, state, pid, uptime, restarts."""
    response = _call(_home(home), "list_agents", timeout=timeout)
    agents = response.agents or []
    if as_json:
        out.print_json(json.dumps(_nest(agents)))
        return
    root = Tree(f"[bold]ziggie[/] ({_home(home)})")
    for node in _nest(agents):
        _render(root, node)
    out.print(root)


def _nest(agents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_parent: dict[str | None, list[dict[str, Any]]] = {}
    ids = {a["agent_id"] for a in agents}
    for agent in agents:
        parent = agent.get("parent_id")
        by_parent.setdefault(parent if parent in ids else None, []).append(agent)

    def build(agent: dict[str, Any]) -> dict[str, Any]:
        return {**agent, "children": [build(c) for c in by_parent.get(agent["agent_id"], [])]}

    return [build(a) for a in by_parent.get(None, [])]


def _render(parent: Tree, node: dict[str, Any]) -> None:
    colour = {"running": "green", "failed": "red", "timed_out": "yellow"}.get(node["state"], "dim")
    uptime = f" up {node['uptime']:.1f}s" if node.get("uptime") else ""
    label = (
        f"[bold]{node['agent_id']}[/] {node['level']} [{colour}]{node['state']}[/]"
        f" pid={node.get('pid') or '-'}{uptime} restarts={node.get('restarts', 0)}"
    )
    branch = parent.add(label)
    for child in node["children"]:
        _render(branch, child)


def _follow(path: Path, follow: bool) -> None:
    with open(path, encoding="utf-8", errors="replace") as f:
        sys.stdout.write(f.read())
        sys.stdout.flush()
        while follow:
            line = f.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                time.sleep(0.2)


@app.command()
def logs(
    agent_id: str,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing")] = False,
    home: HomeOpt = None,
) -> None:
    """Print an agent's output log."""
    response = _call(_home(home), "check_agent_status", agent_id, timeout=10)
    if response.code == "not_found":
        _fail(f"no agent {agent_id!r}", NOT_FOUND)
    if not response.output_log or not Path(response.output_log).exists():
        _fail(f"agent {agent_id!r} has no log yet", 1)
    with contextlib.suppress(KeyboardInterrupt):
        _follow(Path(response.output_log), follow)


@app.command()
def events(
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing")] = False,
    home: HomeOpt = None,
) -> None:
    """Print the coordinator's JSON lifecycle events, one object a line."""
    path = _home(home) / "events.jsonl"
    if not path.exists():
        _fail(f"no events at {path}: has a coordinator run there?", NOT_RUNNING)
    with contextlib.suppress(KeyboardInterrupt):
        _follow(path, follow)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
