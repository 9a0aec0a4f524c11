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
from dataclasses import dataclass
from pathlib import Path
from typing import Final

TOKEN_FILE: Final = "api-token"


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: ``agent_id`` is None for the operator."""

    agent_id: str | None = None

    @property
    def operator(self) -> bool:
        return self.agent_id is None


OPERATOR: Final = Principal()


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
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, (token + "\n").encode())
        finally:
            os.close(fd)
    os.chmod(path, 0o600)
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

    def revoke(self, agent_id: str) -> None:
        digest = self._current.pop(agent_id, None)
        if digest is not None:
            self._agents.pop(digest, None)

    def who(self, authorization: str | None) -> Principal | None:
        """The principal of an ``Authorization: Bearer <token>`` header, or None."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        token = token.strip()
        if hmac.compare_digest(token.encode("utf-8", "surrogateescape"), self._operator):
            return OPERATOR
        agent_id = self._agents.get(_digest(token))
        return None if agent_id is None else Principal(agent_id)
