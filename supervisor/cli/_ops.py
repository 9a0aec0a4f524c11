"""Commands on the coordinator and on whole trees: serve, stop, apply, diff, prune."""

from __future__ import annotations

import json
import os
import signal
import time
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from supervisor.client import AgentDeploymentClient
from supervisor.coordinator import (
    CoordinatorRunning,
    HomeUnusable,
    Settings,
    check_http,
    prune_home,
    serve_home,
)
from supervisor.protocol import (
    HTTP_FILE,
    LOCK_NAME,
    DeploymentRequest,
    coordinator_serves,
    lock_holder,
)

from . import _tree
from ._agents import print_json
from ._common import (
    FAILED,
    NOT_RUNNING,
    USAGE,
    HomeOpt,
    JsonOpt,
    TimeoutOpt,
    app,
    call,
    fail,
    home_of,
    no_coordinator_exit,
    out,
    run_client,
    validation_message,
)
from ._output import escape
from ._specs import SpecError, load_tree

ConfigOpt = Annotated[Path | None, typer.Option(help="TOML settings file")]


def load_settings(config: Path | None, **explicit: Any) -> Settings:
    """Settings, or exit 2 with what is wrong (a broken TOML file is no traceback)."""
    try:
        return Settings.load(config, **explicit)
    except ValidationError as exc:
        fail(f"invalid settings: {validation_message(exc)}", USAGE)
    except FileNotFoundError as exc:
        fail(str(exc), USAGE)
    except tomllib.TOMLDecodeError as exc:
        fail(f"{config} is not valid TOML: {exc}", USAGE)


@app.command()
def serve(
    home: HomeOpt = None,
    config: ConfigOpt = None,
    runner: Annotated[str | None, typer.Option(help="Default runner (demo, claude, ...)")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Deploys handled at once")] = None,
    polling: Annotated[bool | None, typer.Option(help="Poll instead of inotify")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="Events to the events file only")] = False,
    http: Annotated[
        str | None, typer.Option(help="Also serve the REST API at HOST:PORT (port 0: any)")
    ] = None,
    http_public: Annotated[
        bool, typer.Option("--http-public", help="Allow --http on a non-loopback address")
    ] = False,
    http_host: Annotated[
        list[str] | None,
        typer.Option(
            "--http-host",
            metavar="<host>",
            help="A host name the API also answers to (repeatable; on 0.0.0.0 the first"
            " is the URL agents get)",
        ),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(help="Place agents on a Ray cluster: HOST:PORT, auto, or local"),
    ] = None,
) -> None:
    """Run the coordinator in the foreground.

    It runs until SIGINT or SIGTERM (ziggie stop sends one).
    """
    settings = load_settings(
        config,
        home=home,
        default_runner=runner,
        concurrency=concurrency,
        polling=polling,
        http=http,
        http_public=http_public or None,
        http_hosts=http_host or None,
        ray=ray,
    )
    if settings.ray is not None:
        from supervisor.coordinator import check_ray

        try:
            check_ray(settings)
        except ValueError as exc:
            fail(str(exc), USAGE)
    if settings.http is not None:
        try:
            check_http(settings)
        except ValueError as exc:
            fail(str(exc), USAGE)
    try:
        serve_home(settings, quiet=quiet)
    except CoordinatorRunning as exc:
        fail(str(exc), FAILED)
    except HomeUnusable as exc:
        fail(str(exc), USAGE)


@app.command()
def stop(
    home: HomeOpt = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for it to finish")
    ] = 60,
) -> None:
    """Stop the coordinator serving the home.

    Every agent stops, children first. It signals (SIGTERM) the process holding the
    home's lock, as serve handles it; for an embedded coordinator that is the program
    embedding it. Which process holds the lock is the kernel's word (/proc/locks), never
    the pid written in the lock file.
    """
    home_dir = home_of(home)
    if not coordinator_serves(home_dir):
        fail(f"no coordinator is running at {home_dir}", NOT_RUNNING)
    pid = _signal_holder(home_dir)
    deadline = time.monotonic() + timeout
    while coordinator_serves(home_dir):  # its lock goes when its last agent has stopped
        if time.monotonic() > deadline:
            fail(f"the coordinator (pid {pid}) is still stopping after {timeout:g} s", FAILED)
        time.sleep(0.05)
    out.print(f"coordinator stopped (pid {pid})")


def _signal_holder(home: Path) -> int:
    """SIGTERM the process holding *home*'s lock; its pid. Pinned by a pidfd, then checked
    again, so a pid reused in between is never signalled."""
    pid = lock_holder(home)
    if pid is None:
        fail(f"cannot tell which process holds {home / LOCK_NAME}: nothing signalled", FAILED)
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        fail(f"the coordinator (pid {pid}) is gone", NOT_RUNNING)
    try:
        if lock_holder(home) != pid:
            fail(f"the coordinator (pid {pid}) let go of its lock: nothing signalled", FAILED)
        signal.pidfd_send_signal(pidfd, signal.SIGTERM)
    except ProcessLookupError:
        fail(f"the coordinator (pid {pid}) is gone", NOT_RUNNING)
    finally:
        os.close(pidfd)
    return pid


def _plan(tree_file: Path, home_dir: Path, timeout: float) -> tuple[list[Any], list[_tree.Step]]:
    try:
        declared = load_tree(tree_file)
    except SpecError as exc:
        fail(str(exc), USAGE)
    response = call(home_dir, "list_agents", timeout=timeout)
    live = {a["agent_id"]: a for a in response.agents or []}
    return declared, _tree.plan(declared, _tree.read_state(home_dir), live)


