"""The coordinator with real files: answers, bad input, exactly-once, client, concurrency."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor import (
    AgentDeploymentClient,
    AgentSpec,
    DeploymentRequest,
    SyncAgentDeploymentClient,
)

from .helpers import real_clock_backend as anyio_backend  # noqa: F401
from .queue_helpers import (
    agent_spec,
    answer_of,
    await_answer,
    coordinator,
    drop,
    fake_coordinator,
    serve_process,
    status_request,
)
from .waiting import event_waits, until_files, until_text

pytestmark = pytest.mark.anyio


def _queue_empty(home: Path) -> bool:
    q = home / "agent-queue"
    return not os.listdir(q / "requests") and not os.listdir(q / "processing")


async def _settle(home: Path) -> None:
    q = home / "agent-queue"
    await until_files([q / "requests", q / "processing"], lambda: _queue_empty(home))


BAD_INPUTS: list[tuple[str, bytes | str | dict[str, Any], str]] = [
    ("badjson", b"{not json", "invalid JSON"),
    ("notobject", b"[1, 2, 3]", "must be an object"),
    ("schema", {"request_id": "schema", "action": "deploy_agent"}, "parent_agent"),
    ("unknownaction", {**status_request("unknownaction"), "action": "reboot"}, "action"),
    ("nospec", {**status_request("nospec"), "action": "deploy_agent"}, "needs 'agent_spec'"),
    ("notutf8", b'{"request_id": "\xff\xfe"}', "not UTF-8"),
    ("mismatch", status_request("someone-else"), "does not match the file name"),
    ("pathy", status_request("pathy", target="../../etc"), "invalid id"),
    ("oversize", b" " * (2**20 + 10), "the limit is"),
]


@pytest.mark.parametrize(("file_id", "content", "message"), BAD_INPUTS)
async def test_bad_requests_get_a_clear_error_file(
    tmp_path: Path, file_id: str, content: Any, message: str
) -> None:
    home = tmp_path / "home"
    async with coordinator(home):
        drop(home, f"{file_id}.request.json", content)
        kind, answer = await await_answer(home, file_id)
        assert kind == "error"
        assert answer["status"] == "failed"
        assert message in answer["error"]
        assert answer["original_file"] == f"{file_id}.request.json"
        # still serving, and the bad file was archived, not lost
        drop(home, "after.request.json", status_request("after"))
        assert (await await_answer(home, "after"))[0] == "response"
        await _settle(home)
    archived = list((home / "agent-queue" / "archive").rglob(f"{file_id}.request.json"))
    assert len(archived) == 1


async def test_directories_symlinks_and_odd_names(tmp_path: Path) -> None:
    home = tmp_path / "home"
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps(status_request("link")))
    async with coordinator(home):
        requests = home / "agent-queue" / "requests"
        (tmp_path / "d.request.json").mkdir()
        os.replace(tmp_path / "d.request.json", requests / "d.request.json")
        os.symlink(secret, tmp_path / "link.request.json")
        os.replace(tmp_path / "link.request.json", requests / "link.request.json")
        drop(home, "bad id!.request.json", status_request("x"))
        drop(home, ".hidden.request.json", status_request("hidden"))
        drop(home, "note.txt", b"ignore me")
        assert "not a regular file" in (await await_answer(home, "d"))[1]["error"]
        assert "symlink" in (await await_answer(home, "link"))[1]["error"]
        responses = home / "agent-queue" / "responses"
        await until_files([responses], lambda: bool(list(responses.glob("invalid-*.error.json"))))
        # Dropped after the hidden file and answered: the hidden one was seen, and left.
        drop(home, "after.request.json", status_request("after"))
        await await_answer(home, "after")
        assert answer_of(home, "hidden") is None  # hidden files are a writer's temp files
        assert (requests / ".hidden.request.json").exists()
        assert (requests / "note.txt").exists()
    assert secret.read_text()  # the symlink target was never touched
    # Nothing was written outside the home.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "secret.json"]


async def test_every_answer_and_directory_is_private(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with coordinator(home):
        drop(home, "r1.request.json", status_request("r1"))
        await await_answer(home, "r1")
    response = home / "agent-queue" / "responses" / "r1.response.json"
    assert stat.S_IMODE(response.stat().st_mode) == 0o600
    for sub in ("requests", "processing", "responses", "archive"):
        assert stat.S_IMODE((home / "agent-queue" / sub).stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "journal.sqlite3").stat().st_mode) == 0o600


async def test_requests_already_waiting_are_answered_at_start(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for i in range(5):
        drop(home, f"early-{i}.request.json", status_request(f"early-{i}"))
    (home / "agent-queue" / "processing").mkdir(parents=True, exist_ok=True)
    stuck = home / "agent-queue" / "processing" / "stuck.request.json"
    stuck.write_text(json.dumps(status_request("stuck")))
    async with coordinator(home):
        for rid in [f"early-{i}" for i in range(5)] + ["stuck"]:
            assert (await await_answer(home, rid))[0] == "response"
        await _settle(home)


async def test_a_request_id_seen_before_gets_the_recorded_answer(tmp_path: Path) -> None:
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    deploy = {
        "request_id": "dep-1",
        "parent_agent": "Ziggie",
        "action": "deploy_agent",
        "agent_spec": agent_spec("once", work),
    }
    async with coordinator(home) as (rt, _):
        drop(home, "dep-1.request.json", deploy)
        _, first = await await_answer(home, "dep-1")
        assert first["status"] == "deployed"
        (home / "agent-queue" / "responses" / "dep-1.response.json").unlink()
        drop(home, "dep-1.request.json", deploy)  # the same request again
        _, second = await await_answer(home, "dep-1")
        assert second == first  # the recorded answer, byte for byte
        assert rt.info("once").incarnation == 1  # never deployed twice
        await _settle(home)
        await rt.terminate("once")
    archived = list((home / "agent-queue" / "archive").rglob("dep-1.request.json*"))
    assert len(archived) == 2


async def test_client_deploy_status_list_restart_terminate(tmp_path: Path) -> None:
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    async with coordinator(home):
        client = AgentDeploymentClient(home / "agent-queue")
        spec = AgentSpec.model_validate(agent_spec("a1", work))
        deployed = await client.deploy_agent(spec)
        assert deployed.status == "deployed"
        status = await client.check_agent_status("a1")
        assert status.status == "running"
        assert status.agent is not None
        assert status.agent["level"] == "L1"
        assert status.agent["path"] == "ziggie/a1.supervisor/a1"  # its own supervisor
        assert status.agent["processes"] >= 1
        listed = await client.list_agents()
        assert [a["agent_id"] for a in listed.agents or []] == ["a1"]
        restarted = await client.restart_agent("a1")
        assert restarted.status == "deployed"
        assert restarted.pid != deployed.pid
        terminated = await client.terminate_agent("a1")
        assert terminated.status == "terminated"
        after = await client.check_agent_status("a1")
        assert after.status == "terminated"  # still answered after the agent is gone
        assert after.agent is not None
        assert after.agent["outcome"] == "shutdown"
        again = await client.terminate_agent("a1")
        assert again.status == "failed"
        assert "not running" in again.message
        unknown = await client.terminate_agent("ghost")
        assert (unknown.status, unknown.message) == ("failed", "Agent not found")
        client.close()


async def test_refusals_are_failed_responses_with_the_field(tmp_path: Path) -> None:
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    async with coordinator(home):
        client = AgentDeploymentClient(home / "agent-queue")
        l2 = AgentSpec.model_validate(agent_spec("l2-top", work, level="L2"))
        answer = await client.deploy_agent(l2)
        assert answer.status == "failed"
        assert answer.error is not None
        assert answer.error.startswith("level:")
        nowhere = AgentSpec.model_validate(
            agent_spec("nowhere", work, context={"working_directory": "/no/such/dir"})
        )
        answer = await client.deploy_agent(nowhere)
        assert answer.status == "failed"
        assert "does not exist" in (answer.error or "")
        client.close()


async def test_client_timeout_is_a_clear_failed_response(tmp_path: Path) -> None:
    with fake_coordinator(tmp_path) as queue:  # the home is locked, nobody answers
        client = AgentDeploymentClient(queue)
        answer = await client.check_agent_status("a", timeout=0.2)
        client.close()
    assert answer.status == "failed"
    assert answer.message == "Request timeout"
    assert answer.code == "timeout"
    assert "within 0.2 seconds" in (answer.error or "")


async def test_many_concurrent_waits_share_one_watch(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with coordinator(home):
        client = AgentDeploymentClient(home / "agent-queue")
        answers: list[str] = []

        async def ask(i: int) -> None:
            answer = await client.check_agent_status(f"nobody-{i}")
            answers.append(answer.agent_id)

        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(ask, i)
        assert sorted(answers) == sorted(f"nobody-{i}" for i in range(50))
        client.close()


async def test_terminate_does_not_block_other_requests(tmp_path: Path) -> None:
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    stubborn = agent_spec("stubborn", work, shutdown=3, env={"DEMO_IGNORE_TERM": "1"})
    async with coordinator(home) as (rt, _):
        client = AgentDeploymentClient(home / "agent-queue")
        deployed = await client.deploy_agent(AgentSpec.model_validate(stubborn))
        assert deployed.status == "deployed"
        # its SIGTERM handler is in place once it says so
        await until_text(Path(deployed.output_log or ""), lambda text: "agent_started" in text)
        order: list[str] = []
        waits = event_waits(rt)

        async def terminate() -> None:
            answer = await client.terminate_agent("stubborn", timeout=30)
            order.append(f"terminate:{answer.status}")
            assert answer.agent is not None
            assert answer.agent["killed"]  # it ignored SIGTERM: SIGKILL after the grace

        async def meanwhile() -> None:  # once the terminate is under way (no sleep)
            await events.event("stop_requested", "stubborn")
            other = AgentSpec.model_validate(agent_spec("other", work))
            order.append(f"deploy:{(await client.deploy_agent(other)).status}")
            order.append(f"status:{(await client.check_agent_status('other')).status}")

        with waits as events:
            async with anyio.create_task_group() as tg:
                tg.start_soon(terminate)
                tg.start_soon(meanwhile)
        assert order == ["deploy:deployed", "status:running", "terminate:terminated"]
        await client.terminate_agent("other")
        client.close()


def test_sync_client_and_asyncio_run_against_a_real_coordinator(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with serve_process(home):
        sync = SyncAgentDeploymentClient(home / "agent-queue")
        assert sync.check_agent_status("nobody").message == "Agent not found"
        assert sync.list_agents().agents == []
        sync.close()

        async def via_asyncio() -> str:
            client = AgentDeploymentClient(home / "agent-queue")
            try:
                return (await client.check_agent_status("nobody")).message
            finally:
                client.close()

        assert asyncio.run(via_asyncio()) == "Agent not found"

        async def via_trio() -> str:
            client = AgentDeploymentClient(home / "agent-queue")
            try:
                return (await client.check_agent_status("nobody")).message
            finally:
                client.close()

        assert trio.run(via_trio) == "Agent not found"


def test_client_defaults_come_from_the_agent_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZIGGIE_HOME", str(tmp_path))
    monkeypatch.setenv("ZIGGIE_AGENT_ID", "overwatch")
    client = AgentDeploymentClient()
    assert client.queue_dir == tmp_path / "agent-queue"
    assert client.parent_agent == "overwatch"


# -- property: whatever lands in requests/, exactly one answer, and the coordinator lives --

_documents = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    st.dictionaries(
        st.sampled_from(
            ["request_id", "action", "parent_agent", "agent_spec", "target_agent_id", "version"]
        ),
        st.one_of(st.none(), st.integers(), st.text(max_size=20), st.lists(st.integers())),
    ).map(lambda d: json.dumps(d).encode()),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(docs=st.lists(_documents, min_size=1, max_size=8))
def test_property_malformed_files_are_always_answered(
    docs: list[bytes], tmp_path_factory: pytest.TempPathFactory
) -> None:
    home = tmp_path_factory.mktemp("prop")

    async def main() -> None:
        async with coordinator(home):
            ids = [f"p{i}" for i in range(len(docs))]
            for file_id, doc in zip(ids, docs, strict=True):
                drop(home, f"{file_id}.request.json", doc)
            for file_id in ids:
                kind, answer = await await_answer(home, file_id)
                assert answer["status"] == "failed" or kind == "response"
            ok = DeploymentRequest(
                request_id="alive", parent_agent="Z", action="list_agents"
            ).model_dump(mode="json")
            drop(home, "alive.request.json", ok)
            assert (await await_answer(home, "alive"))[0] == "response"
            await _settle(home)

    trio.run(main)
    responses = os.listdir(home / "agent-queue" / "responses")
    assert len(responses) == len(docs) + 1  # exactly one answer each


def test_python_is_the_one_running(tmp_path: Path) -> None:
    # The demo runner uses this interpreter: sanity for the tests above.
    assert Path(sys.executable).exists()
