"""Reading a claimed request file as if an attacker wrote it, within a memory budget.

A request file may be anything its writer could make: a FIFO (opening it for reading would
block the event loop), a symlink (reading through it would read another file), a device,
a file that grows while it is read, hundreds of files of the size limit at once. So:
``lstat`` for a regular file within the size limit; a share of the :class:`ByteBudget`;
open with ``O_NOFOLLOW | O_NONBLOCK``, ``fstat`` that it is the very file seen (a FIFO
swapped in after the ``lstat`` is caught here, and never blocks); read at most what was
seen. What fails is a :class:`BadRequest`, answered with an error file.
"""

from __future__ import annotations

import collections
import errno
import json
import os
import sqlite3
import stat
from dataclasses import dataclass, field
from typing import Final

import anyio
from pydantic import ValidationError

from supervisor.protocol import DeploymentRequest, validation_summary


class BadRequest(Exception):
    """A request file that cannot be read as a valid request; answered with an error file."""


#: Errors of the machine, not of the request: a full disk, no file descriptors or memory
#: left. They pass; the request waits in ``processing/`` and is tried again.
TRANSIENT_ERRNOS: Final = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN}
)

_OPEN: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
#: What a request costs of the budget at least, however small its file: the budget also
#: bounds how many requests are in memory (and open) at once.
FLOOR: Final = 64 * 1024


#: SQLite's results that waiting may cure: a full disk, a busy or locked database, a file
#: it could not open (no descriptor left).
_TRANSIENT_SQLITE: Final = frozenset(
    {sqlite3.SQLITE_FULL, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN}
)


def transient(exc: BaseException) -> bool:
    """True for an error that waiting may cure (a full disk, fd exhaustion)."""
    if isinstance(exc, OSError):
        return exc.errno in TRANSIENT_ERRNOS
    if isinstance(exc, sqlite3.Error):  # by SQLite's primary result code, never its text
        code = getattr(exc, "sqlite_errorcode", None)  # absent on an error not from SQLite
        return code is not None and (code & 0xFF) in _TRANSIENT_SQLITE
    return False


@dataclass(eq=False, slots=True)
class _Waiter:
    size: int
    event: anyio.Event = field(default_factory=anyio.Event)
    granted: bool = False


class ByteBudget:
    """Bytes of request files in memory at once, handed out first come, first served.

    A request takes its file's size (at least :data:`FLOOR`) before it is read and gives
    it back once answered, so 400 queued files of 1 MB are read a few at a time, while a
    small request waits only when the budget is spent.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.free = total
        self._waiting: collections.deque[_Waiter] = collections.deque()

    async def take(self, size: int) -> int:
        """Wait for *size* bytes (bounded to ``[FLOOR, total]``); the amount to give back."""
        size = min(max(size, FLOOR), self.total)
        if not self._waiting and self.free >= size:
            self.free -= size
            return size
        waiter = _Waiter(size)
        self._waiting.append(waiter)
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.granted:  # handed over just as we were cancelled
                self.give(size)
            else:
                self._waiting.remove(waiter)
                self._wake()
            raise
        return size

    def give(self, size: int) -> None:
        self.free += size
        self._wake()

    def _wake(self) -> None:
        # Invariant: the head of the line is the oldest waiter; no one overtakes it.
        while self._waiting and self._waiting[0].size <= self.free:
            waiter = self._waiting.popleft()
            self.free -= waiter.size
            waiter.granted = True
            waiter.event.set()


async def load_request(
    path: str, file_id: str, cap: int, budget: ByteBudget
) -> tuple[DeploymentRequest, int]:
    """The request in the claimed file *path*, and the budget it holds (give it back)."""
    try:
        seen = os.lstat(path)
    except FileNotFoundError as exc:
        raise BadRequest("request file vanished") from exc
    if not stat.S_ISREG(seen.st_mode):
        kind = "symlink" if stat.S_ISLNK(seen.st_mode) else "directory or special file"
        raise BadRequest(f"not a regular file ({kind}); request files must be plain files")
    if seen.st_size > cap:
        raise BadRequest(f"request file is {seen.st_size} bytes; the limit is {cap}")
    held = await budget.take(seen.st_size)
    try:
        return _parse(_read(path, seen), file_id), held
    except BaseException:
        budget.give(held)
        raise


def _read(path: str, seen: os.stat_result) -> bytes:
    try:
        fd = os.open(path, _OPEN)
    except FileNotFoundError as exc:
        raise BadRequest("request file vanished") from exc
    except OSError as exc:
        if exc.errno in TRANSIENT_ERRNOS:
            raise  # the machine's trouble, not the request's: tried again later
        if exc.errno == errno.ELOOP:
            msg = "not a regular file (symlink); request files must be plain files"
            raise BadRequest(msg) from exc
        raise BadRequest(f"cannot read request file: {exc.strerror or exc}") from exc
    try:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (
            seen.st_dev,
            seen.st_ino,
        ):
            raise BadRequest(
                "not a regular file (replaced while being read); request files must be plain files"
            )
        chunks, total = [], 0
        while total <= seen.st_size:  # one byte past what was seen says it grew
            chunk = os.read(fd, seen.st_size + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        if exc.errno in TRANSIENT_ERRNOS:
            raise
        raise BadRequest(f"cannot read request file: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if total > seen.st_size:
        raise BadRequest("request file grew while it was read; write it whole, then rename it")
    return b"".join(chunks)


def _parse(raw: bytes, file_id: str) -> DeploymentRequest:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"request file is not UTF-8: {exc.reason} at byte {exc.start}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from exc
    if not isinstance(data, dict):
        raise BadRequest("invalid request: the JSON document must be an object")
    try:
        request = DeploymentRequest.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(f"invalid request: {validation_summary(exc)}") from exc
    if request.request_id != file_id:
        raise BadRequest(
            f"request_id {request.request_id!r} does not match the file name {file_id!r}"
        )
    return request
