"""The file-queue transport: the seed's protocol over the coordinator service.

A request file ``requests/<id>.request.json`` is claimed by an atomic rename into
``processing/``, handed to the service, answered atomically in
``responses/<id>.response.json`` (or ``<id>.error.json`` when it cannot even be read as a
request), then archived to ``archive/<YYYY-MM-DD>/``. The service records every answer
before this transport writes its file, so a crash in between re-sends the same answer.
On start-up, requests left in ``processing/`` or ``requests/`` are finished.

Only transport here: no agent logic.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import hashlib
import json
import os
import sqlite3
import stat
import time
from typing import Final

import anyio
from anyio.abc import TaskGroup, TaskStatus
from pydantic import ValidationError

from supervisor import describe, is_valid_id
from supervisor.protocol import (
    PROCESSING,
    REQUEST_SUFFIX,
    REQUESTS,
    RESCAN,
    RESPONSES,
    DeploymentRequest,
    error_name,
    response_name,
    validation_summary,
    watch_directory,
    write_atomic,
)

from ._service import AgentService


class BadRequest(Exception):
    """A request file that cannot be read as a valid request; answered with an error file."""


#: Errors of the machine, not of the request: a full disk, no file descriptors or memory
#: left. They pass; the request waits in ``processing/`` and is tried again (item 2).
_TRANSIENT: Final = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN}
)
_RETRY_FIRST: Final = 0.05
_RETRY_MAX: Final = 5.0


def transient(exc: BaseException) -> bool:
    """True for an error that waiting may cure (a full disk, fd exhaustion)."""
    if isinstance(exc, OSError):
        return exc.errno in _TRANSIENT
    if isinstance(exc, sqlite3.OperationalError):  # "database or disk is full", "locked"
        text = str(exc)
        return "full" in text or "locked" in text or "unable to open" in text
    return False


class FileQueue:
    """Serves ``<home>/agent-queue`` with the agents of *service*."""

    def __init__(self, service: AgentService) -> None:
        self.service = service
        self.events = service.rt.events
        self.queue = service.home.queue
        self.max_bytes = service.settings.max_request_bytes
        self._inflight: set[str] = set()
        self._tg: TaskGroup | None = None
        # Plain strings for the per-request hot path (pathlib costs more than the syscalls).
        self._requests_dir = str(self.queue / REQUESTS)
        self._responses_dir = str(self.queue / RESPONSES)
        self._processing_dir = str(self.queue / PROCESSING)
        self._archive_day = ""

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Finish what was queued, then answer requests until cancelled."""
        watcher = watch_directory(self._requests_dir, polling=self.service.settings.polling)
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self._resend_missing_answers()
                self._scan(self._processing_dir)
                self._scan(self._requests_dir)
                task_status.started()
                while True:
                    names = await watcher.wait()
                    if RESCAN in names:
                        self._scan(self._requests_dir)
                    for name in names:
                        self._dispatch(self._requests_dir, name)
        finally:
            watcher.close()

    def _scan(self, directory: str) -> None:
        try:
            names = sorted(os.listdir(directory))
        except OSError as exc:  # fd exhaustion, say: look again later, never die (item 2)
            self.events.emit("scan_failed", directory=directory, error=describe(exc))
            assert self._tg is not None
            self._tg.start_soon(self._rescan_later, directory)
            return
        for name in names:
            self._dispatch(directory, name)

    async def _rescan_later(self, directory: str) -> None:
        await anyio.sleep(_RETRY_MAX)
        self._scan(directory)

    def _resend_missing_answers(self) -> None:
        """After a crash, write again every answer the journal has and the disk lost.

        Issue 10, item 12: the journal is the source of truth. An answer is committed
        before its file appears; a power cut may still take the file (it is never fsynced)
        while the journal keeps the answer. Answers since the crashed run began whose file
        is missing or empty are written again; a clean stop leaves nothing to check.
        """
        previous = self.service.previous_run
        if previous.clean or previous.started_at is None:
            return
        resent = []
        for request_id, body in self.service.journal.answers_since(previous.started_at):
            path = f"{self._responses_dir}/{response_name(request_id)}"
            try:
                if os.path.getsize(path) > 0:
                    continue
            except OSError:
                pass
            try:
                write_atomic(path, body)
            except OSError as exc:
                self.events.emit("answer_resend_failed", request_id=request_id, error=str(exc))
                continue
            resent.append(request_id)
        if resent:
            self.events.emit("answers_resent", request_ids=resent)

    def _dispatch(self, directory: str, name: str) -> None:
        # Temp and hidden files are a writer's business until they are renamed in.
        if not name.endswith(REQUEST_SUFFIX) or name.startswith(".") or name in self._inflight:
            return
        assert self._tg is not None
        self._inflight.add(name)
        self._tg.start_soon(self._handle_file, directory, name)

    async def _handle_file(self, directory: str, name: str) -> None:
        """Claim and answer one file. Total (issue 10, item 2): whatever goes wrong is an
        event and, where possible, an answer; a full disk or fd exhaustion is waited out
        and tried again. Serving never ends because of one file."""
        delay = _RETRY_FIRST
        claimed = f"{self._processing_dir}/{name}"
        try:
            while True:
                try:
                    if directory != self._processing_dir:
                        try:
                            os.rename(f"{directory}/{name}", claimed)  # the atomic claim
                        except FileNotFoundError:
                            return  # already claimed
                        directory = self._processing_dir
                    await self._process(claimed, name)
                    return
                except Exception as exc:
                    if not transient(exc):
                        self._failed(claimed, name, exc)
                        return
                    # Retried from the start: the journal makes it exactly-once (a
                    # request answered before the error gets its recorded answer).
                    self.events.emit(
                        "request_retry", file=name, error=describe(exc), delay=round(delay, 3)
                    )
                    await anyio.sleep(delay)
                    delay = min(delay * 2, _RETRY_MAX)
        finally:
            self._inflight.discard(name)

    def _failed(self, path: str, name: str, exc: Exception) -> None:
        """A request that failed for a reason of its own: answered, logged, archived."""
        self.events.emit("request_failed", file=name, error=describe(exc))
        file_id = name[: -len(REQUEST_SUFFIX)]
        try:
            self._answer_error(
                file_id, name, f"cannot process request: {describe(exc)}", code="internal"
            )
            self._archive(path, name)
        except Exception as again:  # nothing more we can do; serving goes on
            self.events.emit("request_unanswered", file=name, error=describe(again))

    async def _process(self, path: str, name: str) -> None:
        file_id = name[: -len(REQUEST_SUFFIX)]
        t0 = time.perf_counter()
        try:
            request = self._load(path, file_id)
        except BadRequest as exc:
            self._answer_error(file_id, name, str(exc))
            self._archive(path, name)
            return
        answer = await self.service.handle(request)
        write_atomic(f"{self._responses_dir}/{response_name(request.request_id)}", answer.body)
        self._archive(path, name)
        if answer.response is not None:
            self.events.emit(
                "response_written",
                request_id=request.request_id,
                action=request.action,
                status=answer.response.status,
                agent_id=answer.response.agent_id,
                ms=round((time.perf_counter() - t0) * 1000, 3),
            )

    def _load(self, path: str, file_id: str) -> DeploymentRequest:
        try:
            info = os.lstat(path)
        except FileNotFoundError as exc:
            raise BadRequest("request file vanished") from exc
        if not stat.S_ISREG(info.st_mode):
            kind = "symlink" if stat.S_ISLNK(info.st_mode) else "directory or special file"
            raise BadRequest(f"not a regular file ({kind}); request files must be plain files")
        cap = self.max_bytes
        if info.st_size > cap:
            raise BadRequest(f"request file is {info.st_size} bytes; the limit is {cap}")
        try:
            with open(path, "rb") as f:
                raw = f.read(cap + 1)
        except OSError as exc:
            if exc.errno in _TRANSIENT:
                raise  # the machine's trouble, not the request's: tried again later
            raise BadRequest(f"cannot read request file: {exc.strerror or exc}") from exc
        if len(raw) > cap:
            raise BadRequest(f"request file exceeds the limit of {cap} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest(
                f"request file is not UTF-8: {exc.reason} at byte {exc.start}"
            ) from exc
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

    def _answer_error(
        self, file_id: str, name: str, error: str, code: str = "invalid_request"
    ) -> None:
        # The error file is named from the file name, so the seed's client finds it; a name
        # that is not a safe id gets a digest instead, never a path of its choosing.
        safe = file_id if is_valid_id(file_id) else "invalid-" + _digest(name)
        write_atomic(
            f"{self._responses_dir}/{error_name(safe)}",
            json.dumps(
                {
                    "version": "1.0",
                    "request_id": safe,
                    "status": "failed",
                    "error": error,
                    "code": code,
                    "original_file": name,
                    "timestamp": datetime.datetime.now(datetime.UTC).isoformat(),
                },
                indent=2,
            ),
        )
        self.events.emit("request_rejected", request_id=safe, file=name, error=error)

    def _archive(self, path: str, name: str) -> None:
        today = datetime.date.today().isoformat()
        day = f"{self.queue}/archive/{today}"
        if self._archive_day != today:
            os.makedirs(day, mode=0o700, exist_ok=True)
            self._archive_day = today
        target = f"{day}/{name}"
        n = 1
        while os.path.lexists(target):  # a resubmitted id: keep both
            target = f"{day}/{name}.{n}"
            n += 1
        with contextlib.suppress(FileNotFoundError):
            os.rename(path, target)


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:16]
