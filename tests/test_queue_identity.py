"""The file queue knows its caller: an agent's own queue directory is its identity.

Real agent processes write forged requests into their own queue (``tests/agents/forge.py``)
and are held to exactly what their HTTP token allows: deploy under themselves or their
descendants, act on their own subtree, nothing of the operator's. Everything in an agent's
queue is hostile: FIFOs, symlinks, planted temp names, floods of large files.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any, get_args

import psutil
import pytest

from supervisor import AgentDeploymentClient, AgentSpec, DeploymentRequest
from supervisor.coordinator import OPERATOR, Caller, Journal, authorize
from supervisor.coordinator._callers import ACTIONS
from supervisor.protocol import Action

from .helpers import marked
from .helpers import real_clock_backend as anyio_backend  # noqa: F401
from .http_helpers import api
from .http_helpers import spec as http_spec
from .queue_helpers import (
    agent_spec,
    answer_of,
    await_answer,
    coordinator,
    drop,
    serve_process,
    status_request,
)
from .waiting import event_waits, until_files, until_files_sync, until_text

pytestmark = pytest.mark.anyio

FORGE = Path(__file__).parent / "agents" / "forge.py"


def request(request_id: str, action: str, parent: str = "mallory", **fields: Any) -> dict[str, Any]:
    return {"request_id": request_id, "parent_agent": parent, "action": action, **fields}


def child(agent_id: str, work: Path, level: str = "L3", **extra: Any) -> dict[str, Any]:
    return agent_spec(agent_id, work, level=level, **extra)


def trusted(agent_id: str, work: Path, **extra: Any) -> dict[str, Any]:
    """A spec that may read the test agents' scripts and use *work* (they are confined)."""
    data = agent_spec(agent_id, work, **extra)
    data["context"]["permissions"].update(
        read=[f"{FORGE.parent}/**", f"{work}/**"], write=[f"{work}/**"]
    )
    return data


def _lines(out: Path) -> list[dict[str, Any]]:
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines() if line.endswith("}")]


async def hostile_tree(
    home: Path, work: Path, plan: list[dict[str, Any]]
) -> tuple[AgentDeploymentClient, dict[str, dict[str, Any]]]:
    """``boss`` (L1) over ``sibling`` and ``mallory`` (L2); mallory runs *plan*.

    Returns the operator's client and mallory's answers by request (file) id.
    """
    operator = AgentDeploymentClient(home / "agent-queue")
    boss = AgentSpec.model_validate(trusted("boss", work, timeout_seconds=120))
    assert (await operator.deploy_agent(boss)).status == "deployed"
    sibling = AgentSpec.model_validate(child("sibling", work, level="L2"))
    assert (await operator.deploy_agent(sibling, parent_agent="boss")).status == "deployed"
    plan_file, out = work / "plan.json", work / "out.jsonl"
    plan_file.write_text(json.dumps(plan))
    mallory = AgentSpec.model_validate(
        trusted(
            "mallory",
            work,
            level="L2",
            command=[sys.executable, str(FORGE), str(plan_file), str(out)],
        )
    )
    assert (await operator.deploy_agent(mallory, parent_agent="boss")).status == "deployed"
    await until_files([work], lambda: any(x.get("done") for x in _lines(out)), timeout=60)
    return operator, {x["id"]: x for x in _lines(out) if "id" in x}


def code(answers: dict[str, dict[str, Any]], file_id: str) -> str | None:
    found = answers[file_id]
    assert found["kind"] == "response", found
    result: str | None = found["answer"].get("code")
    return result


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


# -- deploy: only under itself or its descendants ------------------------------------


