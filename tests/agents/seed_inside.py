"""The seed's own client inside an agent: ``seed_inside.py SEED_PARENT OUT``.

SEED_PARENT holds the package ``seedpkg`` (the seed's ``schemas.py`` and ``client.py``, as
``tests/test_seed_compat.py`` extracts them). The agent deploys a child of its own through
``$ZIGGIE_HOME/agent-queue``, naming itself as the parent as the seed's callers do, asks for
the child's status, terminates it, and writes the three answers to OUT.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

sys.path.insert(0, sys.argv[1])

from seedpkg.client import AgentDeploymentClient
from seedpkg.schemas import AgentContext, AgentSpec


async def main() -> None:
    me = os.environ["ZIGGIE_AGENT_ID"]
    client = AgentDeploymentClient(queue_dir=os.path.join(os.environ["ZIGGIE_HOME"], "agent-queue"))
    spec = AgentSpec(
        id=f"{me}-child",
        level="L2",
        name="Child",
        role="helper",
        context=AgentContext(working_directory=os.getcwd()),
        task="help",
        max_iterations=1000,
        timeout_seconds=30,
    )
    answers = {
        "deployed": await client.deploy_agent(spec, parent_agent=me),
        "running": await client.check_agent_status(spec.id),
        "terminated": await client.terminate_agent(spec.id),
    }
    out = {name: answer.model_dump(mode="json") for name, answer in answers.items()}
    tmp = sys.argv[2] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(out, f)
    os.rename(tmp, sys.argv[2])


asyncio.run(main())
