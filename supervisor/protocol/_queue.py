"""The file queue's layout: directories and file names, shared by both of its ends.

``<queue>/requests/<request_id>.request.json`` in, ``responses/<id>.response.json`` (or
``<id>.error.json``) out, ``processing/`` while claimed, ``archive/<YYYY-MM-DD>/`` after.
"""

from __future__ import annotations

from typing import Final

REQUESTS: Final = "requests"
PROCESSING: Final = "processing"
RESPONSES: Final = "responses"
ARCHIVE: Final = "archive"
#: Every directory of a queue, in the order the coordinator creates them.
DIRECTORIES: Final = (REQUESTS, PROCESSING, RESPONSES, ARCHIVE)

REQUEST_SUFFIX: Final = ".request.json"
RESPONSE_SUFFIX: Final = ".response.json"
ERROR_SUFFIX: Final = ".error.json"

#: In a coordinator's home (the queue's parent): the file it holds locked (flock,
#: exclusive) for as long as it serves. Clients probe it to fail fast.
LOCK_NAME: Final = "coordinator.lock"
#: In a coordinator's home: where its HTTP API answers (``{"url": ..., "pid": ...}``),
#: while it serves one.
HTTP_FILE: Final = "http.json"


def request_name(request_id: str) -> str:
    return request_id + REQUEST_SUFFIX


def response_name(request_id: str) -> str:
    return request_id + RESPONSE_SUFFIX


def error_name(request_id: str) -> str:
    """The seed's client waits for ``<id>.error.json`` (its server wrote another name)."""
    return request_id + ERROR_SUFFIX