async def test_an_agent_deploys_only_under_itself(tmp_path: Path, work: Path) -> None:
    home = tmp_path / "home"
    squatter = child("squatter", work, level="L1", restart="permanent", timeout_seconds=3600)
    plan = [
        {
            "request": request(
                "under-sibling", "deploy_agent", "sibling", agent_spec=child("intruder", work)
            )
        },
        *(
            {"request": request(f"top-{name}", "deploy_agent", name, agent_spec=squatter)}
            for name in ("Ziggie", "api", "cli")
        ),
        {"request": request("own-child", "deploy_agent", agent_spec=child("kid", work))},
    ]
    async with coordinator(home) as (rt, coord):
        seen: list[dict[str, Any]] = []
        with rt.events.listen(lambda n, f: seen.append(f) if n == "request_received" else None):
            operator, answers = await hostile_tree(home, work, plan)
        assert code(answers, "under-sibling") == "forbidden", answers["under-sibling"]
        # An agent has no top level: "Ziggie" (what the seed's client sends) means under
        # itself, where an L1 is refused by the level rule; never a top-level agent.
        for top in ("top-Ziggie", "top-api", "top-cli"):
            assert code(answers, top) == "refused", answers[top]
            assert "level: a child of 'mallory'" in answers[top]["answer"]["error"]
        for never in ("intruder", "squatter"):
            assert coord.service.journal.agent(never) is None
        assert not marked(["intruder", "squatter"])
        assert answers["own-child"]["answer"]["status"] == "deployed"
        kid = coord.service.journal.agent("kid")
        assert kid is not None
        assert kid["parent_id"] == "mallory"
        # attributed to the queue it came from, not to what the request claims
        by_id = {f["request_id"]: f for f in seen}
        assert by_id["own-child"]["caller"] == "mallory"
        assert by_id["top-Ziggie"]["caller"] == "mallory"
        await operator.terminate_agent("boss")
        operator.close()


# -- status, terminate, restart: only within its subtree; list and prune: never -------


async def test_an_agent_acts_only_within_its_subtree(tmp_path: Path, work: Path) -> None:
    home = tmp_path / "home"
    plan = [
        {"request": request("own-child", "deploy_agent", agent_spec=child("kid", work))},
        {"request": request("status-self", "status_check", target_agent_id="mallory")},
        {"request": request("status-kid", "status_check", target_agent_id="kid")},
        {"request": request("status-parent", "status_check", target_agent_id="boss")},
        {"request": request("status-sibling", "status_check", target_agent_id="sibling")},
        {"request": request("terminate-sibling", "terminate_agent", target_agent_id="sibling")},
        {"request": request("restart-sibling", "restart_agent", target_agent_id="sibling")},
        {"request": request("terminate-boss", "terminate_agent", "Ziggie", target_agent_id="boss")},
        {"request": request("list", "list_agents", "Ziggie")},
        {"request": request("prune", "prune", "Ziggie")},
        {"request": request("terminate-kid", "terminate_agent", target_agent_id="kid")},
    ]
    async with coordinator(home) as (_, coord):
        operator, answers = await hostile_tree(home, work, plan)
        assert answers["status-self"]["answer"]["status"] == "running"
        assert answers["status-kid"]["answer"]["status"] == "running"
        assert answers["terminate-kid"]["answer"]["status"] == "terminated"
        for refused in (
            "status-parent",
            "status-sibling",
            "terminate-sibling",
            "restart-sibling",
            "terminate-boss",
            "list",
            "prune",
        ):
            assert code(answers, refused) == "forbidden", answers[refused]
            assert answers[refused]["answer"].get("agents") is None
        for alive in ("boss", "sibling"):
            detail = coord.service.agent_detail(alive)
            assert detail is not None
            assert detail["state"] == "running"
            assert detail["restarts"] == 0
        await operator.terminate_agent("boss")
        operator.close()


# -- a recorded answer is returned only to its own caller -----------------------------


