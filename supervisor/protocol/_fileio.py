"""Atomic file writes: every file a reader may pick up appears whole or not at all."""

from __future__ import annotations

import contextlib
import os


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Write *data* to a hidden temp file beside *path* (mode 0600), then rename it in.

    Readers watching the directory see one rename (IN_MOVED_TO) of a complete file. Plain
    string paths: the coordinator calls this once per request.
    """
    target = os.fspath(path)
    head, name = os.path.split(target)
    tmp = os.path.join(head, f".{name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        try:
            os.write(fd, data.encode() if isinstance(data, str) else data)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
