"""Is a coordinator serving this home? The home lock, probed without creating anything.

A coordinator holds ``<home>/coordinator.lock`` with an exclusive ``flock`` while it
serves; the kernel drops the lock when the process dies, however it dies. A client probes
it before writing a request, so a mistyped path fails at once (issue 11) instead of
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