async def test_a_recorded_answer_goes_only_to_its_caller(tmp_path: Path, work: Path) -> None:
    home = tmp_path / "home"
    async with coordinator(home):
        operator = AgentDeploymentClient(home / "agent-queue")
        nightly = DeploymentRequest(
            request_id="nightly-list", parent_agent="Ziggie", action="list_agents"
        )
        first = await operator.submit(nightly)
        assert first.status == "completed"
        plan = [
            {"request": request("nightly-list", "status_check", target_agent_id="mallory")},
            {"request": request("mine-1", "status_check", target_agent_id="mallory")},
        ]
        operator.close()
        operator, answers = await hostile_tree(home, work, plan)
        stolen = answers["nightly-list"]["answer"]
        assert stolen["code"] == "conflict", stolen
        assert stolen.get("agents") is None
        assert answers["mine-1"]["answer"]["status"] == "running"
        # The operator still gets its own answer again; a different request under the
        # same id is a conflict, even from the same caller.
        (home / "agent-queue" / "responses" / "nightly-list.response.json").unlink()
        again = await operator.submit(nightly)
        assert again.model_dump(exclude={"timestamp"}) == first.model_dump(exclude={"timestamp"})
        other = DeploymentRequest(
            request_id="nightly-list",
            parent_agent="Ziggie",
            action="status_check",
            target_agent_id="boss",
        )
        (home / "agent-queue" / "responses" / "nightly-list.response.json").unlink()
        assert (await operator.submit(other)).code == "conflict"
        await operator.terminate_agent("boss")
        operator.close()


# -- hostile files in an agent's queue --------------------------------------------------


async def test_fifos_symlinks_and_planted_temp_names_in_an_agents_queue(
    tmp_path: Path, work: Path
) -> None:
    home = tmp_path / "home"
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    outside = tmp_path / "outside.request.json"
    outside.write_text(json.dumps(request("link-1", "status_check", target_agent_id="mallory")))
    plan = [
        # The temp name a writer with predictable names would use: never followed.
        {"plant": f".ok-1.response.json.{os.getpid()}.tmp", "to": str(victim)},
        {"request": request("ok-1", "status_check", target_agent_id="mallory")},
        {"fifo": "fifo-1"},
        {"symlink": "link-1", "to": str(outside)},
        {"raw": "junk-1", "bytes": 100},
        {"request": request("ok-2", "status_check", target_agent_id="mallory")},
    ]
    async with coordinator(home):
        operator, answers = await hostile_tree(home, work, plan)
        assert answers["ok-1"]["answer"]["status"] == "running"
        assert answers["ok-1"]["regular"]
        assert victim.read_text() == "untouched"
        assert answers["fifo-1"]["kind"] == "error"
        assert "not a regular file" in answers["fifo-1"]["answer"]["error"]
        assert answers["link-1"]["kind"] == "error"
        assert "symlink" in answers["link-1"]["answer"]["error"]
        assert answers["junk-1"]["kind"] == "error"
        assert answers["ok-2"]["answer"]["status"] == "running"
        # Claimed requests left the agent's reach: its requests/ is empty, and nothing of
        # it went into the operator's queue.
        queue = home / "agents" / "mallory" / "agent-queue"
        assert os.listdir(queue / "requests") == []
        assert outside.exists()
        assert answer_of(home, "ok-1") is None
        archived = list((home / "agent-queue" / "archive").rglob("*.request.json"))
        assert {p.name for p in archived if "mallory" in p.parts} >= {
            "ok-1.request.json",
            "fifo-1.request.json",
            "link-1.request.json",
        }
        await operator.terminate_agent("boss")
        operator.close()


async def test_a_planted_symlink_at_a_temp_name_is_never_followed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    responses = home / "agent-queue" / "responses"
    async with coordinator(home):
        os.symlink(victim, responses / f".r1.response.json.{os.getpid()}.tmp")
        drop(home, "r1.request.json", status_request("r1"))
        kind, answer = await await_answer(home, "r1")
    assert kind == "response"
    assert answer["code"] == "not_found"
    assert victim.read_text() == "untouched"
    assert (responses / "r1.response.json").is_file()
    assert not (responses / "r1.response.json").is_symlink()


