"""Dynamic children, which/count children, deadlines and timeout cascades."""

from __future__ import annotations

import anyio
import pytest

from actors import function_spec
from supervisor import (
    AlreadyPresent,
    AlreadyStarted,
    ChildContext,
    ChildSpec,
    ChildState,
    MaxChildren,
    NotFound,
    Outcome,
    Restart,
    Running,
    StartError,
    SupervisorClosed,
    open_runtime,
    supervisor_spec,
)

from .helpers import Probe, names, recording
from .kernel_clock import Clock, clock_fixture  # noqa: F401 (the `clock` fixture)

pytestmark = pytest.mark.anyio


async def test_dynamic_children_lifecycle_and_errors() -> None:
    probe = Probe()
    async with open_runtime() as rt:
        sup = rt.root
        assert await sup.start_child(probe.spec("a")) == 1
        with pytest.raises(AlreadyStarted):
            await sup.start_child(probe.spec("a"))
        with pytest.raises(Running):
            await sup.restart_child("a")
        with pytest.raises(Running):
            await sup.delete_child("a")
        await sup.terminate_child("a")
        with pytest.raises(AlreadyPresent):
            await sup.start_child(probe.spec("a"))
        assert await sup.restart_child("a") == 2
        await sup.terminate_child("a")
        await sup.delete_child("a")
        for call in (sup.terminate_child, sup.restart_child, sup.delete_child):
            with pytest.raises(NotFound, match="no child 'a'"):
                await call("a")
        assert sup.which_children() == []


async def test_failed_dynamic_start_leaves_no_spec() -> None:
    probe = Probe()
    async with open_runtime() as rt:
        with pytest.raises(StartError):
            await rt.start_child(probe.spec("bad", fail_start=True))
        assert "bad" not in rt
        assert rt.root.count_children().specs == 0


async def test_ids_are_unique_across_the_runtime() -> None:
    probe = Probe()
    async with open_runtime(children=[supervisor_spec("sub", [probe.spec("x")])]) as rt:
        with pytest.raises(AlreadyStarted, match="already in use"):
            await rt.start_child(probe.spec("x"))
        assert rt.supervisor_of("x") is rt.whereis("sub")


async def test_which_and_count_children() -> None:
    probe = Probe()
    children = [probe.spec("w1"), supervisor_spec("s1", [probe.spec("w2")]), probe.spec("w3")]
    async with open_runtime(children=children) as rt:
        await rt.root.terminate_child("w3")
        counts = rt.root.count_children()
        assert (counts.specs, counts.active, counts.supervisors, counts.workers) == (3, 2, 1, 2)
        infos = rt.root.which_children()
        assert [(i.id, i.kind, i.state) for i in infos] == [
            ("w1", "worker", ChildState.RUNNING),
            ("s1", "supervisor", ChildState.RUNNING),
            ("w3", "worker", ChildState.STOPPED),
        ]


async def test_max_children_refuses_with_a_clear_error() -> None:
    probe = Probe()
    async with open_runtime(children=[supervisor_spec("s", max_children=1)]) as rt:
        sup = rt.whereis("s")
        await sup.start_child(probe.spec("a"))
        with pytest.raises(MaxChildren, match="max_children"):
            await sup.start_child(probe.spec("b"))


async def test_closing_supervisor_refuses_new_children() -> None:
    probe = Probe()
    async with open_runtime(children=[supervisor_spec("s", restart=Restart.TEMPORARY)]) as rt:
        sup = rt.whereis("s")
        await rt.root.terminate_child("s")
        assert sup.closing
        with pytest.raises(SupervisorClosed):
            await sup.start_child(probe.spec("late"))


async def test_runtime_restart_stops_then_starts_a_fresh_incarnation() -> None:
    probe = Probe()
    async with open_runtime(children=[probe.spec("a", restart=Restart.TEMPORARY)]) as rt:
        assert await rt.restart("a") == 2
        assert probe.log == [("start", "a", 1), ("stop", "a", 1), ("start", "a", 2)]
        assert rt.info("a").restarts == 1


async def test_deadline_times_out_a_worker(clock: Clock) -> None:
    # On asyncio (real clock, scaled down) only what cannot race is asserted: it timed out.
    with recording() as (events, seen):
        async with open_runtime(events=events) as rt:
            spec = function_spec(
                "slow", anyio.sleep_forever, restart="temporary", timeout=clock.s(7)
            )
            await rt.start_child(spec)
            await anyio.wait_all_tasks_blocked()
            with anyio.fail_after(30):
                while "slow" in rt:  # temporary: dropped once it timed out
                    await anyio.sleep(clock.s(1))
    timed_out = [f for n, f in seen if n == "timed_out"]
    assert len(timed_out) == 1
    assert timed_out[0]["outcome"] == "timeout"
    assert [f for n, f in seen if n == "exited"] == []


async def test_timeout_cascades_children_first_and_is_distinct(clock: Clock) -> None:
    probe = Probe()
    tree = supervisor_spec(
        "l1",
        [supervisor_spec("l2", [probe.spec("l3a"), probe.spec("l3b")], timeout=clock.s(30))],
        restart=Restart.PERMANENT,
    )
    with recording() as (events, seen):
        async with open_runtime(children=[tree], events=events) as rt:
            if not clock.real:  # exact virtual time: still up half a second before
                await anyio.sleep(29.5)
                assert rt.info("l3a").state is ChildState.RUNNING
            with anyio.fail_after(30):
                await probe.wait_starts("l3b", 2)  # l2 was restarted, its children anew
            await anyio.wait_all_tasks_blocked()  # and l2 reported itself started
            assert rt.info("l2").state is ChildState.RUNNING  # restarted: transient default
            assert rt.info("l2").last_outcome is Outcome.TIMEOUT
            assert rt.info("l2").restarts == 1
    ends = [(n, a) for n, a in names(seen, "terminated", "timed_out")]
    # At t=30 l2 times out: its children stop first, newest first, then l2 itself.
    assert ends[:3] == [("terminated", "l3b"), ("terminated", "l3a"), ("timed_out", "l2")]
    assert probe.log[:4] == [
        ("start", "l3a", 1),
        ("start", "l3b", 1),
        ("stop", "l3b", 1),
        ("stop", "l3a", 1),
    ]


async def test_child_cannot_outlive_parent_deadline(clock: Clock) -> None:
    seen_at: list[float] = []

    async def long_child(ctx: ChildContext) -> None:
        ctx.started()
        try:
            await anyio.sleep(clock.s(1000))
        finally:
            seen_at.append(anyio.current_time())

    parent = supervisor_spec(
        "p",
        [ChildSpec("c", long_child, timeout=clock.s(1000))],
        timeout=clock.s(5),
        restart=Restart.TEMPORARY,
    )
    with anyio.fail_after(clock.s(20) + 10):
        async with open_runtime(children=[parent]):
            t0 = anyio.current_time()
            await anyio.sleep(clock.s(20))
    assert clock.matches(seen_at[0] - t0, 5), (seen_at, t0)


async def test_timeout_on_both_backends_ends_with_timeout_outcome() -> None:
    async with open_runtime() as rt:
        spec = function_spec("t", anyio.sleep_forever, restart="temporary", timeout=0.05)
        # temporary: the spec is deleted on exit, so watch the event instead of the info.
        outcomes: list[str] = []
        with rt.events.listen(lambda n, f: outcomes.append(f.get("outcome", ""))):
            await rt.start_child(spec)
            with anyio.fail_after(10):
                while "timeout" not in outcomes:
                    await anyio.sleep(0.01)
            await anyio.wait_all_tasks_blocked()
        assert "t" not in rt
