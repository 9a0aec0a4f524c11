"""OTP supervisor_SUITE groups: restart types, strategies with escalation, intensity, loops."""

from __future__ import annotations

import itertools
from typing import Any

import anyio
import pytest

from supervisor import (
    AutoShutdown,
    Backoff,
    ChildContext,
    ChildSpec,
    ChildState,
    Outcome,
    Restart,
    RestartIntensityExceeded,
    Shutdown,
    StartError,
    Strategy,
    open_runtime,
    open_supervisor,
    supervisor_spec,
)

from .helpers import Probe, names, recording
from .kernel_clock import Clock, clock_fixture  # noqa: F401 (the `clock` fixture)

pytestmark = pytest.mark.anyio


async def _settle(rt_probe: Probe, entry: tuple[str, str, int]) -> None:
    with anyio.fail_after(30):
        await rt_probe.wait_for(entry)


@pytest.mark.parametrize(
    ("restart", "action", "restarted"),
    [
        (Restart.PERMANENT, "finish", True),
        (Restart.PERMANENT, "crash", True),
        (Restart.TRANSIENT, "finish", False),
        (Restart.TRANSIENT, "crash", True),
        (Restart.TEMPORARY, "finish", False),
        (Restart.TEMPORARY, "crash", False),
    ],
)
async def test_restart_type_decides_after_normal_and_abnormal_exit(
    restart: Restart, action: str, restarted: bool
) -> None:
    probe = Probe()
    with recording() as (events, seen):
        async with open_runtime(events=events) as rt:
            await rt.start_child(probe.spec("w", restart=restart))
            getattr(probe, action)("w")
            await _settle(probe, ("stop", "w", 1))
            if restarted:
                await _settle(probe, ("start", "w", 2))
                assert rt.info("w").state is ChildState.RUNNING
                assert rt.info("w").restarts == 1
            else:
                await anyio.wait_all_tasks_blocked()
                # OTP: a temporary child's spec is deleted when it exits.
                assert ("w" in rt) is (restart is not Restart.TEMPORARY)
                assert probe.starts("w") == 1
    exits = [f["outcome"] for n, f in seen if n == "exited"]
    assert exits[0] == (Outcome.ERROR if action == "crash" else Outcome.NORMAL)


async def test_terminated_children_are_never_restarted() -> None:
    probe = Probe()
    async with open_runtime() as rt:
        for restart in Restart:
            await rt.start_child(probe.spec(f"w-{restart}", restart=restart))
        for restart in Restart:
            await rt.root.terminate_child(f"w-{restart}")
        assert probe.starts("w-permanent") == 1
        assert probe.starts("w-transient") == 1
        assert "w-temporary" not in rt
        assert rt.info("w-permanent").last_outcome is Outcome.SHUTDOWN


async def _tree(strategy: Strategy, probe: Probe) -> list[ChildSpec]:
    return [probe.spec(c) for c in ("a", "b", "c")]


@pytest.mark.parametrize(
    ("strategy", "restarted"),
    [
        (Strategy.ONE_FOR_ONE, ["b"]),
        (Strategy.ONE_FOR_ALL, ["a", "b", "c"]),
        (Strategy.REST_FOR_ONE, ["b", "c"]),
    ],
)
async def test_strategy_restarts_the_right_siblings_in_order(
    strategy: Strategy, restarted: list[str]
) -> None:
    probe = Probe()
    sup = supervisor_spec("sup", await _tree(strategy, probe), strategy=strategy)
    async with open_runtime(children=[sup]):
        probe.log.clear()
        probe.crash("b")
        await _settle(probe, ("start", restarted[-1], 2))
        await _settle(probe, ("start", "b", 2))
        stops = [cid for kind, cid, _ in probe.log if kind == "stop"]
        starts = [cid for kind, cid, _ in probe.log if kind == "start"]
    # The crashed child stopped by itself; the others were stopped newest first.
    others = [c for c in restarted if c != "b"]
    assert stops[0] == "b"
    assert stops[1 : 1 + len(others)] == list(reversed(others))
    assert starts == restarted  # restarted in start order


async def test_temporary_sibling_is_deleted_not_restarted_by_one_for_all() -> None:
    probe = Probe()
    children = [probe.spec("a"), probe.spec("tmp", restart=Restart.TEMPORARY), probe.spec("c")]
    async with open_runtime(children=children, strategy=Strategy.ONE_FOR_ALL) as rt:
        probe.crash("a")
        await _settle(probe, ("start", "c", 2))
        assert "tmp" not in rt
        assert [c.id for c in rt.root.which_children()] == ["a", "c"]