_SWAP_HOOK = """
import os, sys

_done = []


def _swap(event, args):
    # Just before the coordinator opens the claimed request, a FIFO takes its place:
    # the race an attacker wins now and then, won every time.
    if event != "open" or _done or not isinstance(args[0], str):
        return
    if args[0].endswith("/processing/swap.request.json"):
        _done.append(1)
        os.unlink(args[0])
        os.mkfifo(args[0])


sys.addaudithook(_swap)
"""


def test_a_fifo_swapped_in_after_the_check_never_blocks(tmp_path: Path) -> None:
    home = tmp_path / "home"
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(_SWAP_HOOK)
    env = {**os.environ, "PYTHONPATH": str(hooks)}
    responses = home / "agent-queue" / "responses"
    with serve_process(home, env=env):
        drop(home, "swap.request.json", status_request("swap"))
        until_files_sync([responses], lambda: answer_of(home, "swap") is not None, 20, "swap")
        found = answer_of(home, "swap")
        assert found is not None
        kind, answer = found
        assert kind == "error"
        assert "not a regular file" in answer["error"]
        drop(home, "after.request.json", status_request("after"))
        until_files_sync([responses], lambda: answer_of(home, "after") is not None, 20, "after")


# -- bounded work ---------------------------------------------------------------------


