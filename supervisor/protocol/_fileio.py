"""Atomic file writes: every file a reader may pick up appears whole or not at all.

The directory written into may be shared with someone hostile (an agent's own queue): the
temp file is created with ``O_EXCL | O_NOFOLLOW`` under an unpredictable name, so a symlink
planted at a temp name is never followed, and the final ``rename`` replaces whatever sits at
the target name (a planted symlink included) instead of writing through it.
"""

from __future__ import annotations

import contextlib
import os
import secrets

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def write_atomic(
    path: str | os.PathLike[str], data: str | bytes, *, dir_fd: int | None = None
) -> None:
    """Write *data* to a new hidden temp file beside *path* (mode 0600), then rename it in.

    Readers watching the directory see one rename (IN_MOVED_TO) of a complete file. With
    *dir_fd*, *path* is a name in that directory (opened by the caller, so a directory
    swapped for a symlink after it was opened cannot redirect the write).
    """
    target = os.fspath(path)
    head, name = os.path.split(target)
    body = data.encode() if isinstance(data, str) else data
    while True:
        tmp = os.path.join(head, f".{name}.{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(tmp, _CREATE, 0o600, dir_fd=dir_fd)
            break
        except FileExistsError:  # someone's file at that name (2**-64): another name
            continue
    try:
        try:
            view = memoryview(body)
            while view:  # a large write may be partial
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, target, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
