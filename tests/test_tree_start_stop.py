"""OTP supervisor_SUITE groups: start (ignore, error, rollback), stop (shutdown specs), order."""

from __future__ import annotations

import anyio
import pytest

from actors import function_spec
from supervisor import (
    IGNORE,
    ChildContext,
    ChildSpec,
    ChildState,
    Outcome,
    Restart,
    Shutdown,
    StartError,
    StopOrder,
    Strategy,
    open_runtime,
    supervisor_spec,
)

from .helpers import Crash, Probe, names, recording
from .kernel_clock import Clock, clock_fixture  # noqa: F401 (the `clock` fixture)

pytestmark = pytest.mark.anyio


async def test_children_start_in_order_and_stop_in_reverse() -> None:
    probe = Probe()
    specs = [probe.spec(c) for c in ("a", "b", "c")]
    async with open_runtime(children=specs, events=None) as rt:
        assert [c.id for c in rt.root.which_children()] == ["a", "b", "c"]
        assert [e[1] for e in probe.log] == ["a", "b", "c"]
        assert rt.whereis("b") == 1  # the started() value
    assert [e for e in probe.log if e[0] == "stop"] == [
        ("stop", "c", 1),
        ("stop", "b", 1),
        ("stop", "a", 1),
    ]


def _barrier_children(
    ids: list[str], order: StopOrder, log: list[tuple[str, str]]
) -> list[ChildSpec]:
    """Children whose cleanup logs ``asked``/``done``; under ``concurrent`` each also waits
    until every one of them has been asked (it would hang one at a time)."""
    everyone_asked = anyio.Event()

    def spec(child_id: str) -> ChildSpec:
        async def start(ctx: ChildContext) -> None:
            ctx.started()
            try:
                await anyio.sleep_forever()
            finally:
                with ctx.shielded():
                    log.append(("asked", child_id))
                    if sum(1 for kind, _ in log if kind == "asked") == len(ids):
                        everyone_asked.set()
                    if order is StopOrder.CONCURRENT:
                        await everyone_asked.wait()
                    else:
                        await anyio.sleep(0)  # a moment in which no sibling is asked
                    log.append(("done", child_id))

        return ChildSpec(child_id, start, restart=Restart.TEMPORARY)

    return [spec(i) for i in ids]


@pytest.mark.parametrize("order", list(StopOrder))
async def test_stop_order_reverse_one_at_a_time_or_concurrent_all_at_once(
    order: StopOrder,
) -> None:
    log: list[tuple[str, str]] = []
    children = _barrier_children(["a", "b", "c"], order, log)
    async with open_runtime(events=None) as rt:
        await rt.start_child(supervisor_spec("s", children, stop_order=order))
        with anyio.fail_after(5):
            await rt.terminate("s")
    if order is StopOrder.REVERSE:  # OTP: newest first, each gone before the next
        assert log == [
            ("asked", "c"), ("done", "c"), ("asked", "b"), ("done", "b"),
            ("asked", "a"), ("done", "a"),
        ]  # fmt: skip
    else:  # OTP's simple_one_for_one: every one asked, then all awaited (in any order:
        # the scheduler runs the woken tasks as it likes)
        assert sorted(log[:3]) == [("asked", "a"), ("asked", "b"), ("asked", "c")]
        assert sorted(log[3:]) == [("done", "a"), ("done", "b"), ("done", "c")]


async def test_a_concurrent_group_restart_stops_the_siblings_all_at_once() -> None:
    log: list[tuple[str, str]] = []
    siblings = _barrier_children(["b", "c"], StopOrder.CONCURRENT, log)
    probe = Probe()
    children = [probe.spec("a"), *siblings]
    async with open_runtime(events=None) as rt:
        sup = await rt.start_child(
            supervisor_spec(
                "s", children, strategy=Strategy.ONE_FOR_ALL, stop_order=StopOrder.CONCURRENT
            )
        )
        probe.crash("a")
        with anyio.fail_after(5):
            await probe.wait_starts("a", 2)  # the group restarted: so both were stopped
        assert sorted(log[:2]) == [("asked", "b"), ("asked", "c")]
        assert [c.id for c in sup.which_children()] == ["a"]  # temporary siblings deleted


async def test_start_failure_rolls_back_and_names_the_child() -> None:
    probe = Probe()
    specs = [probe.spec("a"), probe.spec("b"), probe.spec("bad", fail_start=True), probe.spec("z")]
    with pytest.raises(StartError, match="'bad' failed to start") as info:
        async with open_runtime(children=specs):
            pytest.fail("runtime must not open")
    err = info.value
    assert isinstance(err, StartError)
    assert err.child_id == "bad"
    assert isinstance(err.reason, Crash)
    # a and b were started, then stopped newest first; z never started.
    assert probe.log == [
        ("start", "a", 1),
        ("start", "b", 1),
        ("start", "bad", 1),
        ("stop", "b", 1),
        ("stop", "a", 1),
    ]


