"""The coordinator's durable record: requests, their answers, and agents (SQLite, WAL).

It is what makes answers exactly-once and lets a restarted coordinator, even after
``kill -9``, answer status and terminate for agents it ran before, and find and stop the
processes a crashed predecessor left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
from pydantic import ValidationError

from supervisor import Restart
from supervisor.protocol import AgentSpec, validation_summary

from ._callers import OPERATOR, Caller
from ._replies import AgentRefused
from ._states import LIVE_STATES

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    request_id  TEXT PRIMARY KEY,
    action      TEXT NOT NULL,
    received_at REAL NOT NULL,
    response    TEXT,
    answered_at REAL,
    caller      TEXT NOT NULL DEFAULT '',
    fingerprint TEXT
);
CREATE TABLE IF NOT EXISTS agents (
    agent_id    TEXT PRIMARY KEY,
    spec        TEXT NOT NULL,
    parent_id   TEXT,
    level       TEXT NOT NULL,
    request_id  TEXT,
    restart     TEXT NOT NULL,
    state       TEXT NOT NULL,
    pid         INTEGER,
    pid_start   REAL,
    log         TEXT,
    restarts    INTEGER NOT NULL DEFAULT 0,
    incarnation INTEGER NOT NULL DEFAULT 0,
    exit_code   INTEGER,
    signal      INTEGER,
    outcome     TEXT,
    reason      TEXT,
    started_at  REAL,
    ended_at    REAL,
    trace       TEXT
);
CREATE INDEX IF NOT EXISTS agents_by_parent ON agents (parent_id);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
#: Columns added since the first schema, each with the ALTER that adds it to an older
#: journal: the rows it had are the operator's (no caller was known then), with no
#: fingerprint (any request under their id is taken for the same).
_ADDED_COLUMNS = {
    "caller": "ALTER TABLE requests ADD COLUMN caller TEXT NOT NULL DEFAULT ''",
    "fingerprint": "ALTER TABLE requests ADD COLUMN fingerprint TEXT",
}
#: The same for the agents table. ``trace`` (JSON): the W3C context an agent's spans hang
#: under and its latest span, so recovery continues its trace (see ``_tracing``).
_ADDED_AGENT_COLUMNS = {
    "trace": "ALTER TABLE agents ADD COLUMN trace TEXT",
}


@dataclass(frozen=True, slots=True)
class Seen:
    """A request id the journal knows: whose it is, and its answer once there is one."""

    caller: Caller
    fingerprint: str | None  #: of the request's content; None in rows of older journals
    response: str | None  #: None: recorded before it acted, and never answered (a crash)


@dataclass(frozen=True, slots=True)
class PreviousRun:
    """How the coordinator before this one ended."""

    started_at: float | None  #: None: this home never ran a coordinator
    clean: bool  #: it stopped cleanly (its agents were stopped and recorded)


class Journal:
    """One SQLite file in the coordinator's home, opened 0600, written synchronously.

    Writes happen on the event loop's thread: each is a few tens of microseconds in WAL
    mode with ``synchronous=NORMAL``, cheaper than a thread hop. Every write is in the
    WAL at once, so a ``kill -9`` of the coordinator loses none.

    Durability against a power cut is a stated choice (issue 10, item 12):
    ``durability="full"`` makes :meth:`sync` wait until everything written so far is on
    disk. Syncs are grouped: the answers of one wake-up share one fsync (the first caller
    leads, the others wait for its commit). ``"fast"`` never fsyncs on its own: the OS
    writes the WAL back when it will, and a power cut may lose the latest answers.
    """

    def __init__(self, path: Path, *, durability: str = "full") -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        self.path = path
        self.durability = durability
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._migrate()
        for suffix in ("-wal", "-shm"):  # SQLite makes them with the umask's mode
            with contextlib.suppress(FileNotFoundError):
                os.chmod(f"{path}{suffix}", 0o600)
        self._writes = 0  # writes made, and how many of them are known durable
        self._synced = 0
        self._leader: anyio.Event | None = None
        #: fsyncs done by :meth:`sync` (one per group), for tests and the bench
        self.fsyncs = 0

    def close(self) -> None:
        self._db.close()

    def _migrate(self) -> None:
        have = {row[1] for row in self._db.execute("PRAGMA table_info(requests)")}
        for column, alter in _ADDED_COLUMNS.items():
            if column not in have:
                self._db.execute(alter)
        have = {row[1] for row in self._db.execute("PRAGMA table_info(agents)")}
        for column, alter in _ADDED_AGENT_COLUMNS.items():
            if column not in have:
                self._db.execute(alter)

    # -- durability --------------------------------------------------------------------

    def _write(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        self._writes += 1
        return self._db.execute(sql, params)

    async def sync(self) -> None:
        """Return once every write made so far is on disk (``durability="full"``).

        Group commit: the first caller yields once, so every request of this wake-up
        records its answer first, then makes one fsync for all of them; the others wait
        for it. Cancellation-safe: a cancelled leader hands over to the next waiter.
        """
        if self.durability != "full":
            return
        target = self._writes
        while self._synced < target:
            if self._leader is not None:
                await self._leader.wait()
                continue
            self._leader = event = anyio.Event()
            try:
                await anyio.lowlevel.checkpoint()  # the rest of this batch writes first
                upto = self._writes
                self._fsync()
                self._synced = upto
            finally:
                self._leader = None
                event.set()

    def _fsync(self) -> None:
        # One commit with synchronous=FULL syncs the WAL, and with it every frame the
        # cheaper NORMAL commits before it wrote: one fsync makes them all durable.
        self._db.execute("PRAGMA synchronous=FULL")
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('synced_at', ?)",
                (repr(time.time()),),
            )
        finally:
            self._db.execute("PRAGMA synchronous=NORMAL")
        self.fsyncs += 1

    # -- runs --------------------------------------------------------------------------

    def begin_run(self) -> PreviousRun:
        """Record that a coordinator starts now; how did the previous one end?"""
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        started = meta.get("run_started")
        clean = "clean_stop" in meta
        self._write(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('run_started', ?)",
            (repr(time.time()),),
        )
        self._write("DELETE FROM meta WHERE key = 'clean_stop'")
        return PreviousRun(float(started) if started else None, clean or started is None)

    def end_run(self) -> None:
        """Record a clean stop (its agents are already recorded as stopped), durably."""
        self._write(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('clean_stop', ?)",
            (repr(time.time()),),
        )
        if self.durability == "full":
            self._fsync()

    # -- the home's runtime token ----------------------------------------------------

    def runtime_token(self, mint: Callable[[], str]) -> tuple[str, bool]:
        """This home's runtime token, and whether it was just made by *mint*.

        Every agent of the home carries it (``ZIGGIE_RUNTIME``), whichever coordinator
        process started it, so a successor recognises its predecessor's processes by token
        and id, and another home's agent of the same id is never its (issue 10, item 4).
        """
        row = self._db.execute("SELECT value FROM meta WHERE key = 'runtime_token'").fetchone()
        if row is not None:
            return str(row[0]), False
        value = mint()
        self._write("INSERT OR IGNORE INTO meta (key, value) VALUES ('runtime_token', ?)", (value,))
        return value, True

    # -- requests --------------------------------------------------------------------
    #
    # Invariant: a request id belongs to the one caller that sent it first; its row says
    # who (``caller``: '' for the operator, else the agent's id) and what it asked
    # (``fingerprint``). The service answers anyone else with a conflict.

    def seen(self, request_id: str) -> Seen | None:
        """What the journal knows of *request_id* (None: never seen)."""
        row = self._db.execute(
            "SELECT caller, fingerprint, response FROM requests WHERE request_id = ?",
            (request_id,),
        ).fetchone()
        if row is None:
            return None
        caller = Caller(row["caller"]) if row["caller"] else OPERATOR
        return Seen(caller, row["fingerprint"], row["response"])

    def record_request(
        self,
        request_id: str,
        action: str,
        *,
        caller: Caller = OPERATOR,
        fingerprint: str | None = None,
    ) -> None:
        self._write(
            "INSERT OR IGNORE INTO requests (request_id, action, received_at, caller,"
            " fingerprint) VALUES (?, ?, ?, ?, ?)",
            (request_id, action, time.time(), caller.key, fingerprint),
        )

    def record_response(self, request_id: str, response_json: str) -> None:
        self._write(
            "UPDATE requests SET response = ?, answered_at = ? WHERE request_id = ?",
            (response_json, time.time(), request_id),
        )

    def record_answered(
        self,
        request_id: str,
        action: str,
        response_json: str,
        *,
        caller: Caller = OPERATOR,
        fingerprint: str | None = None,
    ) -> None:
        """A request and its answer in one write (for actions that change nothing)."""
        now = time.time()
        self._write(
            """INSERT OR IGNORE INTO requests (request_id, action, received_at, response,
               answered_at, caller, fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?)""",
            (request_id, action, now, response_json, now, caller.key, fingerprint),
        )

    # -- agents ----------------------------------------------------------------------

    def add_agent(
        self,
        agent_id: str,
        spec_json: str,
        *,
        parent_id: str | None,
        level: str,
        request_id: str | None,
        restart: str,
    ) -> None:
        self._write(
            """INSERT INTO agents (agent_id, spec, parent_id, level, request_id, restart, state)
               VALUES (?, ?, ?, ?, ?, ?, 'starting')
               ON CONFLICT(agent_id) DO UPDATE SET spec = excluded.spec,
                 parent_id = excluded.parent_id, level = excluded.level,
                 request_id = excluded.request_id, restart = excluded.restart,
                 state = 'starting', exit_code = NULL, signal = NULL, outcome = NULL,
                 reason = NULL, ended_at = NULL,
                 -- a new deploy of the id starts a new trace; a redeploy (the same
                 -- request: recovery, a restart) goes on in its own
                 trace = CASE WHEN request_id IS excluded.request_id THEN trace END""",
            (agent_id, spec_json, parent_id, level, request_id, restart),
        )

    def update_agent(self, agent_id: str, **fields: Any) -> None:
        if not fields:
            return
        cols = ", ".join(f"{name} = ?" for name in fields)
        self._write(
            f"UPDATE agents SET {cols} WHERE agent_id = ?",
            (*fields.values(), agent_id),
        )

    def agent(self, agent_id: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM agents WHERE agent_id = ?", (agent_id,)).fetchone()
        return None if row is None else _agent_row(row)

    def has_agent(self, agent_id: str) -> bool:
        found = self._db.execute("SELECT 1 FROM agents WHERE agent_id = ?", (agent_id,))
        return found.fetchone() is not None

    def parent_of(self, agent_id: str) -> str | None:
        """*agent_id*'s parent (None: a top-level agent, or none known)."""
        row = self._db.execute(
            "SELECT parent_id FROM agents WHERE agent_id = ?", (agent_id,)
        ).fetchone()
        return None if row is None else row[0]

    def agents(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT * FROM agents ORDER BY rowid").fetchall()
        return [_agent_row(row) for row in rows]

    def children_of(self, agent_id: str) -> list[str]:
        rows = self._db.execute(
            "SELECT agent_id FROM agents WHERE parent_id = ? ORDER BY rowid", (agent_id,)
        ).fetchall()
        return [row[0] for row in rows]

    def answers_since(self, since: float) -> list[tuple[Caller, str, str]]:
        """``(caller, request_id, response)`` of every answer recorded at or after *since*."""
        rows = self._db.execute(
            "SELECT caller, request_id, response FROM requests WHERE response IS NOT NULL"
            " AND answered_at >= ? ORDER BY answered_at",
            (since,),
        ).fetchall()
        return [(Caller(row[0]) if row[0] else OPERATOR, row[1], row[2]) for row in rows]

    def live_agents(self) -> list[dict[str, Any]]:
        """Agents a predecessor believed alive, parents before children."""
        rows = self._db.execute(
            "SELECT * FROM agents WHERE state IN (?, ?) ORDER BY level, rowid", LIVE_STATES
        ).fetchall()
        return [_agent_row(row) for row in rows]


def _agent_row(row: sqlite3.Row) -> dict[str, Any]:
    data = dict(row)
    try:  # a row that is not JSON reads as an empty spec, which :func:`recorded_spec` refuses
        spec = json.loads(data["spec"])
    except (TypeError, ValueError):
        spec = {}
    data["spec"] = spec if isinstance(spec, dict) else {}
    return data


def recorded_spec(row: Mapping[str, Any]) -> AgentSpec:
    """A journal row's spec, validated as a request's would be before anything runs:
    the journal is only as trustworthy as whoever could write it, so a row that does not
    hold together (a planted one, say) is refused, never run with the operator's power."""
    try:
        spec = AgentSpec.model_validate(row["spec"])
    except ValidationError as exc:
        raise AgentRefused(f"recorded spec is invalid: {validation_summary(exc)}") from None
    if spec.id != row["agent_id"] or spec.level != row["level"]:
        raise AgentRefused("recorded spec does not match its row (id or level)")
    if spec.level != "L1" and row["parent_id"] is None:
        raise AgentRefused(f"recorded {spec.level} agent has no parent: not run as top level")
    if row["restart"] not in {r.value for r in Restart}:
        raise AgentRefused(f"recorded restart type {row['restart']!r} is not one")
    return spec
