"""An OS process as a supervised child: started, awaited, stopped with nothing left."""

from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Unpack

import anyio

from supervisor import (
    ChildContext,
    ChildSpec,
    SpecOptions,
    StopOrder,
    Supervisor,
    ZiggieError,
    open_supervisor,
)

from ._confine import Confinement
from ._logfile import RotatingLog, pump
from ._proctree import KILL_ROUNDS, ProcessTree, StopReport

#: How long output may keep draining once the whole tree is verified gone.
_DRAIN_SECONDS = 5.0


class ProcessExit(ZiggieError):
    """The agent process exited abnormally: non-zero code, or killed by a signal (``oom``
    when that was the OOM killer at the cgroup's ``memory.max``)."""

    def __init__(self, returncode: int, *, oom: bool = False) -> None:
        self.returncode = returncode
        self.oom = oom
        if oom:
            super().__init__(f"oom: killed by the OOM killer (signal {-returncode}, memory.max)")
        elif returncode < 0:
            super().__init__(f"killed by signal {-returncode}")
        else:
            super().__init__(f"exited with code {returncode}")


class SpawnError(ZiggieError):
    """The program could not be started (missing, not executable, bad directory)."""


class SpawnExhausted(SpawnError):
    """No file descriptor was left to start the program (EMFILE, ENFILE).

    The machine's trouble, not the agent's: the start waits (backoff, event
    ``spawn_retry``) and tries again, so it never counts as a crash toward the restart
    intensity and never gives an agent up.
    """


#: Descriptor exhaustion, of this process or of the system.
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE})
_SPAWN_RETRY_FIRST = 0.05
_SPAWN_RETRY_MAX = 5.0


@dataclass(slots=True)
class ProcessHandle:
    """What a running process child reports: its ``started()`` value."""

    agent_id: str
    pid: int
    argv: list[str]
    log_path: Path | None
    started_at: float
    tree: ProcessTree = field(repr=False)
    definition_path: Path | None = None
    #: The agent's own supervisor, for the sub-agents it deploys (None if it cannot nest).
    supervisor: Supervisor | None = None
    returncode: int | None = None
    last_stop: StopReport | None = None
    #: The OOM killer ended it (the cgroup's ``memory.events`` counted an ``oom_kill``).
    oom: bool = False

    def usage(self) -> dict[str, float]:
        """CPU seconds, RSS bytes and process count of the whole tree."""
        return self.tree.usage()


def exit_fields(returncode: int) -> dict[str, Any]:
    if returncode < 0:
        return {"exit_code": None, "signal": -returncode}
    return {"exit_code": returncode, "signal": None}


def process_spec(
    id: str,
    argv: Sequence[str],
    *,
    cwd: str | os.PathLike[str] = ".",
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    log_max_bytes: int = 10 * 2**20,
    log_backups: int = 3,
    definition_path: Path | None = None,
    nested: bool = False,
    max_children: int | None = None,
    stop_order: StopOrder = StopOrder.REVERSE,
    meta: Mapping[str, Any] | None = None,
    token: str | None = None,
    limits: Mapping[str, str] | None = None,
    confinement: Confinement | None = None,
    environment: Callable[[ChildContext], Mapping[str, str]] | None = None,
    **options: Unpack[SpecOptions],
) -> ChildSpec:
    """A child spec that runs *argv* (exactly, no shell) as a supervised process tree.

    Exit code 0 is a normal exit; anything else, or death by a signal, is abnormal and
    feeds the restart policy. Stopping it (terminate, timeout, a parent's stop) sends
    SIGTERM to its tree, waits up to the shutdown grace, SIGKILLs what is left, and
    returns only once no process of the tree remains. With ``nested=True`` the node also
    hosts a supervisor (``handle.supervisor``) for sub-agents, which stop before it does
    (in *stop_order*: ``concurrent`` suits sub-agents that do not depend on each other).
    *token* is the runtime token its processes carry (default: this process's).
    *limits* are cgroup v2 files to write (``{"memory.max": "536870912"}``-style keys
    ``memory``, ``cpu``, ``pids`` with the file's syntax); a start is refused where the
    controller is missing (:class:`CgroupError`). *confinement* is enforced by the kernel
    on every incarnation before it runs (:class:`Confinement`); a kernel that cannot
    enforce it refuses the start (:class:`ConfinementError`). *environment(ctx)* adds
    variables for one incarnation, asked as it starts (its trace context, say); what it
    set for the previous incarnation is dropped first.
    """
    argv = list(argv)
    if not argv or not argv[0]:
        raise ValueError("argv must name a program")
    # Encoded once here, not by Popen at every (re)start: spawning is on the hot path.
    environ = (
        dict(os.environb)
        if env is None
        else {os.fsencode(k): os.fsencode(v) for k, v in env.items()}
    )

    launch = _Launch(
        argv=argv,
        cwd=cwd,
        env=environ,
        log_path=log_path,
        log_max_bytes=log_max_bytes,
        log_backups=log_backups,
        definition_path=definition_path,
        nested=nested,
        max_children=max_children,
        stop_order=stop_order,
        token=token,
        limits=dict(limits or {}),
        confinement=confinement,
    )

    own: list[bytes] = []  # what *environment* set for the previous incarnation

    async def start(ctx: ChildContext) -> None:
        environ[b"ZIGGIE_INCARNATION"] = str(ctx.incarnation).encode()
        if environment is not None:
            extra = environment(ctx)
            for name in own:
                environ.pop(name, None)
            own.clear()
            for key, value in extra.items():
                own.append(os.fsencode(key))
                environ[own[-1]] = os.fsencode(value)
        delay = _SPAWN_RETRY_FIRST
        while True:
            try:
                await _run_process(ctx, launch)
                return
            except SpawnExhausted as exc:  # raised before anything started: try again
                ctx.emit("spawn_retry", error=str(exc), delay=round(delay, 3))
                await anyio.sleep(delay)
                delay = min(delay * 2, _SPAWN_RETRY_MAX)

    return ChildSpec(id=id, start=start, meta=dict(meta or {}), **options)


