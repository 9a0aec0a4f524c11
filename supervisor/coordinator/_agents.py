"""From an :class:`AgentSpec` to a supervised process: home layout, definition, checks."""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from actors import cgroup_controllers, log_path_for, process_spec
from supervisor import (
    AutoShutdown,
    Backoff,
    ChildContext,
    ChildSpec,
    ChildState,
    Restart,
    Runtime,
    Shutdown,
    StopOrder,
    supervisor_spec,
    validate_id,
)
from supervisor.protocol import (
    DIRECTORIES,
    LOCK_NAME,
    PROCESSING,
    REQUESTS,
    RESPONSES,
    AgentSpec,
    definition_text,
    write_atomic,
)

from ._confinement import AgentPaths, agent_environment, compile_confinement
from ._replies import AgentRefused, wrapper_id
from ._runners import Runner, resolve_argv
from ._settings import Settings

#: The agents' directories: under the home, and under the operator's ``processing/`` and
#: ``archive/<day>/``, where no request file (``*.request.json``) can take the name.
AGENTS: Final = "agents"


@dataclass(frozen=True, slots=True)
class AgentHome:
    """The coordinator's home, in the seed's layout; directories are created 0700.

    ``agent-queue/`` is the operator's queue. Each agent has a directory of its own,
    ``agents/<id>/`` (its ``ZIGGIE_HOME``): ``agent-queue/requests/`` and ``responses/``
    (its own queue: a request found there is that agent's), ``tmp/`` and ``home/``.
    What the coordinator claims from an agent's queue goes to ``agent-queue/processing/
    agents/<id>/``, then ``agent-queue/archive/<day>/agents/<id>/``: out of its reach.
    """

    root: Path

    @property
    def queue(self) -> Path:
        """The operator's queue."""
        return self.root / "agent-queue"

    @property
    def agents(self) -> Path:
        """Where every agent's own directory is."""
        return self.root / AGENTS

    def agent_dir(self, agent_id: str) -> Path:
        """*agent_id*'s private directory (its ``HOME``, ``TMPDIR`` and own queue): the
        only part of the home its confinement lets it touch. A validated id: it names one
        path component."""
        return self.agents / validate_id(agent_id)

    def agent_queue(self, agent_id: str) -> Path:
        """*agent_id*'s own queue: ``requests/`` in, ``responses/`` out."""
        return self.agent_dir(agent_id) / "agent-queue"

    def agent_processing(self, agent_id: str) -> Path:
        """Where requests claimed from *agent_id*'s queue wait for their answer."""
        return self.queue / PROCESSING / AGENTS / validate_id(agent_id)

    @property
    def serving_lock(self) -> Path:
        """The lock a coordinator holds while it serves the agents' queues (a fresh file
        each run; no agent id starts with a dot)."""
        return self.agents / ".lock"

    def ensure_agent(self, agent_id: str) -> Path:
        """Create *agent_id*'s directory and its queue, ``tmp/`` and ``home/`` (0700);
        its path. Made afresh where missing; an existing one is kept as it is.

        The serving lock is linked in as ``coordinator.lock``: clients inside the agent
        (the seed's and ours) probe it to see that a coordinator serves their queue.
        """
        _mkdir(self.agents)
        top = self.agent_dir(agent_id)
        queue = top / "agent-queue"
        for path in (top, queue, queue / REQUESTS, queue / RESPONSES, top / "tmp", top / "home"):
            _mkdir(path, links=False)
        tmp = top / f".{LOCK_NAME}.{secrets.token_hex(8)}"
        try:
            os.link(self.serving_lock, tmp, follow_symlinks=False)
        except FileNotFoundError:
            return top  # no coordinator serves this home: nothing to link
        try:  # replaces whatever is there: an older run's link, or anything planted
            os.replace(tmp, top / LOCK_NAME)
        except OSError:
            tmp.unlink(missing_ok=True)  # its own doing (a directory there): it is unserved
        return top

    @property
    def logs(self) -> Path:
        return self.root / "agent-logs"

    @property
    def definitions(self) -> Path:
        return self.root / ".claude" / "agents"

    def ensure(self) -> AgentHome:
        # Issue 10, item 11: each level made on its own, 0700. ``mkdir(parents=True)``
        # gives the parents it creates the default mode (0755 under umask 022): that is
        # how agent-queue/ and .claude/ were world-readable.
        if not self.root.is_dir():  # a home we create is ours; an existing one keeps its mode
            self.root.parent.mkdir(parents=True, exist_ok=True)
            _mkdir(self.root)
        _mkdir(self.queue)
        for sub in DIRECTORIES:
            _mkdir(self.queue / sub)
        _mkdir(self.logs)
        _mkdir(self.definitions.parent)
        _mkdir(self.definitions)
        _mkdir(self.agents)
        return self

    @classmethod
    def at(cls, root: str | os.PathLike[str]) -> AgentHome:
        return cls(Path(root).absolute()).ensure()


