"""The file-queue transport: the seed's protocol over the coordinator service, one queue
per caller.

The operator's queue is ``<home>/agent-queue``; each running agent has its own,
``<home>/agents/<id>/agent-queue`` (its ``$ZIGGIE_HOME/agent-queue``). Where a request is
found says who sent it: the service authorizes it for that caller, whatever its
``parent_agent`` claims (see ``_callers``). One directory watcher serves every queue:
an agent's is watched from its spawn to the end of that incarnation.

A request file ``requests/<id>.request.json`` is claimed by an atomic rename into the
coordinator's ``processing/`` (for an agent: ``processing/agents/<id>/``, out of its
reach), read as hostile input (``_loading``), handed to the service with its caller,
answered atomically in that queue's ``responses/<id>.response.json`` (or ``<id>.error.json``
when it cannot even be read as a request), then archived to ``archive/<YYYY-MM-DD>/``
(``.../agents/<id>/`` for an agent's). The service records every answer before this
transport writes its file, so a crash in between re-sends the same answer. On start-up,
requests left in any ``processing/`` or ``requests/`` are finished; those of agents that
no longer run are answered ``forbidden``.

Only transport here: no agent logic.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import time
from collections.abc import Iterator
from typing import Any, Final

import anyio
from anyio.abc import TaskGroup, TaskStatus

from supervisor import describe, is_valid_id
from supervisor.protocol import (
    ALL,
    ARCHIVE,
    PROCESSING,
    REQUEST_SUFFIX,
    DirectoryWatcher,
    error_name,
    response_name,
    watch_directories,
    write_atomic,
)

from ._agents import AGENTS
from ._loading import BadRequest, ByteBudget, load_request, transient
from ._queues import (
    ServedQueue,
    ServingLock,
    error_answer,
    open_agent_queue,
    open_operator_queue,
    resend_answers,
)
from ._service import AgentService
from ._tracing import request_span

_RETRY_FIRST: Final = 0.05
_RETRY_MAX: Final = 5.0
#: Request files held in memory at once, in files of the size limit (see ``ByteBudget``).
_BUDGET_FILES: Final = 8
#: Lifecycle events that end an agent's incarnation: its queue is then drained and left.
_ENDS: Final = frozenset({"exited", "terminated", "timed_out"})


class FileQueue:
    """Serves the operator's queue of *service*'s home, and each running agent's own."""

    def __init__(self, service: AgentService) -> None:
        self.service = service
        self.events = service.rt.events
        self.home = service.home
        self.queue = service.home.queue
        self.max_bytes = service.settings.max_request_bytes
        self.budget = ByteBudget(_BUDGET_FILES * self.max_bytes)
        self.operator: ServedQueue | None = None
        #: Agents' queues by agent id: watched ones, and closing ones still answering.
        self.agents: dict[str, ServedQueue] = {}
        self._watched: dict[int, ServedQueue] = {}
        self._watcher: DirectoryWatcher | None = None
        #: Held from now on: agents deployed by recovery, before :meth:`serve`, link it.
        self._lock = ServingLock(self.home)
        self._tg: TaskGroup | None = None
        self._made: set[str] = set()  # archive directories made already

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Finish what was queued, then answer requests until cancelled."""
        with self._opened(), self.events.listen(self._on_event):
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self._resend_missing_answers()
                self._recover()
                task_status.started()
                assert self._watcher is not None
                while True:
                    for key, name in await self._watcher.wait():
                        if key == ALL:  # events were lost: look at every queue
                            for watched in list(self._watched.values()):
                                self._scan(watched)
                        elif (queue := self._watched.get(key)) is not None:
                            self._dispatch(queue, name)

    @contextlib.contextmanager
    def _opened(self) -> Iterator[None]:
        """The watcher, the serving lock and the operator's queue, for one run."""
        with contextlib.ExitStack() as stack:
            self._watcher = watch_directories(polling=self.service.settings.polling)
            stack.callback(self._watcher.close)
            self.operator = open_operator_queue(self.home)
            stack.callback(self.operator.close)
            self.operator.key = self._watcher.add(self.operator.requests)
            self._watched[self.operator.key] = self.operator
            try:
                yield
            finally:
                for queue in self.agents.values():
                    queue.close()
                self.agents.clear()
                self._watched.clear()
                self._tg = None

    # -- agents' queues: watched while the agent runs ---------------------------------

    def close(self) -> None:
        """Release the serving lock, once every agent has stopped (``Coordinator`` does)."""
        self._lock.close()

    def _on_event(self, event: str, fields: dict[str, Any]) -> None:
        agent_id = fields.get("agent_id")
        if fields.get("kind") != "worker" or not isinstance(agent_id, str):
            return
        if event == "spawned":
            self._attach(agent_id)
        elif event in _ENDS:
            self._detach(agent_id)

    def _attach(self, agent_id: str) -> None:
        """Serve *agent_id*'s queue (from its spawn), and answer what is there already."""
        queue = self.agents.get(agent_id)
        if queue is None:
            if not self.service.journal.has_agent(agent_id):
                return  # a child of the embedding program, not an agent of this home
            queue = self._open(agent_id, create=True)
            if queue is None:
                return
        elif queue.key is not None:
            return  # watched already
        assert self._watcher is not None
        try:
            queue.key = self._watcher.add(queue.requests)
        except OSError as exc:
            self.events.emit("agent_queue_failed", agent_id=agent_id, error=describe(exc))
            return
        queue.closing = False
        self._watched[queue.key] = queue
        self._scan(queue)

    def _detach(self, agent_id: str) -> None:
        """Stop watching *agent_id*'s queue; answer what is left in it, then let it go.

        Its process tree is gone: nothing can arrive but from a process of its next
        incarnation (which attaches again) or a stray (answered at the next start-up).
        """
        queue = self.agents.get(agent_id)
        if queue is None or queue.key is None:
            return
        assert self._watcher is not None
        self._watcher.remove(queue.key)
        self._watched.pop(queue.key, None)
        queue.key = None
        queue.closing = True
        self._scan(queue)
        self._release_if_idle(queue)

    def _open(self, agent_id: str, *, create: bool) -> ServedQueue | None:
        """*agent_id*'s queue, opened now (as closing: not watched), or None."""
        try:
            try:
                queue = open_agent_queue(self.home, agent_id)
            except FileNotFoundError:
                if not create:
                    raise
                # Its directory is made where it runs (another node, for a placed agent).
                self.home.ensure_agent(agent_id)
                queue = open_agent_queue(self.home, agent_id)
        except OSError as exc:
            self.events.emit("agent_queue_failed", agent_id=agent_id, error=describe(exc))
            return None
        queue.closing = True
        self.agents[agent_id] = queue
        return queue

    def _release_if_idle(self, queue: ServedQueue) -> None:
        agent_id = queue.caller.agent_id
        if queue.closing and not queue.names and agent_id is not None:
            if self.agents.get(agent_id) is queue:
                del self.agents[agent_id]
            queue.close()

    # -- start-up -----------------------------------------------------------------------

    def _recover(self) -> None:
        """Finish what a predecessor left: claimed requests, then queued ones, of every
        caller. The queues of agents that run are watched from now on; the others are
        answered once (``forbidden``: their agent is not running) and left."""
        assert self.operator is not None
        try:
            ids = sorted(n for n in os.listdir(self.home.agents) if is_valid_id(n))
        except OSError as exc:
            self.events.emit("scan_failed", directory=str(self.home.agents), error=describe(exc))
            ids = []
        for agent_id in ids:
            if self.service.live(agent_id):
                self._attach(agent_id)
            else:
                self._open(agent_id, create=False)
        claimed = os.path.join(self.queue, PROCESSING, AGENTS)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for agent_id in sorted(os.listdir(claimed)):
                queue = self.agents.get(agent_id) if is_valid_id(agent_id) else None
                if queue is not None:
                    self._scan(queue, claimed=True)
        self._scan(self.operator, claimed=True)
        self._scan(self.operator)
        for queue in list(self.agents.values()):
            if queue.closing:
                self._scan(queue)
                self._release_if_idle(queue)

    def _resend_missing_answers(self) -> None:
        """After a crash, write again every answer the journal has and the disk lost.

        The journal is the source of truth: an answer is committed before its file
        appears. A power cut may still take the file (it is never fsynced) while the
        journal keeps the answer. Answers since the crashed run began whose file is
        missing or empty are written again, each into its caller's queue; a clean stop
        leaves nothing to check.
        """
        previous = self.service.previous_run
        if previous.clean or previous.started_at is None:
            return
        assert self.operator is not None
        answers = self.service.journal.answers_since(previous.started_at)
        resent, failed = resend_answers(answers, self.operator, self.home)
        for request_id, error in failed:
            self.events.emit("answer_resend_failed", request_id=request_id, error=error)
        if resent:
            self.events.emit("answers_resent", request_ids=resent)

    # -- one file -----------------------------------------------------------------------

    def _scan(self, queue: ServedQueue, *, claimed: bool = False) -> None:
        try:
            names = sorted(os.listdir(queue.processing if claimed else queue.requests))
        except FileNotFoundError:
            return  # nothing was ever claimed from it
        except OSError as exc:  # fd exhaustion, say: look again later, never die
            self.events.emit("scan_failed", caller=queue.caller.agent_id, error=describe(exc))
            assert self._tg is not None
            self._tg.start_soon(self._rescan_later, queue, claimed)
            return
        for name in names:
            self._dispatch(queue, name, claimed=claimed)

    async def _rescan_later(self, queue: ServedQueue, claimed: bool) -> None:
        await anyio.sleep(_RETRY_MAX)
        if not queue.closing or queue.names:
            self._scan(queue, claimed=claimed)

    def _dispatch(self, queue: ServedQueue, name: str, *, claimed: bool = False) -> None:
        # Temp and hidden files are a writer's business until they are renamed in.
        if not name.endswith(REQUEST_SUFFIX) or name.startswith(".") or name in queue.names:
            return
        assert self._tg is not None
        queue.names.add(name)
        self._tg.start_soon(self._handle_file, queue, name, claimed)

    async def _handle_file(self, queue: ServedQueue, name: str, claimed: bool) -> None:
        """Claim and answer one file. Total: whatever goes wrong is an event and, where
        possible, an answer; a full disk or fd exhaustion is waited out and tried again.
        Serving never ends because of one file."""
        delay = _RETRY_FIRST
        path = ""
        done = False
        try:
            while True:
                try:
                    path = f"{queue.processing_dir()}/{name}"
                    if not claimed:
                        try:  # the atomic claim, out of the writer's reach
                            os.rename(name, path, src_dir_fd=queue.requests)
                        except FileNotFoundError:
                            return  # claimed already
                        claimed = True
                    await self._process(queue, path, name)
                    done = True
                    return
                except Exception as exc:
                    if not transient(exc):
                        self._failed(queue, path, name, exc)
                        done = claimed  # unclaimed, it is still there: never a hot loop
                        return
                    # Retried from the start: the journal makes it exactly-once (a
                    # request answered before the error gets its recorded answer).
                    self.events.emit(
                        "request_retry", file=name, error=describe(exc), delay=round(delay, 3)
                    )
                    await anyio.sleep(delay)
                    delay = min(delay * 2, _RETRY_MAX)
        finally:
            queue.names.discard(name)
            if done:  # claimed and not cancelled: serving goes on
                self._again(queue, name)
            self._release_if_idle(queue)

    def _again(self, queue: ServedQueue, name: str) -> None:
        """A file of the same name that arrived while this one was handled is next."""
        try:
            os.stat(name, dir_fd=queue.requests, follow_symlinks=False)
        except OSError:
            return
        self._dispatch(queue, name)

    def _failed(self, queue: ServedQueue, path: str, name: str, exc: Exception) -> None:
        """A request that failed for a reason of its own: answered, logged, archived."""
        self.events.emit("request_failed", file=name, error=describe(exc))
        file_id = name[: -len(REQUEST_SUFFIX)]
        try:
            self._answer_error(
                queue, file_id, name, f"cannot process request: {describe(exc)}", code="internal"
            )
            if path:
                self._archive(queue, path, name)
        except Exception as again:  # nothing more we can do; serving goes on
            self.events.emit("request_unanswered", file=name, error=describe(again))

    async def _process(self, queue: ServedQueue, path: str, name: str) -> None:
        file_id = name[: -len(REQUEST_SUFFIX)]
        t0 = time.perf_counter()
        try:
            request, held = await load_request(path, file_id, self.max_bytes, self.budget)
        except BadRequest as exc:
            self._answer_error(queue, file_id, name, str(exc))
            self._archive(queue, path, name)
            return
        try:
            with request_span(self.service.tracing, "file_queue", queue.caller, request) as span:
                answer = await self.service.handle(request, queue.caller)
                span.answered(answer.response)
            write_atomic(response_name(request.request_id), answer.body, dir_fd=queue.responses)
        finally:
            self.budget.give(held)
        self._archive(queue, path, name)
        if answer.response is not None:
            self.events.emit(
                "response_written",
                request_id=request.request_id,
                action=request.action,
                status=answer.response.status,
                agent_id=answer.response.agent_id,
                caller=queue.caller.agent_id,
                ms=round((time.perf_counter() - t0) * 1000, 3),
            )

    def _answer_error(
        self, queue: ServedQueue, file_id: str, name: str, error: str, code: str = "invalid_request"
    ) -> None:
        safe, body = error_answer(file_id, name, error, code)
        write_atomic(error_name(safe), body, dir_fd=queue.responses)
        who = queue.caller.agent_id
        self.events.emit("request_rejected", request_id=safe, file=name, error=error, caller=who)

    def _archive(self, queue: ServedQueue, path: str, name: str) -> None:
        day = f"{self.queue}/{ARCHIVE}/{datetime.date.today().isoformat()}"
        where = f"{day}/{queue.archive}" if queue.archive else day
        if where not in self._made:
            for level in (day, f"{day}/{AGENTS}", where) if queue.archive else (day,):
                with contextlib.suppress(FileExistsError):
                    os.mkdir(level, 0o700)
            self._made.add(where)
        target = f"{where}/{name}"
        n = 1
        while os.path.lexists(target):  # a resubmitted id: keep both
            target = f"{where}/{name}.{n}"
            n += 1
        with contextlib.suppress(FileNotFoundError):
            os.rename(path, target)
