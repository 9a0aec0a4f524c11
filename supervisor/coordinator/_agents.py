"""From an :class:`AgentSpec` to a supervised process: home layout, definition, checks."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from actors import log_path_for, process_spec
from supervisor import ChildSpec, Restart, Shutdown, ZiggieError
from supervisor.protocol import DIRECTORIES, AgentSpec, definition_text, write_atomic

from ._runners import Runner, resolve_argv


class AgentRefused(ZiggieError, ValueError):
    """The spec cannot be deployed as it stands; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class AgentHome:
    """The coordinator's home, in the seed's layout; directories are created 0700."""

    root: Path

    @property
    def queue(self) -> Path:
        return self.root / "agent-queue"

    @property
    def logs(self) -> Path:
        return self.root / "agent-logs"

    @property
    def definitions(self) -> Path:
        return self.root / ".claude" / "agents"

    def ensure(self) -> AgentHome:
        for sub in DIRECTORIES:
            _mkdir(self.queue / sub)
        _mkdir(self.logs)
        _mkdir(self.definitions)
        return self

    @classmethod
    def at(cls, root: str | os.PathLike[str]) -> AgentHome:
        return cls(Path(root).absolute()).ensure()


def _mkdir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


def program_allowed(program: str, allowed: list[str]) -> bool:
    """``python3.11`` is allowed by ``python3`` or ``python``: version suffixes are ignored."""
    base = os.path.basename(program)
    return any(base == name or re.fullmatch(re.escape(name) + r"[0-9.]*", base) for name in allowed)


def check_deployable(spec: AgentSpec, argv: list[str]) -> None:
    """Refuse, with a message naming the field, what cannot run as specified."""
    wd = Path(spec.context.working_directory)
    if not wd.exists():
        raise AgentRefused(f"context.working_directory {str(wd)!r} does not exist")
    if not wd.is_dir():
        raise AgentRefused(f"context.working_directory {str(wd)!r} is not a directory")
    allowed = spec.context.permissions.execute
    if allowed and not program_allowed(argv[0], allowed):
        raise AgentRefused(
            f"program {os.path.basename(argv[0])!r} is not in permissions.execute {allowed}"
        )


def agent_child_spec(
    spec: AgentSpec,
    home: AgentHome,
    runners: Mapping[str, Runner],
    *,
    parent_id: str | None = None,
    default_runner: str = "demo",
    default_restart: Restart = Restart.TEMPORARY,
    log_max_bytes: int = 10 * 2**20,
    nested: bool = True,
    extra_env: Mapping[str, str] | None = None,
) -> ChildSpec:
    """Validate *spec*, write its definition file, and return the child spec that runs it."""
    definition = home.definitions / f"{spec.id}.md"
    argv = resolve_argv(spec, definition, runners, default_runner)
    check_deployable(spec, argv)
    write_atomic(definition, definition_text(spec, parent_id))
    env = {
        **os.environ,
        **spec.env,
        "ZIGGIE_AGENT_ID": spec.id,
        "ZIGGIE_LEVEL": spec.level,
        "ZIGGIE_HOME": str(home.root),
        "ZIGGIE_DEFINITION": str(definition),
        "ZIGGIE_MAX_ITERATIONS": str(spec.max_iterations),
        "PYTHONUNBUFFERED": "1",
    }
    # Never inherited from the coordinator's own environment: set here or not at all.
    for name in ("ZIGGIE_PARENT_ID", "ZIGGIE_URL", "ZIGGIE_AGENT_TOKEN"):
        env.pop(name, None)
    if parent_id is not None:
        env["ZIGGIE_PARENT_ID"] = parent_id
    env.update(extra_env or {})
    return process_spec(
        spec.id,
        argv,
        cwd=spec.context.working_directory,
        env=env,
        log_path=log_path_for(home.logs, spec.id),
        log_max_bytes=log_max_bytes,
        definition_path=definition,
        nested=nested and spec.level != "L3",
        max_children=spec.max_children,
        restart=Restart(spec.restart) if spec.restart else default_restart,
        shutdown=Shutdown.parse(spec.shutdown),
        timeout=float(spec.timeout_seconds),
        level=spec.level,
        meta={"name": spec.name},
    )
