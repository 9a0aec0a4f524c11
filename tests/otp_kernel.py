"""The kernel's side of the OTP differential test: a scenario run on ``open_runtime``,
traced in the escript's format (see ``tests/otp_scenarios.py`` for the normalisations).

Starts are traced by the children's start functions, exits by the kernel's own events
(``exited``/``terminated``/``timed_out`` and their outcome), calls by the step that made
them. A step ends when every task waits (nothing in a scenario waits on a clock).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final

import anyio
import sniffio

from supervisor import (
    IGNORE,
    AutoShutdown,
    ChildContext,
    ChildKind,
    ChildSpec,
    ChildState,
    Restart,
    RestartIntensityExceeded,
    StartError,
    Strategy,
    Supervisor,
    SupervisorError,
    no_events,
    open_runtime,
    open_supervisor,
)

from .otp_scenarios import PERIOD, ROOT, Flags, Node, Scenario, Step


class ScriptedError(Exception):
    """A start that the scenario makes fail (OTP's ``{error, scripted}``)."""


class Crash(Exception):
    """A worker told to crash (OTP's ``exit(crash)``)."""


_EXITS: Final = {"normal": "normal", "shutdown": "shutdown", "error": "error", "timeout": "error"}
_STATES: Final = {ChildState.RUNNING: "running", ChildState.STOPPED: "undefined"}


async def run_on_kernel(scenario: Scenario) -> list[str]:
    """The trace of *scenario* on the kernel, in the escript's format."""
    return await _KernelRun(scenario).run()


class _KernelRun:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.trace: list[str] = []
        self.attempts: dict[str, int] = {}
        self.workers: dict[str, list[str]] = {}  # a running worker's command box
        self.wakers: dict[str, anyio.Event] = {}
        self.root: Supervisor | None = None
        self.registry: Any = None

    def on_event(self, event: str, fields: dict[str, Any]) -> None:
        if event in ("exited", "terminated", "timed_out"):
            self.trace.append(f"exit {fields['agent_id']} {_EXITS[fields['outcome']]}")

    async def run(self) -> list[str]:
        events = no_events()
        remaining = list(self.scenario.steps)
        with events.listen(self.on_event):
            entered = False
            try:
                async with open_runtime(
                    ROOT,
                    [self.spec(c) for c in self.scenario.children],
                    events=events,
                    **_options(self.scenario.flags),
                ) as rt:
                    entered = True
                    self.root, self.registry = rt.root, rt.registry
                    self.trace.append(f"start {ROOT} ok")
                    await settle()
                    while remaining:
                        await self.step(remaining[0])
                        remaining.pop(0)  # only once done: a step the root's end cut is done
                    self.tree(ROOT, rt.root)
            except StartError:
                if entered:
                    raise
                self.trace.append(f"start {ROOT} error")
            except RestartIntensityExceeded:  # the root gave up, its children stopped
                if not entered:
                    raise
            if entered:
                if remaining:  # the root ended on its own during this step
                    remaining.pop(0)
                self.trace.append(f"exit {ROOT} shutdown")
            self.root = None
            for step in remaining:  # nothing is running any more
                target = step.id if step.op in ("crash", "finish") else step.sup
                self.trace.append(f"{step.op} {target} noproc")
        return self.trace

    # -- children --

    def next_result(self, node: Node) -> str:
        n = self.attempts[node.id] = self.attempts.get(node.id, 0) + 1
        return node.script[n - 1] if n <= len(node.script) else "ok"

    def spec(self, node: Node) -> ChildSpec:
        start = self.worker(node) if node.kind == "worker" else self.supervisor(node)
        kind = ChildKind.WORKER if node.kind == "worker" else ChildKind.SUPERVISOR
        return ChildSpec(
            node.id, start, restart=Restart(node.restart), significant=node.significant, kind=kind
        )

    def refuse(self, node: Node, result: str) -> Any:
        self.trace.append(f"start {node.id} {result}")
        if result == "error":
            raise ScriptedError(node.id)
        return IGNORE

    def worker(self, node: Node) -> Callable[[ChildContext], Any]:
        async def start(ctx: ChildContext) -> Any:
            result = self.next_result(node)
            if result != "ok":
                return self.refuse(node, result)
            box: list[str] = []
            waker = anyio.Event()
            self.workers[node.id], self.wakers[node.id] = box, waker
            self.trace.append(f"start {node.id} ok")
            ctx.started()
            try:
                await waker.wait()
            finally:
                if self.workers.get(node.id) is box:
                    del self.workers[node.id], self.wakers[node.id]
            if box[0] == "crash":
                raise Crash(node.id)
            return None

        return start

    def supervisor(self, node: Node) -> Callable[[ChildContext], Any]:
        async def start(ctx: ChildContext) -> Any:
            result = self.next_result(node)
            if result != "ok":
                return self.refuse(node, result)
            started = False
            try:
                specs = [self.spec(c) for c in node.children]
                async with open_supervisor(ctx, specs, **_options(node.flags)) as sup:
                    started = True
                    self.trace.append(f"start {node.id} ok")
                    ctx.started(sup)
                    await anyio.sleep_forever()
            except StartError:
                if not started:
                    self.trace.append(f"start {node.id} error")
                raise

        return start

    # -- steps --

    def find(self, sup_id: str) -> Supervisor | None:
        if sup_id == ROOT:
            return self.root
        found = self.registry.nested(sup_id) if self.root is not None else None
        return found if isinstance(found, Supervisor) else None

    async def step(self, step: Step) -> None:
        if step.op in ("crash", "finish"):
            box = self.workers.get(step.id)
            if box is None:
                self.trace.append(f"{step.op} {step.id} noproc")
            else:
                box.append(step.op)
                self.wakers[step.id].set()
        else:
            sup = self.find(step.sup)
            if sup is None:
                self.trace.append(f"{step.op} {step.sup} noproc")
            else:
                self.trace.append(await self.call(sup, step))
        await settle()

    async def call(self, sup: Supervisor, step: Step) -> str:
        op, name = step.op, step.sup
        if op == "which_children":
            return f"which {name} -> {_which(sup)}"
        if op == "count_children":
            c = sup.count_children()
            return f"count {name} -> {c.specs} {c.active} {c.supervisors} {c.workers}"
        target = step.child.id if step.child is not None else step.id
        try:
            if op == "start_child":
                assert step.child is not None
                started = await sup.start_child(self.spec(step.child))
                result = "ignore" if started is IGNORE else "ok"
            elif op == "restart_child":
                result = "ignore" if await sup.restart_child(step.id) is IGNORE else "ok"
            elif op == "terminate_child":
                await sup.terminate_child(step.id)
                result = "ok"
            else:
                await sup.delete_child(step.id)
                result = "ok"
        except ValueError:  # a significant child refused: OTP's bad_combination
            result = "bad_combination"
        except SupervisorError as exc:
            result = exc.code
        return f"{op} {name} {target} -> {result}"

    def tree(self, name: str, sup: Supervisor) -> None:
        self.trace.append(f"tree {name} -> {_which(sup)}")
        for child in sup.which_children():
            nested = self.find(child.id) if child.kind is ChildKind.SUPERVISOR else None
            if nested is not None and child.state is ChildState.RUNNING:
                self.tree(child.id, nested)


def _options(flags: Flags) -> dict[str, Any]:
    return {
        "strategy": Strategy(flags.strategy),
        "max_restarts": flags.intensity,
        "max_seconds": PERIOD,
        "auto_shutdown": AutoShutdown(flags.auto_shutdown),
    }


def _which(sup: Supervisor) -> str:
    return " ".join(
        f"{c.id}:{_STATES.get(c.state, str(c.state))}:{c.kind}" for c in sup.which_children()
    )


async def settle() -> None:
    """Return once every other task waits (nothing in a scenario waits on a clock).

    On trio that is ``wait_all_tasks_blocked``. anyio's version for asyncio sleeps 0.1 s
    whenever a task is still runnable; this one yields until no task can run and no
    callback is ready, as anyio itself checks (through asyncio's ``_fut_waiter``).
    """
    if sniffio.current_async_library() == "trio":
        await anyio.wait_all_tasks_blocked()
        return
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    quiet = 0
    while quiet < 2:
        await asyncio.sleep(0)
        blocked = all(
            task is me or (task._fut_waiter is not None and not task._fut_waiter.done())  # type: ignore[attr-defined]
            for task in asyncio.all_tasks()
        )
        quiet = quiet + 1 if blocked and not loop._ready else 0  # type: ignore[attr-defined]
