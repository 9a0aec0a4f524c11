"""The queues a coordinator serves, one per caller, opened as if their owner were hostile.

The operator's queue is ``<home>/agent-queue``; each agent's own is
``<home>/agents/<id>/agent-queue``, a directory the agent can write. So an agent's
``requests/`` and ``responses/`` are opened once, one path component at a time and never
through a symlink, and then used only through those directory fds: a directory the agent
swaps for a symlink later still cannot redirect a claim or an answer. What is claimed
moves out of the agent's reach, into the coordinator's ``processing/agents/<id>/``.

Inside an agent, our client probes ``$ZIGGIE_HOME/coordinator.lock`` to see that a
coordinator serves the queue: that name is a hard link to this run's :class:`ServingLock`,
which the coordinator holds locked for as long as it serves (one file, one fd, whatever
the number of agents; a fresh inode each run, so nothing an agent does to it outlives the
run).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from supervisor import is_valid_id
from supervisor.protocol import (
    PROCESSING,
    REQUESTS,
    RESPONSES,
    response_name,
    write_atomic,
)

from ._agents import AGENTS, AgentHome
from ._callers import OPERATOR, Caller

#: Below the home's own directories (what an agent may have touched): never a link.
_DIR: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: The home's own directories: the operator's to lay out (a link to another disk, say).
_HOME_DIR: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def open_below(parent: int, *names: str) -> int:
    """The directory *names* below the directory fd *parent*, never through a symlink."""
    fd = parent
    try:
        for name in names:
            below = os.open(name, _DIR, dir_fd=fd)
            if fd != parent:
                os.close(fd)
            fd = below
    except BaseException:
        if fd != parent:
            os.close(fd)
        raise
    return fd


@dataclass(eq=False)
class ServedQueue:
    """One caller's queue: where its requests arrive and its answers go.

    Invariant: ``names`` are the files of this queue being handled now; the fds stay
    open until the queue is ``closing`` and ``names`` is empty.
    """

    caller: Caller
    requests: int  #: directory fd
    responses: int  #: directory fd
    processing: str  #: the coordinator's directory for what it claimed from this queue
    archive: str  #: below ``archive/<day>/``: '' for the operator's
    key: int | None = None  #: its watch, while watched
    closing: bool = False  #: no longer watched; released once nothing is in flight
    names: set[str] = field(default_factory=set)
    _made: bool = False

    def processing_dir(self) -> str:
        """:attr:`processing`, made (0700, each level) the first time it is needed."""
        if not self._made:
            head, _ = os.path.split(self.processing)
            for path in (head, self.processing) if self.archive else (self.processing,):
                with contextlib.suppress(FileExistsError):
                    os.mkdir(path, 0o700)
            self._made = True
        return self.processing

    def close(self) -> None:
        """Close its fds, once (a number closed twice may be someone else's by then)."""
        fds, self.requests, self.responses = (self.requests, self.responses), -1, -1
        for fd in fds:
            if fd >= 0:
                os.close(fd)


def open_operator_queue(home: AgentHome) -> ServedQueue:
    queue = home.queue
    requests = os.open(queue / REQUESTS, _HOME_DIR)
    try:
        responses = os.open(queue / RESPONSES, _HOME_DIR)
    except BaseException:
        os.close(requests)
        raise
    return ServedQueue(OPERATOR, requests, responses, str(queue / PROCESSING), "")


def open_agent_queue(home: AgentHome, agent_id: str) -> ServedQueue:
    """*agent_id*'s queue, opened without following links."""
    with contextlib.ExitStack() as stack:
        agents = os.open(home.agents, _HOME_DIR)
        stack.callback(os.close, agents)
        queue = open_below(agents, agent_id, "agent-queue")
        stack.callback(os.close, queue)
        requests = open_below(queue, REQUESTS)
        try:
            responses = open_below(queue, RESPONSES)
        except BaseException:
            os.close(requests)
            raise
        return ServedQueue(
            Caller(agent_id),
            requests,
            responses,
            str(home.agent_processing(agent_id)),
            f"{AGENTS}/{agent_id}",
        )


class ServingLock:
    """This run's lock, ``<home>/agents/.lock``: held (flock) for as long as the
    coordinator serves; ``AgentHome.ensure_agent`` links it into each agent's directory."""

    def __init__(self, home: AgentHome) -> None:
        path = os.fspath(home.serving_lock)
        tmp = f"{path}.{secrets.token_hex(8)}"
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        self._fd = os.open(tmp, flags, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.replace(tmp, path)  # a fresh inode: an older run's links are not to it
        except BaseException:
            os.close(self._fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def close(self) -> None:
        """Release the lock: every agent queue of this run reads as unserved."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def resend_answers(
    answers: Iterable[tuple[Caller, str, str]], operator: ServedQueue, home: AgentHome
) -> tuple[list[str], list[tuple[str, str]]]:
    """Write each of *answers* (caller, request id, body) into its caller's queue where its
    file is missing or empty; the ids written, and ``(id, error)`` of those that failed."""
    resent: list[str] = []
    failed: list[tuple[str, str]] = []
    with contextlib.ExitStack() as stack:
        agents: int | None = None
        for caller, request_id, body in answers:
            name = response_name(request_id)
            fd = operator.responses
            if caller.agent_id is not None:
                if agents is None:
                    agents = os.open(home.agents, _HOME_DIR)
                    stack.callback(os.close, agents)
                try:
                    fd = open_below(agents, caller.agent_id, "agent-queue", RESPONSES)
                except OSError:
                    continue  # its directory is gone, and whoever would have read it
            try:
                with contextlib.suppress(OSError):
                    if os.stat(name, dir_fd=fd, follow_symlinks=False).st_size > 0:
                        continue
                write_atomic(name, body, dir_fd=fd)
                resent.append(request_id)
            except OSError as exc:
                failed.append((request_id, str(exc)))
            finally:
                if fd != operator.responses:
                    os.close(fd)
    return resent, failed


def error_answer(file_id: str, name: str, error: str, code: str) -> tuple[str, str]:
    """The id and JSON of the error file for the request file *name*.

    Named from the file name, so the seed's client finds it; a name that is not a safe id
    gets a digest instead, never a path of its choosing.
    """
    safe = file_id if is_valid_id(file_id) else "invalid-" + _digest(name)
    body = {
        "version": "1.0",
        "request_id": safe,
        "status": "failed",
        "error": error,
        "code": code,
        "original_file": name,
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(),
    }
    return safe, json.dumps(body, indent=2)


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:16]
