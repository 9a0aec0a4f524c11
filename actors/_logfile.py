"""Agent output to a size-capped, rotated log file (mode 0600), drained to the last byte."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import anyio


class RotatingLog:
    """Appends bytes to *path*; past *max_bytes* it rotates to ``path.1`` .. ``path.N``."""

    def __init__(self, path: Path, *, max_bytes: int = 10 * 2**20, backups: int = 3) -> None:
        if max_bytes <= 0 or backups < 0:
            raise ValueError("max_bytes must be > 0 and backups >= 0")
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def write(self, data: bytes) -> None:
        while data:
            room = self.max_bytes - self._size
            if room <= 0:
                self._rotate()
                continue
            chunk, data = data[:room], data[room:]
            os.write(self._fd, chunk)
            self._size += len(chunk)

    def _rotate(self) -> None:
        os.close(self._fd)
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        else:
            for n in range(self.backups - 1, 0, -1):
                src = self.path.with_name(f"{self.path.name}.{n}")
                if src.exists():
                    os.replace(src, self.path.with_name(f"{self.path.name}.{n + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._fd = self._open()
        self._size = 0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


async def pump(read_fd: int, log: RotatingLog) -> None:
    """Copy a pipe into *log* until EOF: every writer (the whole tree) has closed it."""
    os.set_blocking(read_fd, False)
    try:
        while True:
            try:
                data = os.read(read_fd, 65536)
            except BlockingIOError:
                await anyio.wait_readable(read_fd)
                continue
            if not data:
                return
            log.write(data)
    finally:
        os.close(read_fd)
