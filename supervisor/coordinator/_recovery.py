"""Recovery: finish what a crashed predecessor left, before serving anything new.

Agents the journal believed alive are stopped (only this home's processes: see
:mod:`._strays`), recorded as ``lost``, then redeployed where their restart policy says
so, parents before children.
"""

from __future__ import annotations

import contextlib
import time

from supervisor import Restart, ZiggieError

from ._service import AgentService
from ._states import AgentState
from ._strays import stop_strays


async def recover_agents(service: AgentService) -> None:
    """Stop the strays of agents recorded as live, mark them lost, restart per policy."""
    left = service.journal.live_agents()
    if not left:
        return
    stopped = await stop_strays(left, service.settings.recovery_grace)
    for row in left:
        service.journal.update_agent(
            row["agent_id"],
            state=AgentState.LOST,
            outcome="error",
            reason="coordinator stopped unexpectedly",
            ended_at=time.time(),
        )
        service.rt.events.emit(
            "agent_recovered",
            agent_id=row["agent_id"],
            stopped_pids=stopped.get(row["agent_id"], []),
            restart=row["restart"],
        )
    for row in left:  # parents (lower levels) first: children need them running
        if row["restart"] in (Restart.PERMANENT, Restart.TRANSIENT):
            with contextlib.suppress(ZiggieError, ValueError):
                await service.redeploy(row["agent_id"])
