"""Cases that hung the kernel before issue 9, run in a subprocess with a hard timeout.

``python -m tests.kernel_cases CASE BACKEND`` runs one case on the real clock and prints
``OK`` plus what it saw; a regression makes the test time out and kill the process
instead of hanging the suite. Each case ends with the runtime closed.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable

import anyio

from supervisor import (
    ChildContext,
    ChildSpec,
    Outcome,
    Restart,
    Shutdown,
    no_events,
    open_runtime,
    supervisor_spec,
)


class Boom(BaseException):
    """A BaseException that is neither the host's exit nor a cancellation."""


async def _raises_in_own_group_cleanup(ctx: ChildContext) -> None:
    """Its task group ends as ``[Cancelled, ValueError]`` when it is stopped (item 1)."""

    async def cleanup_raises() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            raise ValueError(f"{ctx.id}: cleanup failed")

    async with anyio.create_task_group() as tg:
        tg.start_soon(cleanup_raises)
        await anyio.wait_all_tasks_blocked()
        ctx.started()
        await anyio.sleep_forever()


async def cancelled_mixed_with_error() -> str:
    """Item 1: terminate a child whose own group mixes Cancelled with an error."""
    async with open_runtime(events=no_events()) as rt:
        await rt.start_child(ChildSpec("mixed", _raises_in_own_group_cleanup))
        await rt.terminate("mixed")
        info = rt.info("mixed")
        assert info.last_outcome is Outcome.ERROR, info
        assert "cleanup failed" in (info.reason or ""), info
    return "terminated"


async def five_raise_while_stopped() -> str:
    """Item 3: five children raising while their supervisor stops them all at once."""
    kids = [ChildSpec(f"k{i}", _raises_in_own_group_cleanup) for i in range(5)]
    async with open_runtime(children=[supervisor_spec("sup", kids)], events=no_events()) as rt:
        await rt.terminate("sup")
        assert rt.info("sup").last_outcome is Outcome.SHUTDOWN
    return "stopped"


async def base_exception_child() -> str:
    """Item 2: a BaseException subclass is an abnormal exit, restarted per policy."""
    runs: list[int] = []

    async def boom(ctx: ChildContext) -> None:
        runs.append(ctx.incarnation)
        ctx.started()
        if ctx.incarnation == 1:
            raise Boom("boom")
        await anyio.sleep_forever()

    async with open_runtime(children=[ChildSpec("b", boom)], events=no_events()) as rt:
        with anyio.fail_after(5):
            while len(runs) < 2:
                await anyio.sleep(0.01)
        info = rt.info("b")
        assert info.last_outcome is Outcome.ERROR, info
        assert info.reason == "Boom: boom", info
    return "restarted"


async def host_exit_from_child(kind: str) -> str:
    """Item 2: sys.exit()/KeyboardInterrupt in a child stops the tree, then propagates."""
    stopped: list[str] = []

    async def sibling(ctx: ChildContext) -> None:
        ctx.started()
        try:
            await anyio.sleep_forever()
        finally:
            stopped.append(ctx.id)

    async def exits(ctx: ChildContext) -> None:
        ctx.started()
        await anyio.sleep(0)
        if kind == "system_exit":
            sys.exit(3)
        raise KeyboardInterrupt

    children = [ChildSpec("sibling", sibling), ChildSpec("exits", exits)]
    try:
        async with open_runtime(children=children, events=no_events()):
            await anyio.sleep_forever()
    except (SystemExit, KeyboardInterrupt) as exc:
        assert stopped == ["sibling"], stopped
        return f"{type(exc).__name__} after {stopped}"
    raise AssertionError("the host's exit did not propagate")


async def own_deadline_bounds_cleanup() -> str:
    """Item 4 on the real clock: a timed-out node's cleanup is cut at its grace."""
    took: list[float] = []

    async def slow_cleanup(ctx: ChildContext) -> None:
        ctx.started()
        try:
            await anyio.sleep_forever()
        finally:
            with ctx.shielded():
                start = anyio.current_time()
                try:
                    await anyio.sleep(30)
                finally:
                    took.append(anyio.current_time() - start)

    spec = ChildSpec(
        "t", slow_cleanup, timeout=0.2, shutdown=Shutdown(0.3), restart=Restart.TEMPORARY
    )
    async with open_runtime(events=no_events()) as rt:
        await rt.start_child(spec)
        with anyio.fail_after(10):
            while not took:
                await anyio.sleep(0.05)
    assert 0.2 < took[0] < 5, took
    return "cut"


CASES: dict[str, Callable[[], Awaitable[str]]] = {
    "cancelled_mixed_with_error": cancelled_mixed_with_error,
    "five_raise_while_stopped": five_raise_while_stopped,
    "base_exception_child": base_exception_child,
    "system_exit": lambda: host_exit_from_child("system_exit"),
    "keyboard_interrupt": lambda: host_exit_from_child("keyboard_interrupt"),
    "own_deadline_bounds_cleanup": own_deadline_bounds_cleanup,
}


def main() -> None:
    case, backend = sys.argv[1], sys.argv[2]
    result = anyio.run(CASES[case], backend=backend)
    print("OK", result, flush=True)


if __name__ == "__main__":
    main()
