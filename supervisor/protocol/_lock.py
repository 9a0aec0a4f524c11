"""Is a coordinator serving this home? The home lock, probed without creating anything.

A coordinator holds ``<home>/coordinator.lock`` with an exclusive ``flock`` while it
serves; the kernel drops the lock when the process dies, however it dies. A client probes
it before writing a request, so a mistyped path fails at once instead of
waiting out its timeout beside a queue nobody reads.
"""

from __future__ import annotations

import fcntl
import os

from ._queue import LOCK_NAME


def coordinator_serves(home: str | os.PathLike[str]) -> bool:
    """True if a coordinator holds *home*'s lock now. Creates no file, no directory.

    The probe takes a *shared* lock for a few microseconds and drops it: it never blocks,
    and two clients probing at once do not disturb each other. (A coordinator starting at
    that very microsecond would see the home as taken; it reports that, nothing is lost.)
    """
    try:
        fd = os.open(os.path.join(home, LOCK_NAME), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # no lock file: no coordinator ever served here (or not readable)
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # pragma: no cover - a filesystem without flock: assume it serves
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def lock_holder(home: str | os.PathLike[str]) -> int | None:
    """The pid of the process holding *home*'s coordinator lock, as the kernel says.

    Read from ``/proc/locks`` (the exclusive ``FLOCK`` on the lock file's device and
    inode), then confirmed: that process has the file open. Never the pid written in the
    file: whoever can write the file could name any process there. None when nothing holds
    it, or when the kernel does not say (no ``/proc``).
    """
    try:
        info = os.stat(os.path.join(home, LOCK_NAME))
        with open("/proc/locks", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    wanted = (os.major(info.st_dev), os.minor(info.st_dev), info.st_ino)
    for line in lines:
        # "4: FLOCK  ADVISORY  WRITE 17790 fe:00:2147112 0 EOF" ("4: -> FLOCK" is a waiter)
        parts = line.split()
        if len(parts) < 6 or parts[1:4] != ["FLOCK", "ADVISORY", "WRITE"]:
            continue
        try:
            pid = int(parts[4])
            major, minor, inode = parts[5].split(":")
            where = (int(major, 16), int(minor, 16), int(inode))
        except ValueError:
            continue
        if where == wanted and pid > 0 and _has_open(pid, info):
            return pid
    return None


def _has_open(pid: int, info: os.stat_result) -> bool:
    """True if process *pid* has the file of *info* open (one of its descriptors)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            st = os.stat(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (info.st_dev, info.st_ino):
            return True
    return False
