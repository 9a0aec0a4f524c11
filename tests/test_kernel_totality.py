"""Issue 9: the kernel is total. One regression test per numbered item, on both backends.

Cases that used to hang run in a subprocess (``tests/kernel_cases.py``) with a hard
timeout, so a regression fails here instead of hanging the suite.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

import supervisor
from actors import function_spec
from supervisor import (
    IGNORE,
    Backoff,
    ChildContext,
    ChildKind,
    ChildSpec,
    ChildState,
    Outcome,
    Restart,
    Shutdown,
    open_runtime,
    open_supervisor,
    supervisor_spec,
)

from .helpers import Probe, names, recording

ROOT = Path(__file__).resolve().parent.parent
LIFECYCLE_FIELDS = ("agent_id", "parent_id", "level", "path", "incarnation")


def _run_case(case: str, backend: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.kernel_cases", case, backend],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"{case} on {backend} hung (killed after {timeout} s)")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.poll() is not None  # the case's process is gone, whatever happened
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


BACKENDS = pytest.mark.parametrize("backend", ["trio", "asyncio"])


# -- items 1-3: hangs ------------------------------------------------------------------


@BACKENDS
def test_item1_cancelled_mixed_with_an_error_ends_the_incarnation(backend: str) -> None:
    result = _run_case("cancelled_mixed_with_error", backend)
    assert result.stdout.strip() == "OK terminated", result.stderr


@BACKENDS
def test_item2_base_exception_from_a_child_is_an_abnormal_exit(backend: str) -> None:
    result = _run_case("base_exception_child", backend)
    assert result.stdout.strip() == "OK restarted", result.stderr


@BACKENDS
@pytest.mark.parametrize("case", ["system_exit", "keyboard_interrupt"])
def test_item2_host_exit_in_a_child_stops_the_tree_then_propagates(backend: str, case: str) -> None:
    result = _run_case(case, backend)
    expected = "SystemExit" if case == "system_exit" else "KeyboardInterrupt"
    assert result.stdout.strip() == f"OK {expected} after ['sibling']", result.stderr


@BACKENDS
def test_item3_five_children_raising_while_stopped(backend: str) -> None:
    result = _run_case("five_raise_while_stopped", backend)
    assert result.stdout.strip() == "OK stopped", result.stderr


# -- item 4: the shutdown spec bounds cleanup after the node's own deadline ---------------


@BACKENDS
def test_item4_own_deadline_cleanup_is_cut_at_grace_real_clock(backend: str) -> None:
    result = _run_case("own_deadline_bounds_cleanup", backend)
    assert result.stdout.strip() == "OK cut", result.stderr


@pytest.mark.anyio
async def test_item4_own_deadline_cleanup_is_cut_at_grace_exactly(trio_only: None) -> None:
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
    async with open_runtime() as rt:
        t0 = anyio.current_time()
        await rt.start_child(spec)
        await anyio.sleep(10)
    assert took == [pytest.approx(0.3)]
    assert t0 == 0


# -- item 6: responsiveness while a restart waits ----------------------------------------


@pytest.mark.anyio
async def test_item6_backoff_does_not_block_other_calls() -> None:
    probe = Probe()
    backoff = Backoff(initial=30, jitter=0)
    async with open_runtime(children=[probe.spec("a"), probe.spec("b")], backoff=backoff) as rt:
        probe.crash("a")
        with anyio.fail_after(5):
            await probe.wait_for(("stop", "a", 1))
            await anyio.wait_all_tasks_blocked()
            t0 = anyio.current_time()
            await rt.terminate("b")  # an unrelated sibling, during a's 30 s backoff
            assert await rt.start_child(probe.spec("c")) == 1
            assert anyio.current_time() - t0 < 1
        assert rt.info("a").state is ChildState.STOPPED  # still waiting out its backoff


@pytest.mark.anyio
async def test_item6_pending_restart_is_cancelled_by_terminate(anyio_backend: Any) -> None:
    probe = Probe()
    backoff = Backoff(initial=30, jitter=0)
    with recording() as (events, seen):
        async with open_runtime(children=[probe.spec("a")], backoff=backoff, events=events) as rt:
            probe.crash("a")
            with anyio.fail_after(5):
                await probe.wait_for(("stop", "a", 1))
                await anyio.wait_all_tasks_blocked()
                await rt.terminate("a")
            # Past the backoff: virtual time on trio; on asyncio the restart task is gone.
            await anyio.sleep(60 if anyio_backend != "asyncio" else 0.1)
            await anyio.wait_all_tasks_blocked()
            assert probe.starts("a") == 1
            assert rt.info("a").state is ChildState.STOPPED
    assert names(seen, "restarted") == []


@pytest.mark.anyio
async def test_item6_two_backoffs_overlap(anyio_backend: Any) -> None:
    probe = Probe()
    delay = 10.0 if anyio_backend != "asyncio" else 0.5
    backoff = Backoff(initial=delay, maximum=delay, factor=1.0, jitter=0)
    async with open_runtime(
        children=[probe.spec("a"), probe.spec("b")], backoff=backoff, max_restarts=5
    ):
        t0 = anyio.current_time()
        probe.crash("a")
        probe.crash("b")
        with anyio.fail_after(60):
            await probe.wait_for(("start", "a", 2))
            await probe.wait_for(("start", "b", 2))
        took = anyio.current_time() - t0
    # One after the other would take 2 x delay.
    assert delay <= took < 1.6 * delay


# -- item 7: listeners are isolated ------------------------------------------------------


@pytest.mark.anyio
async def test_item7_failing_listener_never_reaches_a_child() -> None:
    probe = Probe()

    def broken(event: str, fields: dict[str, Any]) -> None:
        if event == "started":
            raise RuntimeError("journal full")

    with recording() as (events, seen), events.listen(broken):
        async with open_runtime(children=[probe.spec("a"), probe.spec("b")], events=events) as rt:
            assert rt.info("a").state is ChildState.RUNNING
            assert rt.info("b").state is ChildState.RUNNING
            await rt.terminate("a")
    failures = [f for n, f in seen if n == "listener_failed"]
    assert len(failures) == 2
    assert failures[0]["event_name"] == "started"
    assert failures[0]["error"] == "RuntimeError: journal full"


# -- items 8-11: OTP exactness -----------------------------------------------------------


@pytest.mark.anyio
async def test_item8_escalated_transient_supervisor_is_not_restarted() -> None:
    probe = Probe()
    inner = supervisor_spec("inner", [probe.spec("w")], restart=Restart.TRANSIENT, max_restarts=0)
    inner_ended = anyio.Event()

    def watch(event: str, fields: dict[str, Any]) -> None:
        if event == "terminated" and fields["agent_id"] == "inner":
            inner_ended.set()

    with recording() as (events, seen), events.listen(watch):
        async with open_runtime(children=[inner], events=events) as rt:
            probe.crash("w")
            with anyio.fail_after(5):
                await inner_ended.wait()
            await anyio.wait_all_tasks_blocked()
            info = rt.info("inner")
            assert info.state is ChildState.STOPPED
            assert info.incarnation == 1
            assert info.last_outcome is Outcome.SHUTDOWN
            assert "RestartIntensityExceeded" in (info.reason or "")
    assert probe.starts("w") == 1
    assert names(seen, "escalated") == [("escalated", "inner")]


@pytest.mark.anyio
async def test_item9_temporary_child_returning_ignore_is_dropped() -> None:
    async def ignoring(ctx: ChildContext) -> object:
        return IGNORE

    spec = ChildSpec("tmp", ignoring, restart=Restart.TEMPORARY)
    async with open_runtime(children=[spec]) as rt:
        assert "tmp" not in rt
        assert await rt.start_child(spec) is IGNORE
        assert "tmp" not in rt
        assert await rt.start_child(spec) is IGNORE  # no AlreadyPresent: the id is free


@pytest.mark.anyio
async def test_item10_every_lifecycle_event_carries_the_tree_fields() -> None:
    probe = Probe()
    inner = supervisor_spec("inner", [probe.spec("w", level="L3")], max_restarts=0, level="L2")
    with recording() as (events, seen):
        async with open_runtime(children=[inner], events=events):
            probe.crash("w")
            await probe.wait_starts("w", 2)  # inner escalated and was restarted
    escalated = next(f for n, f in seen if n == "escalated")
    assert {k: escalated[k] for k in LIFECYCLE_FIELDS} == {
        "agent_id": "inner",
        "parent_id": "ziggie",
        "level": "L2",
        "path": "ziggie/inner",
        "incarnation": 1,
    }
    for name, fields in seen:
        missing = [k for k in LIFECYCLE_FIELDS if k not in fields]
        assert not missing, (name, missing)


@pytest.mark.anyio
async def test_item11_restart_of_an_ignoring_child_emits_no_restarted() -> None:
    async def ignoring(ctx: ChildContext) -> object:
        return IGNORE

    with recording() as (events, seen):
        async with open_runtime(children=[ChildSpec("idle", ignoring)], events=events) as rt:
            assert await rt.root.restart_child("idle") is IGNORE
    assert names(seen, "restarted") == []
    assert names(seen, "ignored") == [("ignored", "idle"), ("ignored", "idle")]


# -- ergonomics --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_last_outcome_names_the_previous_incarnation() -> None:
    probe = Probe()
    async with open_runtime(children=[probe.spec("a")]) as rt:
        probe.crash("a")
        with anyio.fail_after(5):
            await probe.wait_for(("start", "a", 2))
        info = rt.info("a")
        assert info.state is ChildState.RUNNING
        assert info.last_outcome is Outcome.ERROR


@pytest.mark.anyio
async def test_tree_includes_a_supervisor_opened_inside_a_function_spec() -> None:
    probe = Probe()

    async def host(ctx: ChildContext) -> None:
        async with open_supervisor(ctx, [probe.spec("leaf")]):
            await anyio.sleep_forever()

    async with open_runtime() as rt:
        await rt.start_child(function_spec("fa", host, pass_context=True))
        with anyio.fail_after(5):
            await probe.wait_for(("start", "leaf", 1))
        assert rt.info("leaf").path == "ziggie/fa/leaf"
        fa = rt.tree()["children"][0]
        assert [c["id"] for c in fa["children"]] == ["leaf"]


def test_supervisor_kind_defaults_to_infinity_and_renders_as_text() -> None:
    async def start(ctx: ChildContext) -> None:
        async with open_supervisor(ctx) as sup:
            ctx.started(sup)
            await anyio.sleep_forever()

    spec = ChildSpec("hand", start, kind=ChildKind.SUPERVISOR)
    assert spec.shutdown == Shutdown.INFINITY
    assert f"{spec.kind}" == "supervisor"
    assert ChildSpec("w", start, kind=ChildKind.SUPERVISOR, shutdown=Shutdown(5)).shutdown == (
        Shutdown(5)
    )
    assert supervisor_spec("s").kind is ChildKind.SUPERVISOR


def test_internals_are_not_public() -> None:
    for name in ("Intensity", "InvalidTransition", "NodeContext", "ChildSlot"):
        assert not hasattr(supervisor, name), name
    with pytest.raises(TypeError, match="no public constructor"):
        ChildContext()