def _mkdir(path: Path, *, links: bool = True) -> None:
    """*path* as a 0700 directory (its parent exists); an older home's 0755 is repaired.

    Not *links*: never through a symlink, as in an agent's own directory, where it may
    have planted one (the operator may link the home's own directories elsewhere).
    """
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        if not links and (path.is_symlink() or not path.is_dir()):
            raise NotADirectoryError(f"{path} is not a directory") from None
        if not path.is_dir():
            raise
    path.chmod(0o700)  # mkdir's mode is filtered by the umask, and an old one is kept


def resolve_program(argv: list[str], cwd: Path) -> list[str]:
    """*argv* with its program made an absolute path (issue 10, item 10).

    Resolved here, with the coordinator's own ``PATH`` (a spec may not set one), so the
    execute check judges the very file that will run, and nothing at spawn time can pick
    another. A program named with a ``/`` is taken relative to the working directory, as
    exec would after the child's ``chdir``.
    """
    program = argv[0]
    if "/" in program:
        path = program if os.path.isabs(program) else os.path.join(cwd, program)
        return [os.path.normpath(path), *argv[1:]]
    found = shutil.which(program)
    if found is None:
        raise AgentRefused(f"program {program!r} not found on the coordinator's PATH")
    return [os.path.abspath(found), *argv[1:]]


def check_deployable(spec: AgentSpec, argv: list[str]) -> list[str]:
    """Refuse, with a message naming the field, what cannot run as specified; else the
    argv to run, its program resolved to an absolute path."""
    wd = Path(spec.context.working_directory)
    if not wd.exists():
        raise AgentRefused(f"context.working_directory {str(wd)!r} does not exist")
    if not wd.is_dir():
        raise AgentRefused(f"context.working_directory {str(wd)!r} is not a directory")
    return resolve_program(argv, wd)


def agent_child_spec(
    spec: AgentSpec,
    home: AgentHome,
    runners: Mapping[str, Runner],
    *,
    parent_id: str | None = None,
    settings: Settings | None = None,
    default_restart: Restart = Restart.TEMPORARY,
    nested: bool = True,
    extra_env: Mapping[str, str] | None = None,
    token: str | None = None,
    environment: Callable[[ChildContext], Mapping[str, str]] | None = None,
) -> ChildSpec:
    """Validate *spec*, write its definition file, compile its confinement, and return
    the child spec that runs it. *environment* adds each incarnation's own variables
    (its ``TRACEPARENT``) as it starts."""
    s = settings or Settings()
    definition = home.definitions / f"{spec.id}.md"
    argv = check_deployable(spec, resolve_argv(spec, definition, runners, s.default_runner))
    private = home.ensure_agent(spec.id)
    confinement = compile_confinement(
        spec,
        argv,
        home=home.root,
        paths=AgentPaths(private=private, definition=definition),
        api_port=_port_of((extra_env or {}).get("ZIGGIE_URL")),
        best_effort=s.confinement == "best_effort",
    )
    write_atomic(definition, definition_text(spec, parent_id))
    # An allowlist: nothing else of the coordinator's environment (its API token above
    # all) reaches an agent.
    env = {
        **agent_environment(os.environ, s.agent_env),
        **spec.env,
        "HOME": str(private / "home"),
        "TMPDIR": str(private / "tmp"),
        "ZIGGIE_AGENT_ID": spec.id,
        "ZIGGIE_LEVEL": spec.level,
        "ZIGGIE_HOME": str(private),
        "ZIGGIE_DEFINITION": str(definition),
        "ZIGGIE_MAX_ITERATIONS": str(spec.max_iterations),
        "PYTHONUNBUFFERED": "1",
    }
    if parent_id is not None:
        env["ZIGGIE_PARENT_ID"] = parent_id
    env.update(extra_env or {})
    return process_spec(
        spec.id,
        argv,
        cwd=spec.context.working_directory,
        env=env,
        log_path=log_path_for(home.logs, spec.id),
        log_max_bytes=s.log_max_bytes,
        definition_path=definition,
        nested=nested and spec.level != "L3",
        max_children=spec.max_children,
        stop_order=StopOrder.CONCURRENT,  # sub-agents are independent: all stop at once
        restart=Restart(spec.restart) if spec.restart else default_restart,
        shutdown=Shutdown.parse(spec.shutdown),
        timeout=float(spec.timeout_seconds),
        level=spec.level,
        meta={"name": spec.name},
        token=token,
        limits=_limits(spec, best_effort=s.limits_best_effort),
        confinement=confinement,
        environment=environment,
    )


