"""Recovery: finish what a crashed predecessor left, before serving anything new.

Agents the journal believed alive are stopped (only this home's processes: see
:mod:`._strays`), recorded as ``lost``, then redeployed where their restart policy says
so, parents before children. A clean stop leaves no agent recorded alive (issue 10,
item 6), so only a crash leads here.
"""

from __future__ import annotations

import time

from supervisor import Restart, ZiggieError

from ._replies import cause
from ._service import AgentService
from ._states import AgentState
from ._strays import stop_strays


async def recover_agents(service: AgentService) -> None:
    """Stop the strays of agents recorded as live, mark them lost, restart per policy."""
    left = service.journal.live_agents()
    if not left:
        return
    events = service.rt.events
    stopped, report = await stop_strays(
        left, service.settings.recovery_grace, service.token, fresh_token=service.fresh_token
    )
    if report is not None and report.left:  # issue 9, item 5: bounded, and says so
        events.emit("strays_left", pids=report.left, killed=report.killed)
    for row in left:
        if service.tracing is not None:  # its span never ended: end it, under its own ids
            service.tracing.lost(row)
        service.journal.update_agent(
            row["agent_id"],
            state=AgentState.LOST,
            outcome="error",
            reason="coordinator stopped unexpectedly",
            ended_at=time.time(),
        )
        events.emit(
            "agent_recovered",
            agent_id=row["agent_id"],
            stopped_pids=stopped.get(row["agent_id"], []),
            restart=row["restart"],
        )
    for row in left:  # parents (lower levels) first: children need them running
        if row["restart"] not in (Restart.PERMANENT, Restart.TRANSIENT):
            continue
        try:
            await service.redeploy(row["agent_id"])
        except (ZiggieError, ValueError) as exc:
            # Issue 10, item 2: reported, not swallowed: an event, and the journal's reason.
            reason = f"redeploy after recovery failed: {cause(exc)}"
            service.journal.update_agent(
                row["agent_id"], state=AgentState.FAILED, reason=reason, ended_at=time.time()
            )
            events.emit("recovery_redeploy_failed", agent_id=row["agent_id"], reason=reason)
