"""The built-in demo agent: a real, small agent program for the demo and the tests.

It reads its definition (``ZIGGIE_DEFINITION``), writes one JSON line per iteration to
stdout, paces its iterations, and exits 0 after ``max_iterations``. Knobs, all optional,
come from its environment (``AgentSpec.env``):

- ``DEMO_PACE``: seconds per iteration (default 0.5, so 10 iterations last 5 s);
- ``DEMO_CRASH_AT``: exit with code 3 at that iteration, in the first incarnation only;
- ``DEMO_CHILDREN``: a JSON list of agent specs to deploy as its own sub-agents, through
  the file-queue client, before its first iteration;
- ``DEMO_TERMINATE``: a JSON list of agent ids to try to terminate (over HTTP, with its
  own agent token, this shows what the token may and may not do);
- ``DEMO_GRANDCHILD``: start a plain ``sleep`` child process (to show cascades reach it);
- ``DEMO_IGNORE_TERM``: ignore SIGTERM (to show the SIGKILL escalation).

On SIGTERM it writes a last line and exits 0.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def _line(event: str, **fields: Any) -> None:
    record = {"ts": round(time.time(), 3), "agent_id": os.environ.get("ZIGGIE_AGENT_ID")}
    record.update(event=event, **fields)
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def _on_term(signum: int, frame: object) -> None:
    _line("stopping", signal=signum)
    sys.exit(0)


def _client() -> Any:
    # Over HTTP when the coordinator serves its API (we then hold an agent token),
    # else through the file queue.
    if os.environ.get("ZIGGIE_URL"):
        from supervisor.client import HttpAgentClient

        return HttpAgentClient()
    from supervisor.client import AgentDeploymentClient

    return AgentDeploymentClient()


def _deploy_children(raw: str) -> None:
    import anyio

    from supervisor.protocol import AgentSpec

    specs = [AgentSpec.model_validate(item) for item in json.loads(raw)]

    async def deploy() -> None:
        client = _client()
        for spec in specs:
            response = await client.deploy_agent(spec, timeout=30)
            _line(
                "child_deployed",
                child=spec.id,
                status=response.status,
                error=response.error,
                code=response.code,
                via="http" if os.environ.get("ZIGGIE_URL") else "queue",
            )

    anyio.run(deploy)


def _terminate_others(raw: str) -> None:
    import anyio

    async def terminate() -> None:
        client = _client()
        for agent_id in json.loads(raw):
            response = await client.terminate_agent(agent_id, timeout=30)
            _line(
                "terminate_tried",
                target=agent_id,
                status=response.status,
                code=response.code,
                error=response.error,
            )

    anyio.run(terminate)


def main() -> int:
    definition_path = os.environ.get("ZIGGIE_DEFINITION")
    definition: dict[str, Any] = {}
    if definition_path:
        from supervisor.protocol import read_definition

        definition = read_definition(Path(definition_path))
    iterations = int(os.environ.get("ZIGGIE_MAX_ITERATIONS", definition.get("max_iterations", 10)))
    pace = float(os.environ.get("DEMO_PACE", "0.5"))
    first = os.environ.get("ZIGGIE_INCARNATION", "1") == "1"
    crash_at = int(os.environ["DEMO_CRASH_AT"]) if os.environ.get("DEMO_CRASH_AT") else None
    signal.signal(
        signal.SIGTERM, signal.SIG_IGN if os.environ.get("DEMO_IGNORE_TERM") else _on_term
    )
    _line(
        "agent_started",
        name=definition.get("name"),
        level=os.environ.get("ZIGGIE_LEVEL"),
        parent=os.environ.get("ZIGGIE_PARENT_ID"),
        task=definition.get("task"),
        pid=os.getpid(),
    )
    if os.environ.get("DEMO_GRANDCHILD"):
        subprocess.Popen(["sleep", "3600"])
    if os.environ.get("DEMO_CHILDREN"):
        _deploy_children(os.environ["DEMO_CHILDREN"])
    if os.environ.get("DEMO_TERMINATE"):
        _terminate_others(os.environ["DEMO_TERMINATE"])
    for i in range(1, iterations + 1):
        if first and crash_at == i:
            _line("crashing", iteration=i)
            return 3
        _line("iteration", iteration=i, of=iterations)
        time.sleep(pace)
    _line("agent_finished", iterations=iterations)
    return 0


if __name__ == "__main__":
    sys.exit(main())
