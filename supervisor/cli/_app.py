"""``ziggie``: serve the file queue, and deploy, inspect and stop agents through it.

The commands live beside this module, one job each: :mod:`._agents` (deploy, status,
terminate, restart, list, tree, wait), :mod:`._logs` (logs, events) and :mod:`._ops`
(serve, stop, apply, diff, prune, dashboard). Exit codes: see :mod:`._common`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from . import _agents, _logs, _ops  # noqa: F401 - their commands register on the app
from ._common import Remote, app, out


def _version() -> str:
    try:
        return version("ziggie")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        out.print(f"ziggie {_version()}")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version"),
    ] = False,
    url: Annotated[
        str | None,
        typer.Option("--url", help="Drive a coordinator over its HTTP API (else $ZIGGIE_URL)"),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token", help="API token (else $ZIGGIE_API_TOKEN, $ZIGGIE_AGENT_TOKEN, the home's)"
        ),
    ] = None,
) -> None:
    """A supervision runtime for nested AI agents (L1 -> L2 -> L3)."""
    Remote.url, Remote.token = url, token


def main() -> None:
    app()


if __name__ == "__main__":
    main()
