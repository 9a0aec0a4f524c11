"""The file-queue coordinator: the seed's protocol, served by a supervision runtime.

A request file ``requests/<id>.request.json`` is claimed by an atomic rename into
``processing/``, answered atomically in ``responses/<id>.response.json`` (or
``<id>.error.json`` when it cannot even be read), then archived to
``archive/<YYYY-MM-DD>/``. Every request gets exactly one answer: the journal records it
before the file is written, and a request id seen before is answered again with the
recorded answer, never executed twice. On start-up, requests left in ``processing/`` or
``requests/`` are finished, and agents a crashed predecessor left running are stopped (and
restarted where their policy says so).

This is a front-end: it uses the kernel's public API and the process actors.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import stat
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus
from pydantic import ValidationError

from actors import (
    AgentHome,
    AgentRefused,
    ProcessHandle,
    agent_child_spec,
    process_start_time,
    stop_strays,
)

from . import _nesting
from ._dirwatch import RESCAN, watch_directory
from ._errors import StartError, SupervisorError, ZiggieError, describe
from ._fileio import write_atomic
from ._ids import is_valid_id
from ._journal import LIVE_STATES, Journal
from ._policy import Restart
from ._runtime import Runtime
from ._schemas import (
    AgentSpec,
    DeploymentRequest,
    DeploymentResponse,
)
from ._settings import Settings
from ._tree import ChildSpec, ChildState

SUFFIX = ".request.json"
_MUTATING = frozenset({"deploy_agent", "terminate_agent", "restart_agent"})

#: Journal states by how an agent's incarnation ended.
_ENDED = {
    "normal": "completed",
    "error": "failed",
    "shutdown": "terminated",
    "timeout": "timed_out",
}
#: The seed's response status for each journal state.
_STATUS = {
    "starting": "running",
    "running": "running",
    "completed": "completed",
    "failed": "failed",
    "terminated": "terminated",
    "timed_out": "terminated",
    "lost": "failed",
}


class BadRequest(Exception):
    """A request file that cannot be read as a valid request; answered with an error file."""


class Coordinator:
    """Serves ``<home>/agent-queue`` with the agents of *runtime*."""

    def __init__(self, runtime: Runtime, settings: Settings) -> None:
        self.rt = runtime
        self.settings = settings
        self.home = AgentHome.at(settings.home)
        self.queue = self.home.queue
        self.journal = Journal(self.home.root / "journal.sqlite3")
        self._deploys = anyio.CapacityLimiter(settings.concurrency)
        self._inflight: set[str] = set()
        self._tg: TaskGroup | None = None
        # Plain strings for the per-request hot path (pathlib costs more than the syscalls).
        self._responses_dir = str(self.queue / "responses")
        self._processing_dir = str(self.queue / "processing")
        self._archive_day = ""
        self._listen = runtime.events.listen(self._on_event)

    # -- serving ---------------------------------------------------------------------

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Recover, then answer requests until cancelled."""
        watcher = watch_directory(self.queue / "requests", polling=self.settings.polling)
        try:
            with self._listen:
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    await self.recover()
                    self.rt.events.emit("coordinator_ready", home=str(self.home.root))
                    task_status.started()
                    while True:
                        names = await watcher.wait()
                        if RESCAN in names:
                            self._scan(self.queue / "requests")
                        for name in names:
                            self._dispatch(self.queue / "requests", name)
        finally:
            watcher.close()
            self.journal.close()

    def _scan(self, directory: Path) -> None:
        for name in sorted(os.listdir(directory)):
            self._dispatch(directory, name)

    def _dispatch(self, directory: Path, name: str) -> None:
        # Temp and hidden files are a writer's business until they are renamed in.
        if not name.endswith(SUFFIX) or name.startswith(".") or name in self._inflight:
            return
        assert self._tg is not None
        self._inflight.add(name)
        self._tg.start_soon(self._handle_file, directory, name)

    async def _handle_file(self, directory: Path, name: str) -> None:
        try:
            claimed = f"{self._processing_dir}/{name}"
            if str(directory) != self._processing_dir:
                try:
                    os.rename(f"{directory}/{name}", claimed)  # the atomic claim
                except FileNotFoundError:
                    return  # already claimed
            await self._process(claimed, name)
        finally:
            self._inflight.discard(name)

    async def _process(self, path: str, name: str) -> None:
        file_id = name[: -len(SUFFIX)]
        t0 = time.perf_counter()
        try:
            request = self._load(path, file_id)
        except BadRequest as exc:
            self._answer_error(file_id, name, str(exc))
            self._archive(path, name)
            return
        recorded = self.journal.response_for(request.request_id)
        if recorded is not None:  # seen before: the same answer again, never a re-run
            self._write_response(request.request_id, recorded)
            self.rt.events.emit("duplicate_request", request_id=request.request_id)
            self._archive(path, name)
            return
        mutating = request.action in _MUTATING
        if mutating:  # recorded before it acts: a crash mid-deploy is found on restart
            self.journal.record_request(request.request_id, request.action)
        self.rt.events.emit(
            "request_received",
            request_id=request.request_id,
            action=request.action,
            parent_agent=request.parent_agent,
            target_agent_id=request.target_agent_id
            or (request.agent_spec.id if request.agent_spec else None),
        )
        response = await self._execute(request)
        body = response.model_dump_json(indent=2)
        # Recorded before the file is written: a crash in between re-sends this answer.
        if mutating:
            self.journal.record_response(request.request_id, body)
        else:
            self.journal.record_answered(request.request_id, request.action, body)
        self._write_response(request.request_id, body)
        self._archive(path, name)
        self.rt.events.emit(
            "response_written",
            request_id=request.request_id,
            action=request.action,
            status=response.status,
            agent_id=response.agent_id,
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
        cap = self.settings.max_request_bytes
        if info.st_size > cap:
            raise BadRequest(f"request file is {info.st_size} bytes; the limit is {cap}")
        with open(path, "rb") as f:
            raw = f.read(cap + 1)
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
            raise BadRequest(f"invalid request: {_errors(exc)}") from exc
        if request.request_id != file_id:
            raise BadRequest(
                f"request_id {request.request_id!r} does not match the file name {file_id!r}"
            )
        return request

    # -- answering -------------------------------------------------------------------

    def _write_response(self, request_id: str, body: str) -> None:
        write_atomic(f"{self._responses_dir}/{request_id}.response.json", body)

    def _answer_error(self, file_id: str, name: str, error: str) -> None:
        # The error file is named from the file name, so the seed's client finds it; a name
        # that is not a safe id gets a digest instead, never a path of its choosing.
        safe = file_id if is_valid_id(file_id) else "invalid-" + _digest(name)
        error_file = f"{self._responses_dir}/{safe}.error.json"
        write_atomic(
            error_file,
            json.dumps(
                {
                    "version": "1.0",
                    "request_id": safe,
                    "status": "failed",
                    "error": error,
                    "original_file": name,
                    "timestamp": datetime.datetime.now(datetime.UTC).isoformat(),
                },
                indent=2,
            ),
        )
        self.rt.events.emit("request_rejected", request_id=safe, file=name, error=error)

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

    # -- actions ---------------------------------------------------------------------

    async def _execute(self, request: DeploymentRequest) -> DeploymentResponse:
        try:
            if request.action == "deploy_agent":
                async with self._deploys:
                    return await self._deploy(request)
            if request.action == "status_check":
                return self._status(request)
            if request.action == "terminate_agent":
                return await self._terminate(request)
            if request.action == "restart_agent":
                async with self._deploys:
                    return await self._restart(request)
            return self._list(request)
        except Exception as exc:  # a bug must still produce an answer, and be logged
            self.rt.events.emit("request_crashed", request_id=request.request_id, error=repr(exc))
            return _reply(request, "failed", "unknown", "Internal error", error=describe(exc))

    async def _deploy(self, request: DeploymentRequest) -> DeploymentResponse:
        spec = request.agent_spec
        assert spec is not None
        try:
            if spec.id in self.rt:
                raise AgentRefused(f"id: agent {spec.id!r} already exists")
            supervisor, child = self._prepare(spec, request.parent_agent, request.request_id)
        except (AgentRefused, ValueError) as exc:
            return _reply(request, "failed", spec.id, "Deployment refused", error=str(exc))
        try:
            handle: ProcessHandle = await supervisor.start_child(child)
        except (StartError, SupervisorError) as exc:
            self.journal.update_agent(spec.id, state="failed", reason=describe(exc))
            return _reply(request, "failed", spec.id, "Deployment failed", error=_cause(exc))
        return _reply(
            request,
            "deployed",
            spec.id,
            f"Agent {spec.name} deployed successfully",
            pid=handle.pid,
            output_log=str(handle.log_path),
        )

    def _prepare(
        self, spec: AgentSpec, parent_agent: str, request_id: str | None
    ) -> tuple[Any, ChildSpec]:
        """Check *spec* under its parent, write its definition, record it in the journal."""
        supervisor, parent_id = self._placement(parent_agent, spec)
        child = agent_child_spec(
            spec,
            self.home,
            parent_id=parent_id,
            default_runner=self.settings.default_runner,
            log_max_bytes=self.settings.log_max_bytes,
        )
        self.journal.add_agent(
            spec.id,
            spec.model_dump_json(),
            parent_id=parent_id,
            level=spec.level,
            request_id=request_id,
            restart=str(child.restart),
        )
        return supervisor, child

    def _placement(self, parent_agent: str, spec: AgentSpec) -> tuple[Any, str | None]:
        """The supervisor a deploy goes under, and its parent agent id (None: top level)."""
        parent_handle = self.rt.whereis(parent_agent) if parent_agent in self.rt else None
        if isinstance(parent_handle, ProcessHandle):
            parent_row = self.journal.agent(parent_agent)
            if parent_row is None:
                raise AgentRefused(f"parent_agent: {parent_agent!r} is not an agent of ours")
            parent_spec = AgentSpec.model_validate(parent_row["spec"])
            remaining = parent_handle.started_at + parent_spec.timeout_seconds - time.time()
            _nesting.check_child(parent_spec, spec, parent_remaining=remaining)
            if parent_handle.supervisor is None:
                raise AgentRefused(f"parent_agent: {parent_agent!r} cannot have children")
            return parent_handle.supervisor, parent_agent
        known = self.journal.agent(parent_agent) if is_valid_id(parent_agent) else None
        if known is not None:
            raise AgentRefused(f"parent_agent: {parent_agent!r} is not running")
        _nesting.check_top_level(spec, parent_agent)
        return self.rt.root, None

    def _status(self, request: DeploymentRequest) -> DeploymentResponse:
        agent_id = request.target_agent_id
        assert agent_id is not None
        detail = self.agent_detail(agent_id)
        if detail is None:
            return _not_found(request, agent_id)
        status = _STATUS.get(detail["state"], "failed")
        return _reply(
            request,
            status,
            agent_id,
            f"Agent is {detail['state']}",
            pid=detail.get("pid"),
            output_log=detail.get("log"),
            agent=detail,
        )

    async def _terminate(self, request: DeploymentRequest) -> DeploymentResponse:
        agent_id = request.target_agent_id
        assert agent_id is not None
        if agent_id not in self.rt or self.rt.info(agent_id).state is ChildState.STOPPED:
            row = self.journal.agent(agent_id)
            if row is None:
                return _not_found(request, agent_id)
            return _reply(
                request,
                "failed",
                agent_id,
                f"Agent is not running ({row['state']})",
                error="Agent is not running",
            )
        handle = self.rt.whereis(agent_id)
        await self.rt.terminate(agent_id)
        stop = handle.last_stop if isinstance(handle, ProcessHandle) else None
        return _reply(
            request,
            "terminated",
            agent_id,
            "Agent terminated successfully",
            pid=handle.pid if isinstance(handle, ProcessHandle) else None,
            agent={
                "state": "terminated",
                "killed": stop.killed if stop else [],
                "stop_seconds": round(stop.seconds, 4) if stop else None,
            },
        )

    async def _restart(self, request: DeploymentRequest) -> DeploymentResponse:
        agent_id = request.target_agent_id
        assert agent_id is not None
        try:
            if agent_id in self.rt:
                handle = await self.rt.restart(agent_id)
            else:
                handle = await self._redeploy(agent_id)
        except (ZiggieError, ValueError) as exc:
            return _reply(request, "failed", agent_id, "Restart failed", error=_cause(exc))
        if handle is None:
            return _not_found(request, agent_id)
        return _reply(
            request,
            "deployed",
            agent_id,
            "Agent restarted",
            pid=handle.pid,
            output_log=str(handle.log_path),
        )

    async def _redeploy(self, agent_id: str) -> ProcessHandle | None:
        """Start a known but no longer supervised agent again, under its parent."""
        row = self.journal.agent(agent_id)
        if row is None:
            return None
        spec = AgentSpec.model_validate(row["spec"])
        supervisor, child = self._prepare(spec, row["parent_id"] or "Ziggie", row["request_id"])
        handle: ProcessHandle = await supervisor.start_child(child)
        return handle

    def _list(self, request: DeploymentRequest) -> DeploymentResponse:
        agents = [d for row in self.journal.agents() if (d := self.agent_detail(row["agent_id"]))]
        return _reply(
            request,
            "completed",
            "all",
            f"{len(agents)} agents",
            agents=agents,
            agent={"tree": self.rt.tree()},
        )

    # -- status detail and the journal's view of lifecycle events ----------------------

    def agent_detail(self, agent_id: str) -> dict[str, Any] | None:
        """Everything known of *agent_id*: the journal's record merged with the live tree."""
        row = self.journal.agent(agent_id)
        if row is None:
            return None
        detail: dict[str, Any] = {
            "agent_id": agent_id,
            "name": row["spec"].get("name"),
            "level": row["level"],
            "parent_id": row["parent_id"],
            "state": row["state"],
            "pid": row["pid"],
            "exit_code": row["exit_code"],
            "signal": row["signal"],
            "outcome": row["outcome"],
            "reason": row["reason"],
            "restarts": row["restarts"],
            "incarnation": row["incarnation"],
            "started_at": row["started_at"],
            "ended_at": row["ended_at"],
            "log": row["log"],
            "restart": row["restart"],
            "children": [
                r["agent_id"] for r in self.journal.agents() if r["parent_id"] == agent_id
            ],
        }
        if agent_id in self.rt:
            info = self.rt.info(agent_id)
            detail["path"] = info.path
            handle = self.rt.whereis(agent_id)
            if isinstance(handle, ProcessHandle) and info.state is ChildState.RUNNING:
                detail["state"] = "running"
                detail["pid"] = handle.pid
                detail["uptime"] = round(time.time() - handle.started_at, 3)
                detail.update(handle.usage())
                if handle.supervisor is not None:
                    detail["children"] = [c.id for c in handle.supervisor.which_children()]
        return detail

    def _on_event(self, event: str, fields: dict[str, Any]) -> None:
        agent_id = fields.get("agent_id")
        if agent_id is None or fields.get("kind") != "worker":
            return
        if event == "spawned":
            pid = fields["pid"]
            self.journal.update_agent(
                agent_id,
                pid=pid,
                pid_start=process_start_time(pid),
                log=fields.get("log"),
                incarnation=fields.get("incarnation", 0),
            )
        elif event == "started":
            self.journal.update_agent(
                agent_id,
                state="running",
                started_at=time.time(),
                ended_at=None,
                exit_code=None,
                signal=None,
                outcome=None,
                reason=None,
            )
        elif event in ("process_exited", "process_stopped"):
            self.journal.update_agent(
                agent_id, exit_code=fields.get("exit_code"), signal=fields.get("signal")
            )
        elif event in ("exited", "terminated", "timed_out"):
            outcome = fields.get("outcome", "error")
            self.journal.update_agent(
                agent_id,
                state=_ENDED.get(outcome, "failed"),
                outcome=outcome,
                reason=fields.get("reason"),
                ended_at=time.time(),
            )
        elif event == "restarted":
            self.journal.update_agent(agent_id, restarts=fields.get("restarts", 0))

    # -- recovery --------------------------------------------------------------------

    async def recover(self) -> None:
        """Finish what a predecessor left: stray agents first, then queued requests."""
        left = self.journal.live_agents()
        if left:
            # Only processes whose pid and start time match the record, or that carry an
            # agent's marker, are ours to stop; a reused pid is someone else's.
            for row in left:
                pid, started = row["pid"], row["pid_start"]
                if pid and started and process_start_time(pid) != started:
                    row["pid"] = None
            stopped = await stop_strays(
                [row["agent_id"] for row in left], self.settings.recovery_grace
            )
            for row in left:
                self.journal.update_agent(
                    row["agent_id"],
                    state="lost",
                    outcome="error",
                    reason="coordinator stopped unexpectedly",
                    ended_at=time.time(),
                )
                self.rt.events.emit(
                    "agent_recovered",
                    agent_id=row["agent_id"],
                    stopped_pids=stopped.get(row["agent_id"], []),
                    restart=row["restart"],
                )
            for row in left:  # parents (lower levels) first: children need them running
                if row["restart"] in (Restart.PERMANENT, Restart.TRANSIENT):
                    with contextlib.suppress(ZiggieError, ValueError):
                        await self._redeploy(row["agent_id"])
        self._scan(self.queue / "processing")
        self._scan(self.queue / "requests")


@asynccontextmanager
async def open_coordinator(runtime: Runtime, settings: Settings) -> AsyncIterator[Coordinator]:
    """Serve the file queue from inside a program (the embedded default), as a block.

    ::

        async with open_runtime() as rt, open_coordinator(rt, Settings(home=h)) as coord:
            ...  # agents (and their sub-agents) deploy through h/agent-queue
    """
    coord = Coordinator(runtime, settings)
    async with anyio.create_task_group() as tg:
        await tg.start(coord.serve)
        try:
            yield coord
        finally:
            tg.cancel_scope.cancel()


def _reply(
    request: DeploymentRequest, status: str, agent_id: str, message: str, **fields: Any
) -> DeploymentResponse:
    return DeploymentResponse(
        request_id=request.request_id,
        status=status,  # type: ignore[arg-type]
        agent_id=agent_id,
        message=message,
        **fields,
    )


def _not_found(request: DeploymentRequest, agent_id: str) -> DeploymentResponse:
    # The CLI maps exactly this message to exit code 4.
    return _reply(
        request, "failed", agent_id, "Agent not found", error=f"No agent with ID {agent_id}"
    )


def _errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(x) for x in err["loc"])
        parts.append(f"{where}: {err['msg']}" if where else str(err["msg"]))
    return "; ".join(parts)


def _cause(exc: BaseException) -> str:
    if isinstance(exc, StartError):
        return describe(exc.reason)
    return describe(exc)


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:16]


__all__ = ["LIVE_STATES", "BadRequest", "Coordinator"]
