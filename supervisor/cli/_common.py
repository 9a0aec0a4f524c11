"""What every command shares: the app, the home, exit codes, client calls, error output.

Exit codes come from the answer's machine-readable ``code``, never from message text:
0 ok; 1 the coordinator answered ``failed``; 2 bad usage or input; 3 no coordinator
serves the home; 4 no such agent. (``ziggie wait`` exits with the agent's own code.)
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import anyio
import typer
from pydantic import ValidationError
from rich.console import Console

from supervisor.client import AgentDeploymentClient
from supervisor.protocol import DeploymentResponse

from ._output import escape

app = typer.Typer(
    name="ziggie",
    help="A supervision runtime for nested AI agents (L1 -> L2 -> L3).",
    no_args_is_help=True,
    add_completion=False,
    # Plain help, as click writes it: rich panels would print docstrings' markup as is
    # and label every flag with a type ("--json <bool>").
    rich_markup_mode=None,
    pretty_exceptions_enable=False,  # a traceback is for bugs, never for user mistakes
)
# soft_wrap: a long message (with a command to copy) is never broken mid-command.
out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)

OK, FAILED, USAGE, NOT_RUNNING, NOT_FOUND = 0, 1, 2, 3, 4
_EXIT_OF_CODE = {"not_found": NOT_FOUND, "no_coordinator": NOT_RUNNING, "invalid_request": USAGE}

HomeOpt = Annotated[
    Path | None,
    typer.Option("--home", help="Coordinator home (default: $ZIGGIE_HOME, else ./.ziggie)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]
AgentIdArg = Annotated[str, typer.Argument(help="The agent's id")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Seconds to wait for an answer")]


def home_of(home: Path | None) -> Path:
    if home is not None:
        return home
    return Path(os.environ.get("ZIGGIE_HOME") or ".ziggie")


def fail(message: str, code: int) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def exit_code_of(response: DeploymentResponse) -> int:
    if response.status != "failed":
        return OK
    return _EXIT_OF_CODE.get(response.code or "", FAILED)


class Remote:
    """``--url``/``--token`` (or ``ZIGGIE_URL`` and a token variable): drive over HTTP."""

    url: str | None = None
    token: str | None = None


def client_for(home: Path, parent: str = "cli") -> AgentDeploymentClient:
    return AgentDeploymentClient(home / "agent-queue", parent_agent=parent)


def run_client(home: Path, job: Callable[[Any], Awaitable[Any]], parent: str = "cli") -> Any:
    """Run *job* with a client of *home* (or of ``--url``) on one event loop, then close it."""
    url = Remote.url or os.environ.get("ZIGGIE_URL")

    async def main() -> Any:
        if url:
            from supervisor.client import HttpAgentClient

            token = Remote.token or os.environ.get("ZIGGIE_API_TOKEN")
            token = token or os.environ.get("ZIGGIE_AGENT_TOKEN") or _home_token(home)
            async with HttpAgentClient(url, token, parent_agent=parent) as remote:
                return await job(remote)
        async with client_for(home, parent) as client:
            return await job(client)

    return anyio.run(main)


def _home_token(home: Path) -> str | None:
    try:
        return (home / "api-token").read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def call(home: Path, method: str, *args: Any, timeout: float) -> DeploymentResponse:
    """One client call; no coordinator is exit 3 with how to start one."""

    async def job(client: AgentDeploymentClient) -> DeploymentResponse:
        response: DeploymentResponse = await getattr(client, method)(*args, timeout=timeout)
        return response

    response: DeploymentResponse = run_client(home, job)
    no_coordinator_exit(response, home)
    return response


def no_coordinator_exit(response: DeploymentResponse, home: Path) -> None:
    if response.code == "no_coordinator":
        fail(
            f"no coordinator is running at {home} (start one: ziggie serve --home {home})",
            NOT_RUNNING,
        )


def validation_message(exc: ValidationError) -> str:
    """``field.path: message`` per error: no pydantic URLs, no input dumps."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(x) for x in error["loc"])
        parts.append(f"{where}: {error['msg']}" if where else str(error["msg"]))
    return "; ".join(parts)
