"""Runners turn an agent spec into an argv. They are plain callables, named in a mapping
that each coordinator owns (``Coordinator(..., runners=...)``), never a global.

A runner never builds a shell line and never pastes the task into code: the task reaches
the program as one argv element (claude) or through the definition file (demo).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from supervisor.protocol import AgentSpec

Runner = Callable[[AgentSpec, Path], list[str]]
"""``runner(spec, definition_path) -> argv``."""


def demo_runner(spec: AgentSpec, definition: Path) -> list[str]:
    """The built-in demo agent, run unbuffered by this very interpreter."""
    return [sys.executable, "-u", "-m", "supervisor.agents.demo"]


def _directory_of(pattern: str) -> str:
    # "C:/Ziggie/**" or "/srv/data/*.md" -> the directory before the first glob character.
    for i, ch in enumerate(pattern):
        if ch in "*?[":
            head = pattern[:i]
            return head.rsplit("/", 1)[0] or "/" if "/" in head else "."
    return pattern


def claude_runner(spec: AgentSpec, definition: Path) -> list[str]:
    """``claude -p``: tools, turns and directories map over; the task is the prompt.

    The task comes last, after ``--``: a task that reads like a flag (say
    ``--dangerously-skip-permissions``) stays one positional argument, never an option
    (issue 10, item 8).
    """
    argv = ["claude", "-p", "--max-turns", str(spec.max_iterations)]
    if spec.tools:
        argv += ["--allowedTools", ",".join(spec.tools)]
    dirs: list[str] = []
    for pattern in [*spec.context.permissions.read, *spec.context.permissions.write]:
        directory = _directory_of(pattern)
        if directory not in dirs:
            dirs.append(directory)
    for directory in dirs:
        argv += ["--add-dir", directory]
    argv += ["--append-system-prompt", f"You are {spec.name}, {spec.role} ({spec.level})."]
    argv += ["--", spec.task]
    return argv


def default_runners() -> dict[str, Runner]:
    """The built-in runners, as a fresh mapping a coordinator may extend."""
    return {"demo": demo_runner, "claude": claude_runner}


def resolve_argv(
    spec: AgentSpec,
    definition: Path,
    runners: Mapping[str, Runner],
    default_runner: str = "demo",
) -> list[str]:
    """The exact argv: ``spec.command`` if given, else the named (or default) runner's."""
    if spec.command:
        return list(spec.command)
    name = spec.runner or default_runner
    try:
        runner = runners[name]
    except KeyError:
        known = ", ".join(sorted(runners))
        raise ValueError(f"unknown runner {name!r} (known: {known})") from None
    return runner(spec, definition)