_MARKS = {"add": "+", "remove": "-", "change": "~", "restart": "~", "keep": "="}


def _line(step: _tree.Step) -> str:
    why = f" ({escape(step.why)})" if step.why else ""
    return f"{_MARKS[step.action]} {step.action:<8} {escape(step.agent_id)}{why}"


def _show(steps: list[_tree.Step], include_keep: bool) -> None:
    for step in steps:
        if step.action != "keep" or include_keep:
            out.print(_line(step))


def _outcome(done: _tree.Done) -> str:
    """How the agent ended up: its state, and whether its previous version came back."""
    state = done.state or "unknown"
    if done.restored is not None:
        ok = done.restored.status != "failed"
        return f"{state}, previous version {'restored' if ok else 'not restored'}"
    return state


def _show_done(done: list[_tree.Done]) -> None:
    for d in done:
        out.print(f"{_line(d.step)}: {escape(_outcome(d))}")
    for d in done:
        for answer, what in ((d.answer, ""), (d.restored, " (its previous version)")):
            if d.failed and answer is not None and answer.status == "failed":
                why = answer.error or answer.message
                out.print(f"[red]failed[/] {escape(d.step.agent_id)}{what}: {escape(why)}")


@app.command()
def diff(
    tree_file: Annotated[Path, typer.Argument(help="The tree file (YAML or JSON)")],
    home: HomeOpt = None,
    as_json: JsonOpt = False,
    timeout: TimeoutOpt = 10,
) -> None:
    """Show what ziggie apply would do with the tree file.

    Exit 0 if nothing, 1 if something.
    """
    _, steps = _plan(tree_file, home_of(home), timeout)
    if as_json:
        print_json([{"action": s.action, "agent_id": s.agent_id, "why": s.why} for s in steps])
    else:
        _show(steps, include_keep=False)
    if any(s.action != "keep" for s in steps):
        raise typer.Exit(FAILED)


@app.command()
def apply(
    tree_file: Annotated[Path, typer.Argument(help="The tree file (YAML or JSON)")],
    home: HomeOpt = None,
    as_json: JsonOpt = False,
    timeout: TimeoutOpt = 60,
) -> None:
    """Deploy a tree file; applied again, change only what changed.

    A changed agent is stopped and deployed again; if its new version cannot be
    deployed, its previous one is put back. Each line ends with the state the agent
    ended in. Exit 1 if any agent is not as declared.
    """
    home_dir = home_of(home)
    declared, steps = _plan(tree_file, home_dir, timeout)

    async def job(client: AgentDeploymentClient) -> Any:
        return await _tree.execute(client, steps, timeout)

    done: list[_tree.Done] = run_client(home_dir, job)
    _tree.write_state(home_dir, declared, done)
    if as_json:
        print_json(
            [
                {
                    "action": d.step.action,
                    "agent_id": d.step.agent_id,
                    "why": d.step.why,
                    "state": d.state,
                    "answer": d.answer.model_dump(mode="json") if d.answer else None,
                    "restored": d.restored.model_dump(mode="json") if d.restored else None,
                }
                for d in done
            ]
        )
    else:
        _show_done(done)
    if any(d.failed for d in done):
        raise typer.Exit(FAILED)


@app.command()
def prune(
    home: HomeOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    timeout: TimeoutOpt = 60,
) -> None:
    """Drop what the retention settings no longer keep.

    Finished agents, old answers, archived requests, journal rows; a large events file
    is rotated.
    """
    home_dir = home_of(home)
    if not (home_dir / "agent-queue").is_dir():  # a mistyped home: say so, touch nothing
        fail(f"no ziggie home at {home_dir} (no agent-queue there)", NOT_RUNNING)
    if coordinator_serves(home_dir):  # the coordinator prunes its own journal

        async def job(client: AgentDeploymentClient) -> Any:
            request = DeploymentRequest(parent_agent="cli", action="prune")
            return await client.submit(request, timeout=timeout)

        response = run_client(home_dir, job)
        no_coordinator_exit(response, home_dir)
        if response.status == "failed":
            fail(response.error or response.message, FAILED)
        report = response.agent or {}
    else:
        settings = load_settings(config, home=home_dir)
        report = prune_home(settings)
    if as_json:
        print_json(report)
    else:
        for key, value in report.items():
            out.print(f"{key}: {value}")


@app.command()
def dashboard(
    home: HomeOpt = None,
    open_it: Annotated[bool, typer.Option("--open", help="Open it in a browser")] = False,
) -> None:
    """Print the dashboard's link, with the operator token.

    The token is in the link's fragment, which a browser never sends to the server.
    """
    home_dir = home_of(home)
    try:
        info = json.loads((home_dir / HTTP_FILE).read_text(encoding="utf-8"))
        token = (home_dir / "api-token").read_text(encoding="utf-8").strip()
    except (OSError, ValueError):
        fail(
            f"no HTTP API serves {home_dir} (start one: ziggie serve --home {home_dir}"
            " --http 127.0.0.1:0)",
            NOT_RUNNING,
        )
    # The fragment never reaches the server: the page moves it into a header.
    link = f"{info['url']}/#token={token}"
    out.print(link)
    if open_it:
        import webbrowser

        webbrowser.open(link)
