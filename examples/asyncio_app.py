"""The runtime embedded in a plain asyncio application (anyio runs it on asyncio)."""

from __future__ import annotations

import asyncio
import sys

from actors import ActorRef, actor_spec, process_spec
from supervisor import no_events, open_runtime


class Greeter:
    async def receive(self, name: str) -> str:
        await asyncio.sleep(0)  # plain asyncio code works inside actors
        return f"hello, {name}"


async def main() -> None:
    async with open_runtime("asyncio-app", events=no_events()) as rt:
        await rt.start_child(actor_spec("greeter", Greeter))
        greeter = ActorRef(rt, "greeter")
        print(await greeter.ask("asyncio"))
        handle = await rt.start_child(
            process_spec("helper", [sys.executable, "-c", "import time; time.sleep(3600)"])
        )
        print(f"helper process running as pid {handle.pid}")
        await rt.terminate("helper")
        print("helper stopped, tree verified empty")


if __name__ == "__main__":
    asyncio.run(main())
