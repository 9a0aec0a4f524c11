"""The seed's "Integration with Ziggie": deploy Overwatch (L1) through a coordinator.

Start a coordinator first (``ziggie serve --home /srv/ziggie-home``), then::

    python examples/overwatch.py --home /srv/ziggie-home --workdir /srv/work

The work directory is what Overwatch may read (and its ``agent-reports/`` what it may
write); the coordinator's home must lie outside it, as no agent may touch the home.

It deploys Overwatch, checks its status, and (with ``--terminate``) stops it again.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from supervisor import AgentContext, AgentDeploymentClient, AgentPermissions, AgentSpec


async def deploy_overwatch(home: Path, workdir: Path, terminate: bool) -> str | None:
    """Deploy the Overwatch sub-agent from Ziggie (the seed's example, made to run)."""
    async with AgentDeploymentClient(home / "agent-queue") as client:
        overwatch = AgentSpec(
            id="overwatch-001",
            level="L1",
            name="Overwatch",
            role="Project oversight and L2 agent coordination",
            tools=["Read", "Grep", "Bash", "TodoWrite"],
            context=AgentContext(
                working_directory=str(workdir),
                knowledge_base=str(workdir / "knowledge-base"),
                permissions=AgentPermissions(
                    read=[f"{workdir}/**"],
                    write=[f"{workdir}/agent-reports/**"],
                    execute=["git", "docker", "python"],
                ),
            ),
            task="Monitor and coordinate L2 agent activities",
            max_iterations=100,
            timeout_seconds=600,
        )
        response = await client.deploy_agent(overwatch)
        if response.status != "deployed":
            print(f"Deployment failed: {response.error}")
            return None
        print(f"Overwatch deployed (PID: {response.pid})")
        print(f"Log file: {response.output_log}")
        status = await client.check_agent_status(response.agent_id)
        print(f"Agent status: {status.status}")
        if terminate:
            stopped = await client.terminate_agent(response.agent_id)
            print(f"Termination: {stopped.status}")
        return response.agent_id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path(".ziggie"))
    parser.add_argument("--workdir", type=Path, default=Path.cwd())
    parser.add_argument("--terminate", action="store_true", help="stop Overwatch again")
    args = parser.parse_args()
    agent_id = asyncio.run(deploy_overwatch(args.home, args.workdir.absolute(), args.terminate))
    return 0 if agent_id else 1


if __name__ == "__main__":
    sys.exit(main())
