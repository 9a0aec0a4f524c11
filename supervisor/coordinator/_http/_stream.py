"""The live event stream: every lifecycle event, numbered, kept, fanned out to subscribers.

Each event gets the next number of a sequence that never goes back (it continues from
the journal after a restart) and is written to the journal *before* any subscriber sees
it, so ``Last-Event-ID`` resumes with no gap and no duplicate, across reconnects and
coordinator restarts, within the retention (a count and a size in bytes: the oldest go
first). A backlog is read in pages, so a subscriber resuming from far back never holds
more than a page in memory. Subscribers have bounded buffers: one that falls behind is
cut off (it resumes from its last id), never allowed to stall the runtime.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

#: At most this many events go out in one chunk.
_COALESCE: Final = 256
#: Trim the store by count every this many events (by size as soon as it is over).
_TRIM_EVERY: Final = 1000
_SCHEMA: Final = "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, data TEXT NOT NULL)"


class _Subscriber:
    __slots__ = ("dropped", "rx", "tx")

    def __init__(self, buffer: int) -> None:
        self.tx: MemoryObjectSendStream[tuple[int, str]]
        self.rx: MemoryObjectReceiveStream[tuple[int, str]]
        self.tx, self.rx = anyio.create_memory_object_stream[tuple[int, str]](buffer)
        self.dropped = False


class EventHub:
    """Numbers, stores and fans out events; a listener of the runtime's :class:`EventLog`."""

    def __init__(
        self,
        db_path: Path,
        *,
        retention: int = 100_000,
        retention_bytes: int = 64 * 2**20,
        buffer: int = 4096,
        page: int = 256,
    ) -> None:
        self._db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        row = self._db.execute(
            "SELECT MAX(seq), COALESCE(SUM(LENGTH(data)), 0) FROM events"
        ).fetchone()
        self.seq: int = int(row[0] or 0)
        #: Invariant: the characters of every stored event's data (JSON: ASCII, so bytes).
        self.stored_bytes: int = int(row[1])
        self.retention = retention
        self.retention_bytes = retention_bytes
        self.buffer = buffer
        self.page = page
        self._subscribers: set[_Subscriber] = set()
        self._closed = False
        self.dropped = 0  #: subscribers cut off for falling behind

    def close(self) -> None:
        """End every stream cleanly (shutdown): subscribers see their stream finish."""
        self._closed = True
        for sub in list(self._subscribers):
            sub.tx.close()
        self._subscribers.clear()
        self._db.close()

    # -- in --------------------------------------------------------------------------

    def on_event(self, event: str, fields: dict[str, Any]) -> None:
        if self._closed:
            return
        record = {**fields, "event": event, "ts": datetime.now(UTC).isoformat()}
        data = json.dumps(record, default=str, separators=(",", ":"))
        self.seq += 1
        seq = self.seq
        self._db.execute("INSERT INTO events (seq, data) VALUES (?, ?)", (seq, data))
        self.stored_bytes += len(data)
        if seq % _TRIM_EVERY == 0:
            self._drop_upto(seq - self.retention)
        if self.stored_bytes > self.retention_bytes:
            self._trim_bytes()
        for sub in list(self._subscribers):
            try:
                sub.tx.send_nowait((seq, data))
            except anyio.WouldBlock:  # too slow: cut it off, it resumes from its last id
                sub.dropped = True
                self.dropped += 1
                sub.tx.close()
                self._subscribers.discard(sub)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.discard(sub)

    def _drop_upto(self, seq: int) -> None:
        """Drop the stored events up to *seq* (a range of the key: only they are read)."""
        gone = self._db.execute(
            "SELECT COALESCE(SUM(LENGTH(data)), 0) FROM events WHERE seq <= ?", (seq,)
        ).fetchone()[0]
        if gone:
            self._db.execute("DELETE FROM events WHERE seq <= ?", (seq,))
            self.stored_bytes -= int(gone)

    def _trim_bytes(self) -> None:
        """Drop the oldest events until the rest fill at most 3/4 of the byte budget (so
        the next trim is a quarter of the budget away: amortised, not one per event)."""
        keep = self.retention_bytes * 3 // 4
        row = self._db.execute(
            "SELECT seq FROM (SELECT seq, SUM(LENGTH(data)) OVER (ORDER BY seq DESC) AS newer"
            " FROM events) WHERE newer > ? ORDER BY seq DESC LIMIT 1",
            (keep,),
        ).fetchone()
        if row is not None:
            self._drop_upto(int(row[0]))

    # -- out -------------------------------------------------------------------------

    def since(self, last_id: int, limit: int | None = None) -> list[tuple[int, str]]:
        """Stored events after *last_id*, oldest first: one page (at most *limit*,
        default :attr:`page`), so a long backlog is never loaded at once."""
        rows = self._db.execute(
            "SELECT seq, data FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (last_id, self.page if limit is None else limit),
        ).fetchall()
        return [(int(seq), str(data)) for seq, data in rows]

    async def stream(self, last_id: int | None, tail: int = 0) -> AsyncIterator[bytes]:
        """Server-sent events from after *last_id* (None: the last *tail*, then new ones).

        A comment ``: live`` marks the end of the stored backlog: what follows is news.
        """
        if self._closed:
            return
        sub = _Subscriber(self.buffer)
        self._subscribers.add(sub)  # before reading the backlog: nothing slips between
        try:
            if last_id is None:
                last_id = max(self.seq - tail, 0) if tail else self.seq
            last = last_id
            yield b"retry: 1000\n\n"
            while not self._closed:  # the backlog, a page at a time
                page = self.since(last)
                if page:
                    yield b"".join(_frame(seq, data) for seq, data in page)
                    last = page[-1][0]
                if len(page) < self.page:
                    break
            yield b": live\n\n"
            async with sub.rx:
                async for seq, data in sub.rx:
                    # Under load, send what has piled up as one chunk: one write, not many.
                    frames = []
                    while True:
                        if seq < 0:  # ephemeral: no id, never replayed
                            frames.append(f"{data}\n\n".encode())
                        elif seq > last:
                            frames.append(_frame(seq, data))
                            last = seq
                        if len(frames) >= _COALESCE:
                            break
                        try:
                            seq, data = sub.rx.receive_nowait()
                        except (anyio.WouldBlock, anyio.EndOfStream):
                            break
                    if frames:
                        yield b"".join(frames)
            if sub.dropped:
                yield b": too slow; reconnect with Last-Event-ID to resume\n\n"
        finally:
            self._subscribers.discard(sub)
            sub.tx.close()
            sub.rx.close()  # also when the client left during the backlog

    def broadcast(self, kind: str, data: str) -> None:
        """An ephemeral message (no id, not kept): e.g. usage samples for the dashboard."""
        frame = (-1, f"event: {kind}\ndata: {data}")
        for sub in list(self._subscribers):
            with contextlib.suppress(
                anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError
            ):
                sub.tx.send_nowait(frame)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)


def _frame(seq: int, data: str) -> bytes:
    # No "event:" field: every event is a "message", so EventSource.onmessage sees it.
    return f"id: {seq}\ndata: {data}\n\n".encode()


def parse_last_event_id(value: str | None) -> int | None:
    """A ``Last-Event-ID`` header as a sequence number (None if absent or not a number)."""
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        return None
    return number if 0 <= number < math.inf else None