def _port_of(url: str | None) -> int | None:
    return urlsplit(url).port if url else None


def _limits(spec: AgentSpec, *, best_effort: bool) -> dict[str, str]:
    """The spec's cgroup limits; refused (never silently unlimited) where not enforceable,
    unless the operator chose best effort (setting ``limits_best_effort``)."""
    wanted = spec.limits.files() if spec.limits else {}
    if not wanted:
        return wanted
    available = cgroup_controllers() or frozenset()
    missing = sorted(set(wanted) - available)
    if missing and not best_effort:
        where = "no cgroup v2 here" if cgroup_controllers() is None else "not enabled here"
        raise AgentRefused(
            f"limits.{missing[0]}: the {missing[0]} controller is {where}"
            " (set limits_best_effort to run without it)"
        )
    return {k: v for k, v in wanted.items() if k in available}


async def drop_stopped(rt: Runtime, agent_id: str) -> None:
    """Forget *agent_id*'s spec if nothing of it runs, so that a new deploy takes the id.

    OTP keeps a permanent or transient child's spec after ``terminate_child`` (and a
    transient one's after a normal exit), to be restarted by id. Agents are deployed by
    id: kept, that spec would refuse every later deploy of the id (``already_present``)
    for as long as the coordinator runs. A restart still waiting out its backoff is
    cancelled with it; the agent's record stays in the journal.
    """
    if agent_id in rt and rt.info(agent_id).state is ChildState.STOPPED:
        await rt.supervisor_of(agent_id).delete_child(agent_id)


def contained_spec(child: ChildSpec, spec: AgentSpec, settings: Settings) -> ChildSpec:
    """A top-level agent's own supervisor, with *child* (the agent) its only child.

    Issue 10, item 1: its intensity and backoff are the agent's (spec fields, else the
    coordinator's settings), and it is *temporary*: its parent, the coordinator's root,
    never restarts it and never counts its exit against its own intensity. An agent
    restarted too often fails only this supervisor.
    """
    s = settings
    permanent = child.restart is Restart.PERMANENT
    initial = s.agent_backoff_initial if spec.backoff_initial is None else spec.backoff_initial
    ceiling = s.agent_backoff_max if spec.backoff_max is None else spec.backoff_max
    return supervisor_spec(
        wrapper_id(spec.id),
        # A non-permanent agent is significant: once it ends for good, so does its
        # supervisor (OTP's auto_shutdown), and nothing empty is left in the tree.
        [child if permanent else dataclasses.replace(child, significant=True)],
        max_restarts=s.agent_max_restarts if spec.max_restarts is None else spec.max_restarts,
        max_seconds=s.agent_max_seconds if spec.max_seconds is None else spec.max_seconds,
        backoff=Backoff(initial=initial, maximum=max(ceiling, initial)) if initial else None,
        auto_shutdown=AutoShutdown.NEVER if permanent else AutoShutdown.ANY_SIGNIFICANT,
        restart=Restart.TEMPORARY,
    )