@pytest.mark.parametrize("nested", [False, True], ids=["worker", "supervisor"])
async def test_rest_for_one_retries_a_failed_restart_from_the_child_that_failed(
    nested: bool,
) -> None:
    """OTP's ``try_again_restart`` for ``rest_for_one``: the children of the group that did
    start keep running; only the one that failed and those after it are started again."""
    probe = Probe()
    # c's second start fails; as a nested supervisor, c fails to start because c1 does.
    c = (
        supervisor_spec("c", [probe.spec("c1", fail_starts={2})])
        if nested
        else probe.spec("c", fail_starts={2})
    )
    last = "c1" if nested else "c"
    children = [probe.spec("a"), c]
    options: dict[str, Any] = {"max_restarts": 2, "max_seconds": 60}
    async with open_runtime(children=children, strategy=Strategy.REST_FOR_ONE, **options) as rt:
        probe.log.clear()
        probe.crash("a")
        with anyio.fail_after(30):
            await probe.wait_starts(last, 2)
        await anyio.wait_all_tasks_blocked()
        during = list(probe.log)
        assert rt.info("a").incarnation == 2
        assert rt.info("c").incarnation == 3
        assert rt.info(last).state is ChildState.RUNNING
    assert [(k, cid) for k, cid, _ in during] == [
        ("stop", "a"),
        ("stop", last),
        ("start", "a"),
        ("start", last),  # fails
        ("start", last),  # retried alone: a is not stopped again
    ]
    # On the final stop: c (its third incarnation, whose c1 is a first), then a (its second).
    assert probe.log[len(during) :] == [("stop", last, 1 if nested else 3), ("stop", "a", 2)]


async def test_one_for_all_retries_a_failed_restart_with_the_whole_group() -> None:
    """OTP's ``try_again_restart`` for ``one_for_all`` stops what did start and starts
    every child again."""
    probe = Probe()
    children = [probe.spec("a"), probe.spec("c", fail_starts={2})]
    options: dict[str, Any] = {"max_restarts": 2, "max_seconds": 60}
    async with open_runtime(children=children, strategy=Strategy.ONE_FOR_ALL, **options) as rt:
        probe.log.clear()
        probe.crash("a")
        await _settle(probe, ("start", "c", 3))
        await anyio.wait_all_tasks_blocked()
        assert probe.log == [
            ("stop", "a", 1),
            ("stop", "c", 1),
            ("start", "a", 2),
            ("start", "c", 2),  # fails
            ("stop", "a", 2),
            ("start", "a", 3),
            ("start", "c", 3),
        ]
        assert rt.info("a").restarts == 2


@pytest.mark.parametrize("strategy", list(Strategy))
async def test_exceeding_intensity_escalates_to_the_parent(strategy: Strategy) -> None:
    probe = Probe()
    inner = supervisor_spec(
        "inner", [probe.spec("a"), probe.spec("b")], strategy=strategy, max_restarts=2
    )
    with recording() as (events, seen):
        async with open_runtime(children=[inner], max_restarts=5, events=events) as rt:
            for incarnation in (1, 2, 3):
                await _settle(probe, ("start", "b", incarnation))
                probe.crash("b")
            # The third crash exceeds 2 restarts: inner stops its children and fails;
            # the root (one_for_one, permanent) restarts inner with fresh children,
            # whose incarnations count from 1 again.
            with anyio.fail_after(30):
                await probe.wait_starts("b", 4)
            assert rt.info("b").incarnation == 1
            assert rt.info("inner").restarts == 1
            assert rt.info("inner").incarnation == 2
            assert "RestartIntensityExceeded" in (rt.info("inner").reason or "")
    escalations = [f for n, f in seen if n == "escalated"]
    assert escalations[0]["agent_id"] == "inner"
    assert escalations[0]["child_id"] == "b"


async def test_root_escalation_propagates_out_of_the_runtime() -> None:
    probe = Probe()

    async def crash_twice() -> None:
        async with open_runtime(children=[probe.spec("a")], max_restarts=1):
            for incarnation in (1, 2):
                await _settle(probe, ("start", "a", incarnation))
                probe.crash("a")
            await anyio.sleep_forever()

    # A lone error leaves the runtime unwrapped, on both backends (issue 9, ergonomics).
    with pytest.raises(RestartIntensityExceeded):
        await crash_twice()


