"""In-process actors: tell, ask, dead actors, and refs that survive restarts."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from actors import Actor, ActorRef, actor_spec
from supervisor import ActorDied, ActorNotRunning, MailboxFull, Restart, open_runtime

pytestmark = pytest.mark.anyio


class Counter:
    def __init__(self) -> None:
        self.total = 0

    async def receive(self, message: Any) -> Any:
        if message == "boom":
            raise RuntimeError("counter exploded")
        if message == "hang":
            await anyio.sleep_forever()
        if message == "get":
            return self.total
        self.total += message
        return self.total


def test_counter_is_an_actor() -> None:
    assert isinstance(Counter(), Actor)


async def test_tell_then_ask_in_order() -> None:
    async with open_runtime(children=[actor_spec("c", Counter)]) as rt:
        ref = ActorRef(rt, "c")
        ref.tell_nowait(2)
        await ref.tell(3)
        assert await ref.ask("get") == 5


async def test_ask_a_dead_actor_fails_fast() -> None:
    async with open_runtime(children=[actor_spec("c", Counter, restart=Restart.TRANSIENT)]) as rt:
        ref = ActorRef(rt, "c")
        await rt.root.terminate_child("c")
        with pytest.raises(ActorNotRunning):
            await ref.ask("get")
        with pytest.raises(ActorNotRunning):
            ref.tell_nowait(1)
        with pytest.raises(ActorNotRunning):
            await ActorRef(rt, "nobody").ask("get")


async def test_crash_during_ask_raises_actor_died_and_restart_gives_fresh_state() -> None:
    async with open_runtime(children=[actor_spec("c", Counter)]) as rt:
        ref = ActorRef(rt, "c")
        assert await ref.ask(10) == 10
        with pytest.raises(ActorDied):
            await ref.ask("boom")
        # Same ref, new incarnation, fresh mailbox and state.
        with anyio.fail_after(5):
            while rt.info("c").incarnation < 2 or rt.whereis("c") is None:
                await anyio.sleep(0)
        assert await ref.ask("get") == 0
        assert rt.info("c").restarts == 1


async def test_queued_asks_fail_when_the_actor_dies() -> None:
    async with open_runtime(children=[actor_spec("c", Counter, restart=Restart.TEMPORARY)]) as rt:
        ref = ActorRef(rt, "c")
        results: list[str] = []

        async def ask(message: Any) -> None:
            try:
                await ref.ask(message)
                results.append("answered")
            except ActorDied:
                results.append("died")

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask, "hang")
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(ask, 1)
            await anyio.wait_all_tasks_blocked()
            await rt.root.terminate_child("c")
        assert results == ["died", "died"]


async def test_ask_timeout(trio_only: None) -> None:
    async with open_runtime(children=[actor_spec("c", Counter)]) as rt:
        with pytest.raises(TimeoutError):
            await ActorRef(rt, "c").ask("hang", timeout=2)
        assert anyio.current_time() == pytest.approx(2)


async def test_mailbox_full() -> None:
    async with open_runtime(children=[actor_spec("c", Counter, mailbox_size=1)]) as rt:
        ref = ActorRef(rt, "c")
        ref.tell_nowait("hang")  # taken by the actor, which then blocks
        await anyio.wait_all_tasks_blocked()
        ref.tell_nowait(1)  # fills the one slot
        with pytest.raises(MailboxFull):
            ref.tell_nowait(2)
