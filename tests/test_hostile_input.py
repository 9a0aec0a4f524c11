"""Input an attacker controls never takes over an id, nor amplifies the journal or events.

Real coordinators and agents on both anyio backends (real clock: real processes).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from supervisor import AgentDeploymentClient, AgentSpec, EventLog, json_events, open_runtime
from supervisor.coordinator import Coordinator, Settings, open_coordinator
from supervisor.protocol import definition_text, read_definition

from .helpers import real_clock_backend as anyio_backend  # noqa: F401
from .queue_helpers import agent_spec, await_answer, coordinator, drop

pytestmark = pytest.mark.anyio


async def _until_state(coord: Coordinator, agent_id: str, *states: str) -> None:
    # The journal follows the runtime's events; a real process has no event to await here.
    with anyio.fail_after(30):
        while (d := coord.service.agent_detail(agent_id)) is None or d["state"] not in states:
            await anyio.sleep(0.02)


def _child(agent_id: str, work: Path, **extra: Any) -> AgentSpec:
    return AgentSpec.model_validate(
        agent_spec(agent_id, work, level="L2", timeout_seconds=60, **extra)
    )


# -- a known id is never re-parented --------------------------------------------------


async def test_a_known_id_is_never_taken_over_by_another_parent(tmp_path: Path) -> None:
    """``x`` ran under ``a`` and ended; ``b`` deploying its own child ``x`` is refused
    (``conflict``), the journal still says ``x`` is ``a``'s, and ``a`` may deploy it again.
    The id of a finished top-level agent is the operator's: no agent may adopt it."""
    home = tmp_path / "home"
    async with coordinator(home) as (_, coord), AgentDeploymentClient(home / "agent-queue") as c:
        for parent in ("a", "b"):
            spec = AgentSpec.model_validate(agent_spec(parent, tmp_path, timeout_seconds=60))
            assert (await c.deploy_agent(spec)).status == "deployed"
        assert (await c.deploy_agent(_child("x", tmp_path), parent_agent="a")).status == "deployed"
        assert (await c.terminate_agent("x")).status == "terminated"

        taken = await c.deploy_agent(_child("x", tmp_path), parent_agent="b")
        assert (taken.status, taken.code) == ("failed", "conflict")
        assert "'a'" in (taken.error or "")
        row = coord.service.journal.agent("x")
        assert row is not None
        assert row["parent_id"] == "a"
        assert row["spec"]["env"] == {"DEMO_PACE": "0.05"}  # b's spec did not replace it

        again = await c.deploy_agent(_child("x", tmp_path), parent_agent="a")
        assert again.status == "deployed", again.error  # its rightful owner: as before
        assert (await c.terminate_agent("x")).status == "terminated"

        # A finished top-level agent's id: the operator may deploy it again, no agent may.
        top = AgentSpec.model_validate(agent_spec("t", tmp_path, timeout_seconds=60))
        assert (await c.deploy_agent(top)).status == "deployed"
        assert (await c.terminate_agent("t")).status == "terminated"
        adopted = await c.deploy_agent(_child("t", tmp_path), parent_agent="b")
        assert (adopted.status, adopted.code) == ("failed", "conflict")
        assert coord.service.journal.agent("t")["parent_id"] is None  # type: ignore[index]
        assert (await c.deploy_agent(top)).status == "deployed"
        await c.terminate_agent("t")


# -- sizes: parent_agent is an id, every event field is capped -------------------------


@pytest.mark.parametrize("parent", ["p" * 1_000_000, "../escape", "two words", ""])
async def test_parent_agent_must_be_a_safe_id(tmp_path: Path, parent: str) -> None:
    home = tmp_path / "home"
    request = {
        "request_id": "big-parent",
        "parent_agent": parent,
        "action": "status_check",
        "target_agent_id": "nobody",
    }
    async with coordinator(home, max_request_bytes=2 * 2**20):
        drop(home, "big-parent.request.json", json.dumps(request))
        kind, answer = await await_answer(home, "big-parent")
    assert kind == "error"
    assert answer["code"] == "invalid_request"
    assert "parent_agent" in answer["error"]
    assert len(answer["error"]) < 2000  # the refusal does not echo the input back


