"""The client never loses an answer (issue 11), fails fast with no coordinator, and its sync
face keeps one event loop."""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from pathlib import Path

import anyio
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor import AgentDeploymentClient, DeploymentRequest, SyncAgentDeploymentClient
from supervisor.client._waiting import AnswerWaits
from supervisor.protocol import DeploymentResponse, coordinator_serves, write_atomic

from .queue_helpers import coordinator, fake_coordinator, serve_process
from .waiting import until_files

# -- the reproduction: many concurrent calls against a real coordinator ----------------


def test_1000_concurrent_status_calls_under_asyncio_gather(tmp_path: Path) -> None:
    home = tmp_path / "home"

    async def fan_out() -> list[DeploymentResponse]:
        async with AgentDeploymentClient(home / "agent-queue") as client:
            return await asyncio.gather(
                *(client.check_agent_status(f"nobody-{i}", timeout=60) for i in range(1000))
            )

    with serve_process(home):
        answers = asyncio.run(fan_out())
    assert [a.agent_id for a in answers] == [f"nobody-{i}" for i in range(1000)]
    assert {a.code for a in answers} == {"not_found"}  # answered, none timed out


@pytest.mark.parametrize("n", [20, 1000])
def test_concurrent_status_calls_under_trio(tmp_path: Path, n: int) -> None:
    home = tmp_path / "home"

    async def fan_out() -> list[DeploymentResponse]:
        answers: list[DeploymentResponse] = []
        client = AgentDeploymentClient(home / "agent-queue")  # bare, as the seed uses it

        async def ask(i: int) -> None:
            answers.append(await client.check_agent_status(f"nobody-{i}", timeout=60))

        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(ask, i)
        client.close()
        return answers

    with serve_process(home):
        answers = trio.run(fan_out)
    assert sorted(a.agent_id for a in answers) == sorted(f"nobody-{i}" for i in range(n))
    assert {a.code for a in answers} == {"not_found"}


# -- the property: answers in any order and batches, some never -------------------------


def _answer(queue: Path, request_id: str, as_error: bool) -> None:
    responses = queue / "responses"
    if as_error:
        write_atomic(responses / f"{request_id}.error.json", '{"error": "bad", "status": "failed"}')
    else:
        body = DeploymentResponse(
            request_id=request_id, status="running", agent_id=request_id, message="ok"
        ).model_dump_json()
        write_atomic(responses / f"{request_id}.response.json", body)


