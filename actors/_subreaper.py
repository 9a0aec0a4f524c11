"""Being the child subreaper: orphans of our subtree re-parent to us, not to init."""

from __future__ import annotations

import ctypes
import sys
from typing import Final

_PR_SET_CHILD_SUBREAPER: Final = 36

_libc: ctypes.CDLL | None = None
_subreaper = False


def _prctl(option: int, arg: int) -> bool:
    global _libc
    if not sys.platform.startswith("linux"):
        return False
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return int(_libc.prctl(option, arg, 0, 0, 0)) == 0


def become_subreaper() -> bool:
    """Make this process the child subreaper of its descendants (Linux; idempotent).

    An explicit choice of the host (issue 10, item 7), never a side effect of spawning:
    a subreaper inherits every orphan of its subtree, the host's own included. ``ziggie
    serve`` makes it by default (setting ``subreaper``). Without it, a stop still finds
    an agent's escapees by their marker and runtime token across ``/proc`` (a full scan
    instead of two child lists), but what they leave as zombies is init's to reap.
    """
    global _subreaper
    if not _subreaper:
        _subreaper = _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    return _subreaper


def is_subreaper() -> bool:
    """True once :func:`become_subreaper` succeeded in this process."""
    return _subreaper