async def test_intensity_is_a_sliding_window(clock: Clock) -> None:
    probe = Probe()
    window = clock.s(5)
    async with open_runtime(children=[probe.spec("a")], max_restarts=3, max_seconds=window) as rt:
        # One crash every 2 s: never more than 3 restarts inside any 5 s window. (A slow
        # machine only spreads the crashes further apart: safe on the real clock too.)
        for incarnation in range(1, 11):
            await _settle(probe, ("start", "a", incarnation))
            await anyio.sleep(clock.s(2))
            probe.crash("a")
        await _settle(probe, ("start", "a", 11))
        assert rt.info("a").restarts == 10


async def test_restart_loop_with_failing_start_escalates_and_does_not_hang() -> None:
    attempts = 0

    async def flaky(ctx: ChildContext) -> None:
        nonlocal attempts
        attempts += 1
        if attempts > 1:
            raise RuntimeError("cannot start again")
        ctx.started()
        raise RuntimeError("crash")

    with pytest.raises(RestartIntensityExceeded):
        async with open_runtime(children=[ChildSpec("f", flaky)], max_restarts=3):
            await anyio.sleep_forever()
    assert attempts == 4  # the first run, then 3 failing restarts, then escalation


async def test_backoff_delays_restarts_exponentially(clock: Clock) -> None:
    probe = Probe()
    backoff = Backoff(initial=clock.s(1.0), factor=2.0, maximum=clock.s(60), jitter=0)
    times: list[float] = []
    async with open_runtime(
        children=[probe.spec("a")], max_restarts=10, max_seconds=100, backoff=backoff
    ):
        for incarnation in (1, 2, 3, 4):
            await _settle(probe, ("start", "a", incarnation))
            times.append(anyio.current_time())
            probe.crash("a")
        await _settle(probe, ("start", "a", 5))
        times.append(anyio.current_time())
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(times)]
    expected = [clock.s(1.0), clock.s(2.0), clock.s(4.0), clock.s(8.0)]
    if clock.real:  # a restart never comes before its backoff; it may come later
        assert all(g >= e - 0.002 for g, e in zip(gaps, expected, strict=True)), gaps
    else:
        assert gaps == expected


async def test_shutdown_is_not_blocked_by_a_restart_backoff() -> None:
    probe = Probe()
    backoff = Backoff(initial=3600, jitter=0)
    with anyio.fail_after(30):
        async with open_runtime(children=[probe.spec("a")], backoff=backoff):
            probe.crash("a")
            await _settle(probe, ("stop", "a", 1))
            start = anyio.current_time()
    assert anyio.current_time() - start < 1  # left during an hour-long backoff


@pytest.mark.parametrize(
    ("auto", "exit_ids", "stops_supervisor"),
    [
        (AutoShutdown.ANY_SIGNIFICANT, ["s1"], True),
        (AutoShutdown.ALL_SIGNIFICANT, ["s1"], False),
        (AutoShutdown.ALL_SIGNIFICANT, ["s1", "s2"], True),
    ],
)
async def test_significant_children_and_auto_shutdown(
    auto: AutoShutdown, exit_ids: list[str], stops_supervisor: bool
) -> None:
    probe = Probe()
    children = [
        probe.spec("s1", restart=Restart.TRANSIENT, significant=True),
        probe.spec("s2", restart=Restart.TRANSIENT, significant=True),
        probe.spec("plain"),
    ]
    sup = supervisor_spec("sup", children, auto_shutdown=auto, restart=Restart.TRANSIENT)
    async with open_runtime(children=[sup]) as rt:
        for cid in exit_ids:
            probe.finish(cid)
            await _settle(probe, ("stop", cid, 1))
        if stops_supervisor:
            await _settle(probe, ("stop", "plain", 1))
            with anyio.fail_after(5):
                while rt.info("sup").state is not ChildState.STOPPED:
                    await anyio.sleep(0)
            # OTP: an auto-shutdown is an exit with reason shutdown (transient: not restarted).
            assert rt.info("sup").last_outcome is Outcome.SHUTDOWN
        else:
            await anyio.wait_all_tasks_blocked()
            assert rt.info("sup").state is ChildState.RUNNING
            assert rt.info("plain").state is ChildState.RUNNING