async def test_no_event_field_amplifies_what_was_sent(tmp_path: Path) -> None:
    """A 300 KB name is sent once; every event of the agent carries its name. Each event
    line stays small, the long value cut with a marker that says how much was cut."""
    home = tmp_path / "home"
    events_file = tmp_path / "events.jsonl"
    name = "n" * 300_000
    spec = AgentSpec.model_validate(
        agent_spec("long-name", tmp_path, name=name, task="t" * 300_000, timeout_seconds=60)
    )
    with open(events_file, "w", encoding="utf-8") as stream:
        await _deploy_and_stop(home, json_events(stream), spec)
    lines = events_file.read_text().splitlines()
    events = [json.loads(line) for line in lines]
    carrying = [e for e in events if e.get("agent_id") == "long-name" and "name" in e]
    assert {"spawned", "started", "terminated"} <= {e["event"] for e in carrying}
    for event in carrying:
        assert event["name"].startswith("n" * 100)
        assert event["name"].endswith("[cut 297952 characters]")
    assert max(len(line) for line in lines) < 16_384


async def _deploy_and_stop(home: Path, events: EventLog, spec: AgentSpec) -> None:
    async with (
        open_runtime(events=events) as rt,
        open_coordinator(rt, Settings(home=home)) as coord,
        AgentDeploymentClient(home / "agent-queue") as c,
    ):
        assert (await c.deploy_agent(spec)).status == "deployed"
        await _until_state(coord, spec.id, "running")
        assert (await c.terminate_agent(spec.id)).status == "terminated"


def test_event_log_caps_long_strings_and_long_lists_for_every_listener() -> None:
    seen: list[dict[str, Any]] = []
    log = EventLog(enabled=False)
    with log.listen(lambda _, fields: seen.append(fields)):
        log.emit(
            "probe",
            short="ok",
            long="x" * 10_000,
            pids=list(range(5000)),
            nested={"deep": "y" * 10_000},
            number=7,
        )
    fields = seen[0]
    assert fields["short"] == "ok"
    assert fields["number"] == 7
    assert fields["long"] == "x" * 2048 + "…[cut 7952 characters]"
    assert fields["pids"][:256] == list(range(256))
    assert fields["pids"][256] == "…[cut 4744 items]"
    assert len(fields["pids"]) == 257
    assert fields["nested"]["deep"].endswith("…[cut 7952 characters]")


# -- the definition file: any task text reads back ------------------------------------


@pytest.mark.parametrize("odd", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\r"])
def test_any_task_text_reads_back_from_the_definition(tmp_path: Path, odd: str) -> None:
    task = f"first{odd}second: {odd}---{odd}third"
    spec = AgentSpec.model_validate(agent_spec("odd", tmp_path, task=task, name=f"n{odd}m"))
    path = tmp_path / "odd.md"
    path.write_text(definition_text(spec, None), encoding="utf-8")
    front = read_definition(path)
    assert front["task"] == task
    assert front["name"] == f"n{odd}m"


async def test_an_agent_whose_task_holds_a_line_separator_starts(tmp_path: Path) -> None:
    """The demo agent reads its definition at start: U+2028 in the task must not crash it."""
    home = tmp_path / "home"
    spec = AgentSpec.model_validate(
        agent_spec("sep", tmp_path, task="one\u2028two", timeout_seconds=60, max_iterations=3)
    )
    async with coordinator(home) as (_, coord), AgentDeploymentClient(home / "agent-queue") as c:
        assert (await c.deploy_agent(spec)).status == "deployed"
        await _until_state(coord, "sep", "completed", "failed")
        detail = coord.service.agent_detail("sep")
        assert detail is not None
        assert detail["state"] == "completed", (detail, Path(detail["log"]).read_text())
