"""Commands that read an agent's output and the coordinator's events: logs, events.

The log's path comes from the coordinator (``status``); the events file is read from the
home directly, so ``ziggie events`` works with no coordinator running too. An agent's
bytes never drive the operator's terminal: control sequences and bidi overrides are shown
escaped (``--raw`` writes them as they are, for pipes).
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from . import _output
from ._common import NOT_FOUND, NOT_RUNNING, AgentIdArg, HomeOpt, app, call, fail, home_of

#: The coordinator's own bookkeeping events, hidden by ``ziggie events`` unless ``--all``.
NOISE = frozenset({"request_received", "response_written", "duplicate_request"})


RawOpt = Annotated[
    bool,
    typer.Option("--raw", help="The bytes as written, control sequences and all (for pipes)"),
]


class _Out:
    """Agent output to stdout: control sequences escaped (an agent's bytes must not drive
    the terminal: titles, cursor moves, hidden text), or with ``--raw`` as written."""

    def __init__(self, raw: bool) -> None:
        self.raw = raw
        self._decode = codecs.getincrementaldecoder("utf-8")(errors="replace").decode

    def write(self, data: bytes) -> None:
        if self.raw:
            sys.stdout.buffer.write(data)
        else:  # incremental: a character split between two reads is decoded whole
            sys.stdout.write(_output.printable(self._decode(data)))

    def flush(self) -> None:
        sys.stdout.flush()


def _tail(path: Path, n: int) -> bytes:
    with open(path, "rb") as f:
        return b"".join(collections.deque(f, maxlen=n))


def _agent_live(home: Path, agent_id: str) -> tuple[bool, str | None]:
    """Whether the agent may still write (running, or restarting), and its current log."""
    response = call(home, "check_agent_status", agent_id, timeout=10)
    agent = response.agent or {}
    return not _output.ended_for_good(agent), response.output_log


@app.command()
def logs(
    agent_id: AgentIdArg,
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Keep printing until the agent ends")
    ] = False,
    tail: Annotated[int | None, typer.Option("--tail", "-n", help="Only the last N lines")] = None,
    raw: RawOpt = False,
    home: HomeOpt = None,
) -> None:
    """Print an agent's output log.

    With -f, follow it until its last incarnation ends. Control sequences are shown
    escaped unless --raw.
    """
    home_dir = home_of(home)
    response = call(home_dir, "check_agent_status", agent_id, timeout=10)
    if response.code == "not_found":
        fail(f"no agent {agent_id!r}", NOT_FOUND)
    if not response.output_log or not Path(response.output_log).exists():
        fail(f"agent {agent_id!r} has no log yet", 1)
    path = Path(response.output_log)
    out = _Out(raw)
    with contextlib.suppress(KeyboardInterrupt):
        if tail is not None:
            out.write(_tail(path, tail))
            start = path.stat().st_size
        else:
            start = 0
        out.flush()
        if follow or tail is None:
            _follow_log(home_dir, agent_id, path, start, follow, out)


def _follow_log(home: Path, agent_id: str, path: Path, start: int, follow: bool, out: _Out) -> None:
    """Print from *start*; when following, switch to a new incarnation's log, and stop
    once the agent's last incarnation has ended (not between a crash and its restart)
    and its log is drained."""
    f = open(path, "rb")  # noqa: SIM115 - swapped on restart
    try:
        f.seek(start)
        out.write(f.read())
        out.flush()
        while follow:
            line = f.readline()
            if line:
                out.write(line)
                out.flush()
                continue
            live, log = _agent_live(home, agent_id)
            if log and Path(log) != path and Path(log).exists():  # a new incarnation
                f.close()
                path = Path(log)
                f = open(path, "rb")  # noqa: SIM115
                continue
            if not live:
                out.write(f.read())
                out.flush()
                return
            time.sleep(0.2)
    finally:
        f.close()


@app.command()
def events(
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing")] = False,
    agent: Annotated[
        list[str] | None,
        typer.Option(
            "--agent", metavar="<agent_id>", help="Only events of this agent (repeatable)"
        ),
    ] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option(
            "--type", metavar="<event>", help="Only events of this type, e.g. exited (repeatable)"
        ),
    ] = None,
    show_all: Annotated[
        bool, typer.Option("--all", "-a", help="Include request/response bookkeeping")
    ] = False,
    raw: RawOpt = False,
    home: HomeOpt = None,
) -> None:
    """Print the coordinator's lifecycle events as JSON lines.

    Filtered by agent and type; request bookkeeping only with --all. The rotated
    events.jsonl.1 comes first, and -f follows the file across its rotations. Control
    sequences are shown escaped unless --raw.
    """
    path = home_of(home) / "events.jsonl"
    if not path.exists():
        fail(f"no events at {path}: has a coordinator run there?", NOT_RUNNING)
    agents, kinds = set(agent or ()), set(kind or ())

    def shown(line: str) -> bool:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            return False
        if not isinstance(event, dict):
            return False
        name = event.get("event")
        if kinds and name not in kinds:
            return False
        if not kinds and not show_all and name in NOISE:
            return False
        return not agents or event.get("agent_id") in agents

    def show(line: str) -> None:
        if shown(line):
            sys.stdout.write(line if raw else _output.printable(line))

    with contextlib.suppress(KeyboardInterrupt):
        backup = path.with_name(path.name + ".1")
        with contextlib.suppress(FileNotFoundError), open(backup, encoding="utf-8") as old:
            for line in old:
                show(line)
        f = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 - reopened on rotation
        try:
            while True:
                line = f.readline()
                if line:
                    show(line)
                    continue
                sys.stdout.flush()
                if not follow:
                    return
                if _rotated(path, f.fileno()):  # drained above: go on with the new file
                    f.close()
                    f = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115
                    continue
                time.sleep(0.2)
        finally:
            f.close()


def _rotated(path: Path, fd: int) -> bool:
    """True if *path* now names another file than the open *fd* (it was rotated)."""
    try:
        now = path.stat()
    except FileNotFoundError:
        return False  # between the rename and the new file: look again later
    mine = os.fstat(fd)
    return (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino)