async def _scenario(queue: Path, n: int, unanswered: set[int], seed: int) -> None:
    rng = random.Random(seed)
    client = AgentDeploymentClient(queue)
    results: dict[int, DeploymentResponse] = {}
    answered = [i for i in range(n) if i not in unanswered]
    rng.shuffle(answered)
    errors = {i for i in answered if rng.random() < 0.1}

    async def ask(i: int) -> None:
        request = DeploymentRequest(
            request_id=f"r{i}", parent_agent="prop", action="status_check", target_agent_id="x"
        )
        # The never-answered time out early, while the others still wait: each time-out
        # is a waiter leaving (maybe the one reading the watch) with others behind it.
        timeout = 0.3 if i in unanswered else 20
        results[i] = await client.submit(request, timeout=timeout)

    async def answer_all() -> None:
        pos = 0
        while pos < len(answered):
            batch = rng.randint(1, 64)
            for i in answered[pos : pos + batch]:
                _answer(queue, f"r{i}", i in errors)
            pos += batch
            for _ in range(rng.randint(0, 3)):  # let the waiters run, or not
                await anyio.sleep(0)

    answers_first = rng.random() < 0.5  # then some answers precede their question
    async with anyio.create_task_group() as tg:
        if answers_first:
            tg.start_soon(answer_all)
        for i in range(n):
            tg.start_soon(ask, i)
        if not answers_first:
            tg.start_soon(answer_all)
    client.close()
    for i in range(n):
        answer = results[i]
        if i in unanswered:
            assert (answer.message, answer.code) == ("Request timeout", "timeout"), i
        elif i in errors:
            assert answer.message == "Request processing failed", i
        else:
            assert (answer.status, answer.agent_id) == ("running", f"r{i}"), i


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_property_every_answer_reaches_its_waiter(
    backend: str, data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    n = data.draw(st.integers(1, 2000), label="waiters")
    unanswered = data.draw(st.sets(st.integers(0, n - 1), max_size=min(n, 30)), label="never")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    home = tmp_path_factory.mktemp("waits")
    with fake_coordinator(home) as queue:
        anyio.run(_scenario, queue, n, unanswered, seed, backend=backend)


# -- no coordinator: fail at once, create nothing ---------------------------------------


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_no_coordinator_fails_fast_and_creates_nothing(tmp_path: Path, backend: str) -> None:
    mistyped = tmp_path / "no" / "such" / "agent-queue"

    async def ask() -> DeploymentResponse:
        client = AgentDeploymentClient(mistyped)
        return await client.check_agent_status("a", timeout=30)

    t0 = time.monotonic()
    answer = anyio.run(ask, backend=backend)
    assert time.monotonic() - t0 < 1  # not the 30 s timeout
    assert (answer.status, answer.code) == ("failed", "no_coordinator")
    assert "no coordinator serves" in (answer.error or "")
    assert os.listdir(tmp_path) == []  # no stray directories


def test_the_home_instead_of_its_queue_is_named_in_the_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with serve_process(home):
        sync = SyncAgentDeploymentClient(home)  # the home, not home/agent-queue
        answer = sync.check_agent_status("a", timeout=30)
        sync.close()
    assert answer.code == "no_coordinator"
    assert f"its queue is {home / 'agent-queue'}" in (answer.error or "")


def test_a_stopped_coordinator_is_seen_by_the_probe(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with serve_process(home):
        assert coordinator_serves(home)
    assert not coordinator_serves(home)  # the lock died with it
    with SyncAgentDeploymentClient(home / "agent-queue") as sync:
        answer = sync.check_agent_status("a")
    assert answer.code == "no_coordinator"


async def _embedded_holds_the_lock(home: Path) -> None:
    async with coordinator(home):
        assert coordinator_serves(home)
        async with AgentDeploymentClient(home / "agent-queue") as client:
            assert (await client.check_agent_status("a")).code == "not_found"
    assert not coordinator_serves(home)


def test_an_embedded_coordinator_holds_the_home_lock(tmp_path: Path) -> None:
    trio.run(_embedded_holds_the_lock, tmp_path / "home")


def test_timeout_with_a_silent_coordinator_is_a_timeout(tmp_path: Path) -> None:
    with fake_coordinator(tmp_path) as queue, SyncAgentDeploymentClient(queue) as sync:
        answer = sync.check_agent_status("a", timeout=0.2)
    assert (answer.status, answer.message, answer.code) == ("failed", "Request timeout", "timeout")
    assert "within 0.2 seconds" in (answer.error or "")


# -- the sync client: one event loop for all its calls ----------------------------------


def _client_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ziggie-sync-client"]


def test_sync_client_keeps_one_loop_and_closes_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with serve_process(home):
        before = set(_client_threads())
        with SyncAgentDeploymentClient(home / "agent-queue") as sync:
            assert sync.check_agent_status("a").code == "not_found"
            (loop,) = set(_client_threads()) - before  # one thread: the client's loop
            waits = sync.client._waits
            for _ in range(5):
                assert sync.list_agents().agents == []
            assert set(_client_threads()) - before == {loop}
            assert sync.client._waits is waits  # one watch, kept across calls
            # many threads at once share the same loop and watch
            results: list[str] = []

            def ask(i: int) -> None:
                results.append(sync.check_agent_status(f"t{i}").agent_id)

            threads = [threading.Thread(target=ask, args=(i,)) for i in range(20)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sorted(results) == sorted(f"t{i}" for i in range(20))
        assert set(_client_threads()) == before  # closed with the block
        assert sync.client._waits is None


class _ScriptedWatcher:
    """A watch whose reports the test decides: names, or RESCAN (events were lost)."""

    def __init__(self) -> None:
        self.send, self.receive = anyio.create_memory_object_stream[list[str]](100)

    async def wait(self) -> list[str]:
        return await self.receive.receive()

    def close(self) -> None:
        self.send.close()
        self.receive.close()


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_lost_inotify_events_wake_every_waiter(tmp_path: Path, backend: str) -> None:
    """On a queue overflow nobody knows whose answer came: every waiter looks for itself."""

    async def main() -> None:
        with fake_coordinator(tmp_path) as queue:
            client = AgentDeploymentClient(queue)
            watcher = _ScriptedWatcher()
            client._waits = AnswerWaits(watcher)
            results: dict[int, DeploymentResponse] = {}

            async def ask(i: int) -> None:
                request = DeploymentRequest(
                    request_id=f"q{i}", parent_agent="t", action="status_check", target_agent_id="x"
                )
                results[i] = await client.submit(request, timeout=20)

            async with anyio.create_task_group() as tg:
                for i in range(50):
                    tg.start_soon(ask, i)
                await wait_all_requests(queue, 50)
                for i in range(50):  # answers whose events the watch lost
                    _answer(queue, f"q{i}", as_error=False)
                await watcher.send.send(["*"])
            assert sorted(results) == list(range(50))
            assert {r.status for r in results.values()} == {"running"}
            watcher.close()

    anyio.run(main, backend=backend)


async def wait_all_requests(queue: Path, n: int) -> None:
    requests = queue / "requests"
    await until_files([requests], lambda: len(list(requests.glob("*.request.json"))) == n)
