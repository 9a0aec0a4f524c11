"""Reading an answer file: as an attacker may have placed it, never trusted to be one.

The responses directory is shared: whoever can write there can put a FIFO, a symlink, a
huge file or junk where an answer is awaited. Opened non-blocking and without following
a symlink, checked with ``fstat``, read with a cap; what is not an answer becomes a
``failed`` answer with ``code="invalid_response"``, never a hang or a traceback.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from typing import Any, Final

from pydantic import ValidationError

from supervisor.protocol import DeploymentResponse, ErrorCode, error_name, response_name


def read_answer(responses: str, request_id: str) -> DeploymentResponse | None:
    """The answer to *request_id* in the directory *responses*, if one is there (its
    response, else its error file).

    Whatever is there is read as an attacker may have placed it: never blocking (a
    FIFO), never through a symlink, never more than :data:`MAX_ANSWER_BYTES`. What
    cannot be read as an answer is a ``failed`` answer, ``code="invalid_response"``.
    """
    name = response_name(request_id)
    try:
        raw = _read_file(f"{responses}/{name}")
        if raw is not None:
            return DeploymentResponse.model_validate(_object(raw))
        name = error_name(request_id)
        raw = _read_file(f"{responses}/{name}")
        if raw is None:
            return None
        data = _object(raw)
    except (_Unreadable, ValueError) as exc:  # ValidationError, JSONDecodeError
        return failed(
            request_id,
            "unknown",
            "Unreadable answer",
            f"{name}: {_why(exc)}",
            "invalid_response",
        )
    code = data.get("code")
    return failed(
        request_id,
        "unknown",
        "Request processing failed",
        str(data.get("error", "Unknown error")),
        code if code == "invalid_request" else None,
    )


#: The largest answer file a client reads (a list of every agent stays far below it).
MAX_ANSWER_BYTES: Final = 64 * 2**20


class _Unreadable(Exception):
    """An answer file that is no answer: a FIFO, a symlink, a device, too large."""


def _read_file(path: str) -> bytes | None:
    """The bytes of the regular file *path*, or None if there is none.

    Opened non-blocking and without following a symlink, then checked with ``fstat``:
    a FIFO renamed in would otherwise block the reader, and the event loop with it.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _Unreadable("a symlink, not a regular file") from None
        raise _Unreadable(f"cannot open it: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _Unreadable("not a regular file")
        chunks = []
        left = MAX_ANSWER_BYTES + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        if left <= 0:
            raise _Unreadable(f"larger than {MAX_ANSWER_BYTES} bytes")
        return b"".join(chunks)
    except OSError as exc:
        raise _Unreadable(f"cannot read it: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _object(raw: bytes) -> dict[str, Any]:
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise _Unreadable("the JSON document is not an object")
    return data


def _why(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return f"not an answer: {first_error(exc)}"
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
    return str(exc)


def failed(
    request_id: str, agent_id: str, message: str, error: str, code: ErrorCode | None = None
) -> DeploymentResponse:
    """A ``failed`` answer made on the client's side (a timeout, an unreadable file)."""
    return DeploymentResponse(
        request_id=request_id,
        status="failed",
        agent_id=agent_id,
        message=message,
        error=error,
        code=code,
    )


def first_error(exc: ValidationError) -> str:
    """``field.path: message`` of the first validation error."""
    err = exc.errors()[0]
    where = ".".join(str(x) for x in err["loc"])
    return f"{where}: {err['msg']}" if where else str(err["msg"])