@dataclass(frozen=True, slots=True)
class _Launch:
    """Everything :func:`process_spec` fixed for every incarnation of one process child."""

    argv: list[str]
    cwd: str | os.PathLike[str]
    env: dict[bytes, bytes]
    log_path: Path | None
    log_max_bytes: int
    log_backups: int
    definition_path: Path | None
    nested: bool
    max_children: int | None
    stop_order: StopOrder
    token: str | None
    limits: dict[str, str]
    confinement: Confinement | None


async def _run_process(ctx: ChildContext, launch: _Launch) -> None:
    log_path, argv = launch.log_path, launch.argv
    try:
        log = (
            RotatingLog(log_path, max_bytes=launch.log_max_bytes, backups=launch.log_backups)
            if log_path
            else None
        )
    except OSError as exc:
        _raise_if_exhausted(argv, exc)
        raise
    try:
        read_fd, write_fd = os.pipe() if log else (None, None)
    except OSError as exc:
        if log:
            log.close()
        _raise_if_exhausted(argv, exc)
        raise
    try:
        tree = ProcessTree(
            argv,
            agent_id=ctx.id,
            cwd=launch.cwd,
            env=launch.env,
            stdout=write_fd if write_fd is not None else None,
            token=launch.token,
            limits=launch.limits,
            confinement=launch.confinement,
        )
    except BaseException as exc:
        if read_fd is not None:
            os.close(read_fd)
        if log:
            log.close()
        if isinstance(exc, OSError):
            _raise_if_exhausted(argv, exc)
            raise SpawnError(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from exc
        raise
    finally:
        if write_fd is not None:
            os.close(write_fd)  # only the tree holds the write end now: EOF means all gone

    handle = ProcessHandle(
        agent_id=ctx.id,
        pid=tree.pid,
        argv=argv,
        log_path=log_path,
        started_at=time.time(),
        tree=tree,
        definition_path=launch.definition_path,
    )
    confined = {"confinement": launch.confinement.report} if launch.confinement else {}
    returncode: int | None = None
    try:
        async with anyio.create_task_group() as tg:
            drain = anyio.CancelScope(shield=True)
            if read_fd is not None and log is not None:
                tg.start_soon(_drain, drain, read_fd, log)
            try:  # from here on, whatever happens, the tree is stopped
                ctx.emit(
                    "spawned",
                    pid=tree.pid,
                    program=argv[0],
                    log=str(log_path) if log_path else None,
                    **confined,
                )
                returncode = await _supervise(
                    ctx, tree, handle, launch.nested, launch.max_children, launch.stop_order
                )
            finally:
                await _stop(ctx, tree, handle, returncode)
                drain.deadline = anyio.current_time() + _DRAIN_SECONDS
    finally:
        if log:
            log.close()
    if returncode:
        raise ProcessExit(returncode, oom=handle.oom)


def _raise_if_exhausted(argv: list[str], exc: OSError) -> None:
    if exc.errno in _EXHAUSTED:
        raise SpawnExhausted(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from exc


async def _supervise(
    ctx: ChildContext,
    tree: ProcessTree,
    handle: ProcessHandle,
    nested: bool,
    max_children: int | None,
    stop_order: StopOrder,
) -> int:
    """Report started, then wait for the leader's exit (hosting sub-agents if nested)."""
    if nested:
        async with open_supervisor(ctx, max_children=max_children, stop_order=stop_order) as sup:
            handle.supervisor = sup
            ctx.started(handle)
            returncode = await tree.wait()
    else:
        ctx.started(handle)
        returncode = await tree.wait()
    handle.returncode = returncode
    handle.oom = returncode == -signal.SIGKILL and tree.oom_killed()
    oom = {"reason": "oom"} if handle.oom else {}
    ctx.emit("process_exited", pid=tree.pid, **exit_fields(returncode), **oom)
    return returncode


async def _stop(
    ctx: ChildContext, tree: ProcessTree, handle: ProcessHandle, returncode: int | None
) -> None:
    """Stop what is left of the tree (all of it, when the node itself is being stopped)."""
    report = await tree.stop(ctx.shutdown.grace)
    handle.last_stop = report
    if returncode is None:
        handle.returncode = tree.returncode
        ctx.emit(
            "process_stopped",
            pid=tree.pid,
            seconds=round(report.seconds, 4),
            terminated=report.terminated,
            **exit_fields(tree.returncode or 0),
        )
    if report.killed:
        ctx.emit("killed", pid=tree.pid, pids=report.killed)
    if report.left:  # a bounded stop says what it could not kill
        ctx.emit("stop_gave_up", pid=tree.pid, left=report.left, rounds=KILL_ROUNDS)


async def _drain(scope: anyio.CancelScope, read_fd: int, log: RotatingLog) -> None:
    # Shielded: output written before a terminate must reach the log (issue: "not lost").
    with scope:
        await pump(read_fd, log)