async def test_ignore_keeps_the_spec_and_starts_the_rest() -> None:
    async def ignoring(ctx: ChildContext) -> object:
        return IGNORE

    probe = Probe()
    async with open_runtime(children=[ChildSpec("idle", ignoring), probe.spec("b")]) as rt:
        idle = rt.info("idle")
        assert idle.state is ChildState.STOPPED
        assert rt.whereis("idle") is None
        assert rt.info("b").state is ChildState.RUNNING
        assert rt.root.count_children().specs == 2
        assert rt.root.count_children().active == 1
        assert await rt.root.restart_child("idle") is IGNORE


async def test_returning_before_started_is_a_start_error() -> None:
    async def lazy(ctx: ChildContext) -> None:
        return None

    async with open_runtime() as rt:
        with pytest.raises(StartError, match="returned before calling started"):
            await rt.start_child(ChildSpec("lazy", lazy))
        assert "lazy" not in rt


async def _graceful_child(ctx: ChildContext, took: list[float], cleanup: float) -> None:
    ctx.started()
    try:
        await anyio.sleep_forever()
    finally:
        with ctx.shielded():
            start = anyio.current_time()
            try:
                await anyio.sleep(cleanup)
            finally:
                took.append(anyio.current_time() - start)


def _cleanup_spec(
    child_id: str, shutdown: Shutdown, took: list[float], cleanup: float
) -> ChildSpec:
    async def start(ctx: ChildContext) -> None:
        await _graceful_child(ctx, took, cleanup)

    return ChildSpec(child_id, start, shutdown=shutdown)


# Backend-neutral: trio checks exact virtual time, asyncio a scaled real clock.
@pytest.mark.parametrize(
    ("shutdown", "cleanup", "took"),
    [
        pytest.param(5, 2, 2, id="graceful-within-grace"),
        pytest.param(1.5, 60, 1.5, id="cut-at-grace"),
        pytest.param(None, 30, 30, id="infinity-waits"),
    ],
)
async def test_shutdown_spec_bounds_cleanup(
    clock: Clock, shutdown: float | None, cleanup: float, took: float
) -> None:
    spec = Shutdown.INFINITY if shutdown is None else Shutdown(clock.s(shutdown))
    elapsed: list[float] = []
    async with open_runtime() as rt:
        await rt.start_child(_cleanup_spec("w", spec, elapsed, cleanup=clock.s(cleanup)))
        with anyio.fail_after(clock.s(cleanup) + 5):
            await rt.root.terminate_child("w")
    assert len(elapsed) == 1
    assert clock.matches(elapsed[0], took), elapsed


async def test_shutdown_brutal_kill_skips_cleanup(clock: Clock) -> None:
    took: list[float] = []
    async with open_runtime() as rt:
        await rt.start_child(_cleanup_spec("w", Shutdown.BRUTAL_KILL, took, cleanup=60))
        with anyio.fail_after(5):
            await rt.root.terminate_child("w")
    assert clock.matches(took[0], 0), took


async def test_terminated_child_reports_shutdown_outcome_and_event() -> None:
    probe = Probe()
    with recording() as (events, seen):
        async with open_runtime(events=events) as rt:
            await rt.start_child(probe.spec("a"))
            await rt.root.terminate_child("a")
            info = rt.info("a")
            assert info.state is ChildState.STOPPED
            assert info.last_outcome is Outcome.SHUTDOWN
    assert names(seen, "started", "stop_requested", "terminated") == [
        ("started", "a"),
        ("stop_requested", "a"),
        ("terminated", "a"),
    ]


async def test_three_level_tree_stops_leaves_first() -> None:
    probe = Probe()
    tree = supervisor_spec(
        "l1",
        [
            supervisor_spec("l2a", [probe.spec("l3a1"), probe.spec("l3a2")]),
            supervisor_spec("l2b", [probe.spec("l3b1")]),
        ],
    )
    with recording() as (events, seen):
        async with open_runtime(children=[tree], events=events) as rt:
            assert rt.info("l3a2").path == "ziggie/l1/l2a/l3a2"
            snapshot = rt.tree()
            l1 = snapshot["children"][0]
            assert [c["id"] for c in l1["children"]] == ["l2a", "l2b"]
            assert [c["id"] for c in l1["children"][0]["children"]] == ["l3a1", "l3a2"]
            await rt.root.terminate_child("l1")
            assert rt.ids() == ["l1"]  # a permanent spec stays; its subtree is gone
    order = [a for n, a in names(seen, "terminated")]
    assert order == ["l3b1", "l2b", "l3a2", "l3a1", "l2a", "l1"]


async def test_function_spec_exit_is_normal() -> None:
    done = anyio.Event()

    async def work() -> None:
        done.set()

    async with open_runtime() as rt:
        await rt.start_child(function_spec("once", work, restart="transient"))
        await done.wait()
        with anyio.fail_after(5):
            while rt.info("once").last_outcome is None:
                await anyio.sleep(0)
        assert rt.info("once").last_outcome is Outcome.NORMAL
