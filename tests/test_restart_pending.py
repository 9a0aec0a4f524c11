"""``ChildInfo.restart_pending``: a child between incarnations is not a child that ended.

A status reader (``ziggie logs -f``, ``ziggie wait``) must tell "crashed, restart
pending" from "ended for good", at every moment: right after the exit, during the
backoff, and once the supervisor decided not to restart it.
"""

from __future__ import annotations

import anyio
import pytest

from supervisor import Backoff, ChildState, Restart, open_runtime

from .helpers import Probe
from .waiting import event_waits

pytestmark = pytest.mark.anyio


async def test_a_crashed_child_is_pending_until_it_runs_again() -> None:
    probe = Probe()
    backoff = Backoff(initial=0.5, maximum=0.5, jitter=0)
    async with open_runtime(children=[probe.spec("a")], backoff=backoff) as rt:
        with event_waits(rt) as waits:
            seen: list[bool] = []
            # Listeners run where the event is emitted: the very moment of the exit.
            with rt.events.listen(
                lambda name, fields: (
                    seen.append(rt.info("a").restart_pending) if name == "exited" else None
                )
            ):
                probe.crash("a")
                await waits.event("exited", "a")
            assert seen == [True]  # not yet decided on: pending, never "ended"
            await anyio.wait_all_tasks_blocked()  # decided: a restart, after its backoff
            info = rt.info("a")
            assert info.state is ChildState.STOPPED
            assert info.restart_pending  # waiting out its backoff
            await waits.event("restarted", "a")
            assert rt.info("a").state is ChildState.RUNNING
            assert not rt.info("a").restart_pending


async def test_a_child_that_ended_for_good_is_not_pending() -> None:
    probe = Probe()
    async with open_runtime(children=[probe.spec("t", restart=Restart.TRANSIENT)]) as rt:
        with event_waits(rt) as waits:
            probe.finish("t")  # a normal exit: a transient child is not restarted
            await waits.event("exited", "t")
            await anyio.wait_all_tasks_blocked()  # the supervisor has decided on the exit
            info = rt.info("t")
            assert info.state is ChildState.STOPPED
            assert not info.restart_pending
