"""Wire schemas (seed compatibility, validation), JSON events, and the public namespace."""

from __future__ import annotations

import io
import json
from datetime import UTC

import anyio
import pytest
import structlog
from pydantic import ValidationError

import actors
import supervisor
from actors import function_actor
from supervisor import (
    AgentSpec,
    DeploymentRequest,
    DeploymentResponse,
    json_events,
    open_runtime,
)

SEED_REQUEST = {
    "version": "1.0",
    "request_id": "5f0c3c1e-8a55-4b0e-9d53-0a3d7b1f2c11",
    "timestamp": "2025-11-09T15:30:00.123456",
    "parent_agent": "Ziggie",
    "action": "deploy_agent",
    "agent_spec": {
        "id": "test-agent-001",
        "level": "L1",
        "name": "Test Agent",
        "role": "Testing agent deployment system",
        "tools": ["Read", "Grep"],
        "context": {
            "working_directory": "/tmp",
            "knowledge_base": None,
            "permissions": {"read": ["/tmp/**"], "write": [], "execute": []},
        },
        "task": "Perform test operations and report status",
        "max_iterations": 10,
        "timeout_seconds": 60,
    },
    "target_agent_id": None,
}


def test_seed_request_validates_and_naive_timestamps_become_utc() -> None:
    request = DeploymentRequest.model_validate(SEED_REQUEST)
    assert request.timestamp.tzinfo is UTC
    assert request.agent_spec is not None
    assert request.agent_spec.command is None
    assert request.agent_spec.restart is None
    assert request.agent_spec.shutdown == 5.0


def test_defaults_match_the_seed() -> None:
    spec = AgentSpec.model_validate(
        {
            "level": "L2",
            "name": "n",
            "role": "r",
            "task": "t",
            "context": {"working_directory": "."},
        }
    )
    assert spec.tools == ["Read", "Grep", "Bash"]
    assert (spec.max_iterations, spec.timeout_seconds) == (50, 300)
    request = DeploymentRequest(parent_agent="Ziggie", action="status_check", target_agent_id="a")
    assert request.version == "1.0"
    assert request.timestamp.tzinfo is not None


@pytest.mark.parametrize(
    "bad_id", ["../etc", "a/b", ".hidden", "", "x" * 129, "a b", "ü", "-lead", "a\\b", "a\x00"]
)
def test_ids_that_could_act_as_paths_are_rejected(bad_id: str) -> None:
    with pytest.raises(ValidationError, match="invalid id"):
        DeploymentRequest(parent_agent="Z", action="status_check", target_agent_id=bad_id)
    with pytest.raises(ValidationError, match="invalid id"):
        DeploymentRequest.model_validate({**SEED_REQUEST, "request_id": bad_id})


@pytest.mark.parametrize(
    ("action", "missing"),
    [
        ("deploy_agent", "agent_spec"),
        ("status_check", "target_agent_id"),
        ("terminate_agent", "target_agent_id"),
        ("restart_agent", "target_agent_id"),
    ],
)
def test_actions_need_their_arguments(action: str, missing: str) -> None:
    with pytest.raises(ValidationError, match=f"needs '{missing}'"):
        DeploymentRequest(parent_agent="Z", action=action)  # type: ignore[arg-type]


def test_list_agents_needs_nothing_and_unknown_actions_fail() -> None:
    DeploymentRequest(parent_agent="Z", action="list_agents")
    with pytest.raises(ValidationError):
        DeploymentRequest(parent_agent="Z", action="reboot")  # type: ignore[arg-type]


@pytest.mark.parametrize("shutdown", [-1, "never", True])
def test_bad_shutdown_values_are_rejected(shutdown: object) -> None:
    with pytest.raises(ValidationError):
        AgentSpec.model_validate({**SEED_REQUEST["agent_spec"], "shutdown": shutdown})  # type: ignore[dict-item]


def test_response_allows_submitted_and_round_trips() -> None:
    resp = DeploymentResponse(request_id="r", status="submitted", agent_id="a", message="m")
    again = DeploymentResponse.model_validate_json(resp.model_dump_json())
    assert again == resp


@pytest.mark.anyio
async def test_events_render_as_json_lines_with_tree_fields() -> None:
    stream = io.StringIO()

    async def work() -> None:
        raise ValueError("bad")

    async with open_runtime(events=json_events(stream)) as rt:
        await rt.start_child(function_actor("w", work, restart="temporary", level="L1"))
        await anyio.wait_all_tasks_blocked()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    started, exited = lines[0], lines[1]
    assert started["event"] == "started"
    assert exited["event"] == "exited"
    for line in (started, exited):
        assert line["agent_id"] == "w"
        assert line["parent_id"] == "ziggie"
        assert line["level"] == "L1"
        assert line["path"] == "ziggie/w"
        assert line["incarnation"] == 1
        assert "ts" in line
    assert exited["outcome"] == "error"
    assert exited["reason"] == "ValueError: bad"


@pytest.mark.anyio
async def test_default_events_go_through_the_hosts_structlog() -> None:
    async def work() -> None:
        return None

    with structlog.testing.capture_logs() as logs:
        async with open_runtime() as rt:
            await rt.start_child(function_actor("w", work, restart="temporary"))
    assert [entry["event"] for entry in logs][:2] == ["started", "exited"]
    assert logs[1]["outcome"] == "normal"


ACTORS_EXPORTS = [
    "Actor",
    "ActorRef",
    "AgentHome",
    "AgentRefused",
    "Mailbox",
    "ProcessExit",
    "ProcessHandle",
    "RUNNERS",
    "Runner",
    "SpawnError",
    "StopReport",
    "actor",
    "agent_child_spec",
    "become_subreaper",
    "check_deployable",
    "claude_runner",
    "definition_text",
    "demo_runner",
    "find_marked",
    "function_actor",
    "has_marker",
    "process_spec",
    "process_start_time",
    "read_definition",
    "reap_orphans",
    "register_runner",
    "resolve_argv",
    "stop_strays",
]

SUPERVISOR_EXPORTS = [
    "ActorDied",
    "ActorError",
    "ActorNotRunning",
    "AgentContext",
    "AgentDeploymentClient",
    "AgentPermissions",
    "AgentSpec",
    "AlreadyPresent",
    "AlreadyStarted",
    "AutoShutdown",
    "Backoff",
    "ChildContext",
    "ChildCounts",
    "ChildInfo",
    "ChildKind",
    "ChildSpec",
    "ChildState",
    "DeploymentRequest",
    "DeploymentResponse",
    "EventLog",
    "IGNORE",
    "MailboxFull",
    "MaxChildren",
    "NotFound",
    "Outcome",
    "PROTOCOL_VERSION",
    "Restart",
    "RestartIntensityExceeded",
    "Running",
    "Runtime",
    "Settings",
    "Shutdown",
    "SpecOptions",
    "StartError",
    "Strategy",
    "Supervisor",
    "SupervisorClosed",
    "SupervisorError",
    "SupervisorOptions",
    "SupervisorSpecOptions",
    "SyncAgentDeploymentClient",
    "ZiggieError",
    "__version__",
    "is_valid_id",
    "json_events",
    "no_events",
    "open_runtime",
    "open_supervisor",
    "supervisor_spec",
    "validate_id",
    "write_atomic",
]


def test_public_names_are_pinned() -> None:
    assert sorted(actors.__all__) == ACTORS_EXPORTS
    # Changing the public API is a deliberate act: update this list with it.
    assert sorted(supervisor.__all__) == SUPERVISOR_EXPORTS
    for name in supervisor.__all__:
        assert hasattr(supervisor, name), name
