"""The coordinator's durable record: requests, their answers, and agents (SQLite, WAL).

It is what makes answers exactly-once and lets a restarted coordinator, even after
``kill -9``, answer status and terminate for agents it ran before, and find and stop the
processes a crashed predecessor left behind.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from ._states import LIVE_STATES

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    request_id  TEXT PRIMARY KEY,
    action      TEXT NOT NULL,
    received_at REAL NOT NULL,
    response    TEXT,
    answered_at REAL
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
    ended_at    REAL
);
CREATE INDEX IF NOT EXISTS agents_by_parent ON agents (parent_id);
"""


class Journal:
    """One SQLite file in the coordinator's home, opened 0600, written synchronously.

    Writes happen on the event loop's thread: each is a few tens of microseconds in WAL
    mode with ``synchronous=NORMAL``, cheaper than a thread hop.
    """

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # -- requests --------------------------------------------------------------------

    def response_for(self, request_id: str) -> str | None:
        row = self._db.execute(
            "SELECT response FROM requests WHERE request_id = ?", (request_id,)
        ).fetchone()
        return None if row is None else row["response"]

    def record_request(self, request_id: str, action: str) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO requests (request_id, action, received_at) VALUES (?, ?, ?)",
            (request_id, action, time.time()),
        )

    def record_response(self, request_id: str, response_json: str) -> None:
        self._db.execute(
            "UPDATE requests SET response = ?, answered_at = ? WHERE request_id = ?",
            (response_json, time.time(), request_id),
        )

    def record_answered(self, request_id: str, action: str, response_json: str) -> None:
        """A request and its answer in one write (for actions that change nothing)."""
        now = time.time()
        self._db.execute(
            """INSERT OR IGNORE INTO requests (request_id, action, received_at, response,
               answered_at) VALUES (?, ?, ?, ?, ?)""",
            (request_id, action, now, response_json, now),
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
        self._db.execute(
            """INSERT INTO agents (agent_id, spec, parent_id, level, request_id, restart, state)
               VALUES (?, ?, ?, ?, ?, ?, 'starting')
               ON CONFLICT(agent_id) DO UPDATE SET spec = excluded.spec,
                 parent_id = excluded.parent_id, level = excluded.level,
                 request_id = excluded.request_id, restart = excluded.restart,
                 state = 'starting', exit_code = NULL, signal = NULL, outcome = NULL,
                 reason = NULL, ended_at = NULL""",
            (agent_id, spec_json, parent_id, level, request_id, restart),
        )

    def update_agent(self, agent_id: str, **fields: Any) -> None:
        if not fields:
            return
        cols = ", ".join(f"{name} = ?" for name in fields)
        self._db.execute(
            f"UPDATE agents SET {cols} WHERE agent_id = ?",
            (*fields.values(), agent_id),
        )

    def remove_agent(self, agent_id: str) -> None:
        self._db.execute("DELETE FROM agents WHERE agent_id = ?", (agent_id,))

    def agent(self, agent_id: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM agents WHERE agent_id = ?", (agent_id,)).fetchone()
        return None if row is None else _agent_row(row)

    def agents(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT * FROM agents ORDER BY rowid").fetchall()
        return [_agent_row(row) for row in rows]

    def children_of(self, agent_id: str) -> list[str]:
        rows = self._db.execute(
            "SELECT agent_id FROM agents WHERE parent_id = ? ORDER BY rowid", (agent_id,)
        ).fetchall()
        return [row[0] for row in rows]

    def live_agents(self) -> list[dict[str, Any]]:
        """Agents a predecessor believed alive, parents before children."""
        rows = self._db.execute(
            "SELECT * FROM agents WHERE state IN (?, ?) ORDER BY level, rowid", LIVE_STATES
        ).fetchall()
        return [_agent_row(row) for row in rows]


def _agent_row(row: sqlite3.Row) -> dict[str, Any]:
    data = dict(row)
    data["spec"] = json.loads(data["spec"])
    return data