def _memory(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(value.split()[0]) * 1024
    return out


def test_requests_loaded_at_once_are_bounded(tmp_path: Path) -> None:
    """150 queued 1 MB deploy requests, waiting at start, never sit in memory all at once."""
    home = tmp_path / "home"
    count, size = 150, 1_000_000
    responses = home / "agent-queue" / "responses"
    with serve_process(home) as proc:  # the same coordinator's peak with nothing queued
        idle = _memory(proc.pid)["VmHWM"]
    for i in range(count):
        spec = agent_spec(f"big-{i}", tmp_path / "nowhere", task="x" * (size - 600))
        body = request(f"big-{i}", "deploy_agent", "Ziggie", agent_spec=spec)
        drop(home, f"big-{i}.request.json", body)
    with serve_process(home) as proc:
        until_files_sync([responses], lambda: len(os.listdir(responses)) >= count, 120, "answers")
        grown = _memory(proc.pid)["VmHWM"] - idle
    answers = [json.loads(p.read_text()) for p in responses.iterdir()]
    assert {a["code"] for a in answers} == {"refused"}  # no such working directory
    assert grown < 64 * 2**20, f"peak RSS grew by {grown / 2**20:.0f} MiB"


def _inotify_watches() -> dict[int, set[int]]:
    """Every inotify instance of this process: its fd -> the inodes it watches."""
    found: dict[int, set[int]] = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") != "anon_inode:inotify":
                continue
            with open(f"/proc/self/fdinfo/{name}") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        inodes = set()
        for line in lines:
            if line.startswith("inotify "):
                fields = dict(part.split(":", 1) for part in line.split()[1:])
                inodes.add(int(fields["ino"], 16))
        found[int(name)] = inodes
    return found


async def test_one_watcher_serves_every_agent_queue(tmp_path: Path, work: Path) -> None:
    home = tmp_path / "home"
    ids = [f"a{i}" for i in range(5)]
    async with coordinator(home), AgentDeploymentClient(home / "agent-queue") as c:
        for agent_id in ids:
            spec = AgentSpec.model_validate(agent_spec(agent_id, work))
            assert (await c.deploy_agent(spec)).status == "deployed"
        operator_queue = (home / "agent-queue" / "requests").stat().st_ino
        queues = {(home / "agents" / a / "agent-queue" / "requests").stat().st_ino for a in ids}
        watchers = [fd for fd, inodes in _inotify_watches().items() if operator_queue in inodes]
        assert len(watchers) == 1  # one inotify instance for every queue
        assert queues <= _inotify_watches()[watchers[0]]
        for agent_id in ids:
            assert (await c.terminate_agent(agent_id)).status == "terminated"
        # An agent that ended for good is no longer watched.
        assert not queues & set().union(*_inotify_watches().values())


async def test_the_polling_fallback_serves_agents_queues_too(tmp_path: Path, work: Path) -> None:
    home = tmp_path / "home"
    kid = child("kid", work, level="L2")
    boss = agent_spec("boss", work, env={"DEMO_PACE": "0.05", "DEMO_CHILDREN": json.dumps([kid])})
    async with coordinator(home, polling=True) as (rt, coord):
        with event_waits(rt) as waits:
            client = AgentDeploymentClient(home / "agent-queue")
            assert (await client.deploy_agent(AgentSpec.model_validate(boss))).status == "deployed"
            await waits.event("started", "kid")
        row = coord.service.journal.agent("kid")
        assert row is not None
        assert row["parent_id"] == "boss"
        await client.terminate_agent("boss")
        client.close()


async def test_a_restarted_agent_is_served_again(tmp_path: Path, work: Path) -> None:
    """Each incarnation deploys its child through its queue; the first then crashes."""
    home = tmp_path / "home"
    kid = child("kid", work, level="L2")
    env = {"DEMO_PACE": "0.05", "DEMO_CHILDREN": json.dumps([kid]), "DEMO_CRASH_AT": "2"}
    boss = agent_spec("boss", work, restart="transient", backoff_initial=0.0, env=env)
    deployed: list[dict[str, Any]] = []

    def seen(name: str, fields: dict[str, Any]) -> None:
        if name == "response_written" and fields.get("caller") == "boss":
            deployed.append(fields)

    async with coordinator(home) as (rt, _):
        with rt.events.listen(seen), event_waits(rt) as waits:
            client = AgentDeploymentClient(home / "agent-queue")
            assert (await client.deploy_agent(AgentSpec.model_validate(boss))).status == "deployed"
            await waits.until(lambda: len(deployed) >= 2, timeout=30)
        assert [d["status"] for d in deployed] == ["deployed", "deployed"]
        assert rt.info("boss").incarnation == 2
        await client.terminate_agent("boss")
        client.close()


async def test_the_queue_of_an_ended_agent_is_drained_then_left(tmp_path: Path, work: Path) -> None:
    home = tmp_path / "home"
    # It asks for its own status and ends without waiting for the answer.
    code_line = (
        "import json, os; q = os.environ['ZIGGIE_HOME'] + '/agent-queue/requests/';"
        " r = {'request_id': 'last-words', 'parent_agent': 'quick', 'action': 'status_check',"
        " 'target_agent_id': 'quick'};"
        " open(q + '.t', 'w').write(json.dumps(r));"
        " os.rename(q + '.t', q + 'last-words.request.json')"
    )
    queue = home / "agents" / "quick" / "agent-queue"
    async with coordinator(home) as (rt, _):
        with event_waits(rt) as waits:
            client = AgentDeploymentClient(home / "agent-queue")
            spec = agent_spec("quick", work, command=[sys.executable, "-c", code_line])
            assert (await client.deploy_agent(AgentSpec.model_validate(spec))).status == "deployed"
            await waits.event("exited", "quick")
            client.close()
        await until_files(
            [queue / "responses"],
            lambda: (queue / "responses" / "last-words.response.json").exists(),
        )
        # A stray writes after the end: nobody serves this queue now...
        late = json.dumps(request("too-late", "status_check", "quick", target_agent_id="quick"))
        (queue / "requests" / "too-late.request.json").write_text(late)
    # ...and the next coordinator answers it: refused, the agent is not running.
    async with coordinator(home):
        too_late = queue / "responses" / "too-late.response.json"
        await until_files([queue / "responses"], too_late.exists)
    answer = json.loads(too_late.read_text())
    assert answer["code"] == "forbidden"
    assert os.listdir(queue / "requests") == []


# -- one rule for every transport -------------------------------------------------------


def test_every_action_names_who_may_call_it() -> None:
    assert set(ACTIONS) == set(get_args(Action))
    assert ACTIONS["list_agents"].operator_only
    assert ACTIONS["prune"].operator_only


async def test_an_unknown_action_is_refused_never_listed(tmp_path: Path) -> None:
    async with coordinator(tmp_path / "home") as (_, coord):
        odd = DeploymentRequest.model_construct(
            request_id="odd-1", parent_agent="Ziggie", action="reboot"
        )
        answer = await coord.service.handle(odd, OPERATOR)
        assert answer.response is not None
        assert answer.response.code == "forbidden"
        assert answer.response.agents is None
        with pytest.raises(Exception, match="reboot"):
            authorize(Caller("a"), odd, parent_of=lambda _: None, live=lambda _: True)


async def test_prune_needs_the_operator_and_never_crashes(tmp_path: Path) -> None:
    async with api(tmp_path) as a:
        r = await a.client.post("/v1/agents", json={"agent_spec": http_spec("t1", tmp_path)})
        assert r.status_code == 201, r.text
        # Running its own program (past the exec shim) once it says so.
        await until_text(Path(r.json()["output_log"]), lambda text: "agent_started" in text)
        token = _token_of("t1")
        import httpx

        async with httpx.AsyncClient(base_url=a.url, timeout=30) as agent:
            h = {"Authorization": f"Bearer {token}"}
            prune = {"parent_agent": "t1", "action": "prune"}
            r = await agent.post("/v1/requests", json=prune, headers=h)
            assert r.status_code == 403, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            # the operator's own list, then the agent tries its request id
            listed = {"request_id": "nightly", "parent_agent": "Ziggie", "action": "list_agents"}
            assert (await a.client.post("/v1/requests", json=listed)).json()["agents"]
            mine = {
                "request_id": "nightly",
                "parent_agent": "t1",
                "action": "status_check",
                "target_agent_id": "t1",
            }
            r = await agent.post("/v1/requests", json=mine, headers=h)
            assert r.json()["code"] == "conflict", r.text
            assert r.json().get("agents") is None
        r = await a.client.post("/v1/requests", json={"parent_agent": "Ziggie", "action": "prune"})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "completed"
        await a.client.delete("/v1/agents/t1")


def _token_of(agent_id: str) -> str:
    for pid in marked([agent_id]).get(agent_id, []):
        try:
            env = psutil.Process(pid).environ()
        except psutil.Error:
            continue
        if "ZIGGIE_AGENT_TOKEN" in env:
            return env["ZIGGIE_AGENT_TOKEN"]
    raise AssertionError(f"no token in {agent_id}'s environment")


# -- the journal of an older coordinator -------------------------------------------------

_OLD_REQUESTS = """
CREATE TABLE requests (
    request_id  TEXT PRIMARY KEY,
    action      TEXT NOT NULL,
    received_at REAL NOT NULL,
    response    TEXT,
    answered_at REAL
);
"""


def test_an_older_journal_opens_and_its_answers_stay_the_operators(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(_OLD_REQUESTS)
    db.execute("INSERT INTO requests VALUES ('old-1', 'list_agents', 1.0, '{\"answer\": 1}', 2.0)")
    db.commit()
    db.close()
    journal = Journal(path)
    try:
        seen = journal.seen("old-1")
        assert seen is not None
        assert seen.caller == OPERATOR
        assert seen.response == '{"answer": 1}'
        journal.record_answered("new-1", "status_check", "{}", caller=Caller("a"), fingerprint="f")
        assert journal.seen("new-1").caller == Caller("a")  # type: ignore[union-attr]
    finally:
        journal.close()
    Journal(path).close()  # opened again: the migration is done once


def test_the_operator_is_no_agent() -> None:
    assert OPERATOR.operator
    assert not Caller("a").operator
    assert str(Caller("a")) == "a"
    assert str(OPERATOR) == "operator"
