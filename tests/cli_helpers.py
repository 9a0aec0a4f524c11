"""Running the ``ziggie`` CLI as an operator does: a real process, its output as text."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def ziggie(*args: str, home: Path | None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``ziggie ARGS --home HOME`` (no ``--home`` for None), from the repository root."""
    extra = ["--home", str(home)] if home is not None else []
    return subprocess.run(
        [PY, "-m", "supervisor.cli", *args, *extra],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def py(code: str) -> str:
    """A ``--command`` running *code* in this interpreter (split, never run by a shell)."""
    return f"{PY} -c {shlex.quote(code)}"
