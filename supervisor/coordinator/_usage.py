"""CPU and RSS of running agents, sampled from /proc at most twice a second per agent.

A sample walks the agent's process tree (2/3 of a status call's cost): status replies,
lists and the dashboard's usage stream share the last one.
"""

from __future__ import annotations

import time

import anyio.lowlevel

from actors import ProcessHandle
from supervisor import Runtime

#: Seconds a sample stays fresh.
TTL = 0.5


class UsageCache:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self._samples: dict[str, tuple[float, ProcessHandle, dict[str, float]]] = {}

    def of(self, agent_id: str, handle: ProcessHandle) -> dict[str, float]:
        """The agent's usage: the cached sample of this incarnation if fresh, else a new one."""
        now = time.monotonic()
        cached = self._samples.get(agent_id)
        if cached is not None and cached[0] > now and cached[1] is handle:
            return cached[2]
        usage = handle.usage()
        self._samples[agent_id] = (now + TTL, handle, usage)
        return usage

    async def of_running(self, *, batch: int = 25) -> dict[str, dict[str, float]]:
        """Every running process agent's usage, by id.

        A checkpoint every *batch* agents keeps a thousand of them from holding the event
        loop for 150 ms at a stretch.
        """
        out: dict[str, dict[str, float]] = {}
        for n, agent_id in enumerate(self.rt.ids(), 1):
            handle = self.rt.whereis(agent_id)
            if isinstance(handle, ProcessHandle):
                out[agent_id] = self.of(agent_id, handle)
            else:
                self._samples.pop(agent_id, None)
            if n % batch == 0:
                await anyio.lowlevel.checkpoint()
        return out