@pytest.mark.parametrize("auto", [AutoShutdown.ANY_SIGNIFICANT, AutoShutdown.ALL_SIGNIFICANT])
async def test_a_supervisor_that_shuts_itself_down_exits_shutdown(auto: AutoShutdown) -> None:
    """As OTP's: its outcome, its event and ``last_outcome`` say ``shutdown``, not
    ``normal``; a permanent one is restarted by its parent."""
    probe = Probe()
    significant = probe.spec("n1", restart=Restart.TRANSIENT, significant=True)
    nested = supervisor_spec("n", [significant], auto_shutdown=auto)
    with recording() as (events, seen):
        async with open_runtime(children=[nested], events=events) as rt:
            probe.finish("n1")
            with anyio.fail_after(30):
                await probe.wait_starts("n1", 2)
            await anyio.wait_all_tasks_blocked()
            info = rt.info("n")
            assert (info.incarnation, info.state) == (2, ChildState.RUNNING)
            assert info.last_outcome is Outcome.SHUTDOWN
    ends = [(name, f["outcome"]) for name, f in seen if f["agent_id"] == "n" and "outcome" in f]
    assert ends[0] == ("terminated", "shutdown")
    assert ("auto_shutdown", "n") in names(seen, "auto_shutdown")


def test_significant_child_under_auto_shutdown_never_is_refused_at_spec_time() -> None:
    """OTP refuses the combination (``bad_combination``) instead of ignoring the flag."""
    probe = Probe()
    sig = probe.spec("s", restart=Restart.TRANSIENT, significant=True)
    with pytest.raises(ValueError, match=r"'s' is significant.*auto_shutdown=never"):
        supervisor_spec("sup", [probe.spec("a"), sig])
    assert supervisor_spec("sup", [sig], auto_shutdown=AutoShutdown.ALL_SIGNIFICANT)


async def test_significant_child_under_auto_shutdown_never_is_refused_when_started() -> None:
    probe = Probe()
    sig = probe.spec("s", restart=Restart.TEMPORARY, significant=True)
    with pytest.raises(ValueError, match="'s' is significant"):
        async with open_runtime(children=[probe.spec("a"), sig]):
            pass
    assert probe.log == []  # refused before anything started

    async def opens(ctx: ChildContext) -> None:
        async with open_supervisor(ctx, [sig]):
            ctx.started()

    async with open_runtime() as rt:
        with pytest.raises(ValueError, match=r"'s' is significant.*'ziggie'"):
            await rt.start_child(sig)
        with pytest.raises(StartError) as caught:
            await rt.start_child(ChildSpec("w", opens))
        assert isinstance(caught.value.reason, ValueError)
        assert "s" not in rt
        sup = await rt.start_child(
            supervisor_spec("n", [], auto_shutdown=AutoShutdown.ANY_SIGNIFICANT)
        )
        await sup.start_child(sig)  # allowed where auto_shutdown is on
        assert rt.info("s").state is ChildState.RUNNING


def test_significant_permanent_child_is_rejected() -> None:
    probe = Probe()
    with pytest.raises(ValueError, match="significant"):
        probe.spec("x", restart=Restart.PERMANENT, significant=True)


async def test_restart_events_carry_incarnation_and_reason() -> None:
    probe = Probe()
    with recording() as (events, seen):
        async with open_runtime(children=[probe.spec("a", level="L2")], events=events):
            probe.crash("a")
            await _settle(probe, ("start", "a", 2))
    exited = next(f for n, f in seen if n == "exited")
    assert exited["outcome"] == "error"
    assert exited["reason"] == "Crash: a"
    assert exited["level"] == "L2"
    assert exited["path"] == "ziggie/a"
    assert exited["parent_id"] == "ziggie"
    restarted = next(f for n, f in seen if n == "restarted")
    assert restarted["incarnation"] == 2
    assert names(seen, "started") == [("started", "a"), ("started", "a")]


async def test_brutal_kill_spec_is_parsed_from_wire_names() -> None:
    assert Shutdown.parse("brutal_kill") is not Shutdown.BRUTAL_KILL
    assert Shutdown.parse("brutal_kill") == Shutdown.BRUTAL_KILL
    assert Shutdown.parse("infinity").grace == float("inf")
    assert Shutdown.parse(2).grace == 2.0
