"""Lifecycle events as structlog calls, one JSON object per line when rendered.

A runtime emits through an :class:`EventLog`. By default it uses the host application's
structlog configuration (``structlog.get_logger("ziggie")``), so events land wherever the
host sends its logs and ``structlog.testing.capture_logs()`` sees them; :func:`json_events`
renders JSON lines to a stream or a file instead, independent of the host's configuration.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Final, TextIO

import structlog

Listener = Callable[[str, dict[str, Any]], None]

#: The longest string an event field keeps, in characters; the rest is cut with a marker.
MAX_FIELD_CHARS: Final = 2048
#: The most items a list (or tuple) in an event keeps; the rest is cut with a marker.
MAX_FIELD_ITEMS: Final = 256
_MAX_DEPTH: Final = 4


def cap_field(value: Any, depth: int = 0) -> Any:
    """*value* bounded for an event: long strings and long lists cut, with a marker.

    Events repeat what they are given (an agent's name is on every event of it), and go
    to the log, the journal's event table and every subscriber: one large input must not
    become many large lines.
    """
    if isinstance(value, str):
        if len(value) <= MAX_FIELD_CHARS:
            return value
        return f"{value[:MAX_FIELD_CHARS]}…[cut {len(value) - MAX_FIELD_CHARS} characters]"
    if depth >= _MAX_DEPTH:
        return value if isinstance(value, int | float | bool | None) else "…[too deep]"
    if isinstance(value, list | tuple):
        kept = [cap_field(v, depth + 1) for v in value[:MAX_FIELD_ITEMS]]
        if len(value) > MAX_FIELD_ITEMS:
            kept.append(f"…[cut {len(value) - MAX_FIELD_ITEMS} items]")
        return kept
    if isinstance(value, dict):
        items = list(value.items())
        capped = {k: cap_field(v, depth + 1) for k, v in items[:MAX_FIELD_ITEMS]}
        if len(items) > MAX_FIELD_ITEMS:
            capped["…"] = f"cut {len(items) - MAX_FIELD_ITEMS} items"
        return capped
    return value


def _bounded(fields: dict[str, Any]) -> dict[str, Any]:
    # The common case (short strings, numbers) costs one pass and no copy.
    for value in fields.values():
        if not (
            isinstance(value, int | float | None)
            or (isinstance(value, str) and len(value) <= MAX_FIELD_CHARS)
        ):
            return {k: cap_field(v) for k, v in fields.items()}
    return fields


class EventLog:
    """Where lifecycle events go. ``enabled=False`` costs one attribute check per event.

    Listeners run synchronously inside whichever task emits, so each one is isolated:
    an error in a listener is reported as its own ``listener_failed`` event and never
    reaches kernel code or the child that emitted.
    """

    def __init__(self, logger: Any | None = None, *, enabled: bool = True) -> None:
        self._logger = logger if logger is not None else structlog.get_logger("ziggie")
        self._listeners: list[Listener] = []
        #: True if an event would go anywhere: emitters skip building fields otherwise.
        #: A plain attribute, kept current by ``enabled`` and ``listen``: it is read on
        #: every lifecycle step.
        self.active = enabled
        self._enabled = enabled

    @property
    def enabled(self) -> bool:
        """Whether events reach the logger (listeners run either way)."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = value
        self.active = value or bool(self._listeners)

    def emit(self, event: str, **fields: Any) -> None:
        """Send *event* to every listener, then to the logger; never raises an Exception.

        Every field is bounded first (:func:`cap_field`): a long string or list is cut,
        with a marker saying how much.
        """
        fields = _bounded(fields)
        for listener in tuple(self._listeners):
            try:
                listener(event, fields)
            except Exception as exc:
                self._listener_failed(listener, event, exc)
        if self._enabled:
            try:
                self._logger.info(event, **fields)
            except Exception as exc:  # a broken sink must not crash a child either
                self._listener_failed(self._logger, event, exc)

    def _listener_failed(self, listener: object, event: str, exc: Exception) -> None:
        if event == "listener_failed":  # its own report failed too: stop there
            return
        self.emit(
            "listener_failed",
            listener=getattr(listener, "__qualname__", repr(listener)),
            event_name=event,
            error=f"{type(exc).__name__}: {exc}",
        )

    @contextmanager
    def listen(self, listener: Listener) -> Iterator[None]:
        """Also call *listener(event, fields)* for every event while the block runs."""
        self._listeners.append(listener)
        self.active = True
        try:
            yield
        finally:
            self._listeners.remove(listener)
            self.active = self._enabled or bool(self._listeners)


def _processors() -> list[Any]:
    return [
        # No add_log_level: "level" is the agent's level (L1/L2/L3) in our events.
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        structlog.processors.JSONRenderer(sort_keys=False),
    ]


class _Tee:
    """A structlog logger writing each rendered line to several text streams."""

    def __init__(self, streams: list[IO[str] | _RotatingFile]) -> None:
        self._streams = streams

    def msg(self, message: str) -> None:
        for stream in self._streams:
            stream.write(message + "\n")
            stream.flush()

    info = debug = warning = error = critical = exception = msg


class _RotatingFile:
    """A 0600 file of whole lines that never grows past *max_bytes*: a line that would
    take it past becomes the first of a new file, the old one kept as ``<path>.1``.

    Each line is one ``write`` to an ``O_APPEND`` descriptor, so a reader never sees a
    torn line; the rename keeps every line (a copy-and-truncate loses those written in
    between).
    """

    def __init__(self, path: str, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._fd = -1
        self.size = 0
        self._open()

    def _open(self) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        self._fd = os.open(self.path, flags, 0o600)
        self.size = os.fstat(self._fd).st_size

    def write(self, text: str) -> int:
        data = text.encode("utf-8", "backslashreplace")
        if self.size and self.size + len(data) > self.max_bytes:
            with contextlib.suppress(FileNotFoundError):  # someone moved it away already
                os.replace(self.path, f"{self.path}.1")
            os.close(self._fd)
            self._open()
        os.write(self._fd, data)
        self.size += len(data)
        return len(text)

    def flush(self) -> None:
        pass  # unbuffered: every line is written at once


def json_events(
    *targets: TextIO | str | os.PathLike[str], max_bytes: int | None = None
) -> EventLog:
    """Render events as JSON lines to each target: a text stream or a path (default stderr).

    A path is opened for appending with mode 0600, line-buffered. With *max_bytes*, a path
    is rotated by size as it is written: past it, the file becomes ``<path>.1`` (replacing
    the previous one) and a new file starts, so the two together stay within twice that.
    """
    streams: list[IO[str] | _RotatingFile] = []
    for target in targets or (sys.stderr,):
        if isinstance(target, str | os.PathLike) and max_bytes is not None:
            streams.append(_RotatingFile(os.fspath(target), max_bytes))
        elif isinstance(target, str | os.PathLike):
            fd = os.open(Path(target), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            streams.append(os.fdopen(fd, "a", buffering=1, encoding="utf-8"))
        else:
            streams.append(target)
    logger = structlog.wrap_logger(_Tee(streams), processors=_processors(), context_class=dict)
    return EventLog(logger)


def no_events() -> EventLog:
    """An event log that drops everything (listeners still run)."""
    return EventLog(structlog.get_logger("ziggie"), enabled=False)
