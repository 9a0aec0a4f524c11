"""A programmatic supervision tree in a trio program: in-process actors and a process agent.

::

    workers (one_for_one)
    ├── counter      a mailbox actor: tell / ask; crashes on "boom", restarted fresh
    ├── ticker       a plain async function, transient: restarted only if it fails
    └── pinger       an OS process (permanent), restarted when it is killed
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import trio

from actors import ActorRef, ProcessHandle, actor_spec, function_spec, process_spec
from supervisor import ActorDied, Restart, json_events, open_runtime, supervisor_spec


class Counter:
    def __init__(self) -> None:
        self.total = 0

    async def receive(self, message: Any) -> Any:
        if message == "boom":
            raise RuntimeError("counter exploded")
        if message != "get":
            self.total += message
        return self.total


async def tick(n: int) -> None:
    for _ in range(n):
        await trio.sleep(0.01)


async def main() -> None:
    tree = supervisor_spec(
        "workers",
        [
            actor_spec("counter", Counter),
            function_spec("ticker", tick, 5, restart=Restart.TRANSIENT),
            process_spec("pinger", [sys.executable, "-c", "import time; time.sleep(3600)"]),
        ],
        max_restarts=5,
        max_seconds=10,
    )
    events = json_events(sys.stderr)
    restarted = {"counter": trio.Event(), "pinger": trio.Event()}

    def on_event(name: str, fields: dict[str, Any]) -> None:
        if name == "restarted" and fields["agent_id"] in restarted:
            restarted[fields["agent_id"]].set()

    with events.listen(on_event):
        await run(tree, events, restarted)


async def run(tree: Any, events: Any, restarted: dict[str, trio.Event]) -> None:
    async with open_runtime("embedded", [tree], events=events) as rt:
        counter = ActorRef(rt, "counter")
        counter.tell_nowait(40)
        print("counter:", await counter.ask(2))
        try:
            await counter.ask("boom")
        except ActorDied:
            print("counter crashed during ask; its supervisor restarts it")
        await restarted["counter"].wait()
        print("counter after restart:", await counter.ask("get"))

        pinger: ProcessHandle = rt.whereis("pinger")
        os.kill(pinger.pid, signal.SIGKILL)
        await restarted["pinger"].wait()
        handle: ProcessHandle = rt.whereis("pinger")
        print(f"pinger killed (pid {pinger.pid}), restarted as pid {handle.pid}")
        print("children:", [(c.id, str(c.state)) for c in rt.whereis("workers").which_children()])
    print("tree stopped")


if __name__ == "__main__":
    trio.run(main)
