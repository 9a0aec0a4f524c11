"""Who is calling: the operator (a token in the home) or one agent (a token of its own).

The operator token lives in ``<home>/api-token`` (0600), made at first start unless
``ZIGGIE_API_TOKEN`` gives one, and is compared in constant time. Every agent started while
the API runs gets its own token, valid only for itself and its subtree, and only while
that deployment of the agent is the current one: a redeploy issues a new token, and the
old one dies with the deployment it was made for.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Final

from supervisor.protocol import write_atomic

from .._callers import OPERATOR, Caller

TOKEN_FILE: Final = "api-token"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def load_operator_token(home: Path, given: str | None = None) -> str:
    """The operator token: *given* (env), else the home's file, else a new one.

    The file always holds the token in force (0600), so the CLI and the dashboard on this
    machine find it there.
    """
    path = home / TOKEN_FILE
    try:
        stored = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        stored = ""
    if given:
        token = given
    elif len(stored) >= 16:
        token = stored
    else:
        token = secrets.token_urlsafe(32)
    if token != stored:
        write_atomic(path, token + "\n")  # a new file (0600): never through a planted link
    else:  # an older home's file may be wider: repaired through the file itself
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
    return token


class Tokens:
    """The operator's token and the agents' tokens, by a digest (lookups leak no token)."""

    def __init__(self, operator: str) -> None:
        self._operator = operator.encode("utf-8", "surrogateescape")
        self._agents: dict[bytes, str] = {}  # digest -> agent id
        self._current: dict[str, bytes] = {}  # agent id -> digest of its current token

    def issue(self, agent_id: str) -> str:
        """A new token for *agent_id*'s new deployment; the previous one stops working."""
        token = "agt-" + secrets.token_urlsafe(32)
        digest = _digest(token)
        old = self._current.get(agent_id)
        if old is not None:
            self._agents.pop(old, None)
        self._agents[digest] = agent_id
        self._current[agent_id] = digest
        return token

    def who(self, authorization: str | None) -> Caller | None:
        """The caller of an ``Authorization: Bearer <token>`` header, or None."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        token = token.strip()
        if hmac.compare_digest(token.encode("utf-8", "surrogateescape"), self._operator):
            return OPERATOR
        agent_id = self._agents.get(_digest(token))
        return None if agent_id is None else Caller(agent_id)
