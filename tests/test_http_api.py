"""The REST API (issue 12): a real server on 127.0.0.1, real sockets, real agents.

Runs on both anyio backends (Hypercorn under trio and under asyncio).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
from pathlib import Path
from typing import Any

import anyio
import httpx
import psutil
import pytest

from supervisor import DeploymentResponse, HttpAgentClient
from supervisor.coordinator import Settings, check_http
from supervisor.coordinator._http import HttpRefused, parse_bind
from supervisor.protocol import AgentSpec

from .helpers import marked
from .helpers import real_clock_backend as anyio_backend  # noqa: F401
from .http_helpers import Api, api, served, spec
from .queue_helpers import await_answer, drop

pytestmark = pytest.mark.anyio


async def _until(predicate: Any, what: str, timeout: float = 30) -> None:
    # Only for waiting on another OS process's output (no event source to await).
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


def _log_lines(path: str | None) -> list[dict[str, Any]]:
    if not path or not os.path.exists(path):
        return []
    out = []
    for line in Path(path).read_text().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


# -- serving, files, binding ------------------------------------------------------------


async def test_serves_and_writes_http_json_and_token_privately(tmp_path: Path) -> None:
    async with api(tmp_path) as a:
        info = json.loads((tmp_path / "http.json").read_text())
        assert info["url"] == a.url
        assert a.url.startswith("http://127.0.0.1:")
        for name in ("http.json", "api-token"):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
        r = await a.client.get("/v1/health")
        assert r.status_code == 200
        assert r.json()["status"] == "ok"
        port = int(a.url.rsplit(":", 1)[1])
        listening = [
            c
            for c in psutil.Process().net_connections("inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port
        ]
        assert [c.laddr.ip for c in listening] == ["127.0.0.1"]  # nothing beyond loopback
    assert not (tmp_path / "http.json").exists()  # removed on a clean stop


async def test_the_token_can_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZIGGIE_API_TOKEN", "a-token-given-by-the-operator-123")
    async with api(tmp_path) as a:
        assert a.token == "a-token-given-by-the-operator-123"  # the file holds it, 0600
        r = await a.client.get(
            "/v1/tree", headers={"Authorization": "Bearer a-token-given-by-the-operator-123"}
        )
        assert r.status_code == 200


def test_a_public_address_needs_the_explicit_flag() -> None:
    with pytest.raises(HttpRefused, match="--http-public"):
        parse_bind("0.0.0.0:8080")
    assert parse_bind("0.0.0.0:8080", public=True) == ("0.0.0.0", 8080)
    assert parse_bind("localhost:0") == ("127.0.0.1", 0)
    assert parse_bind("[::1]:0") == ("::1", 0)
    for bad in ("nonsense", "127.0.0.1:99999", "example.com:80"):
        with pytest.raises(HttpRefused):
            parse_bind(bad)
    with pytest.raises(ValueError, match="http-public"):
        check_http(Settings(home=Path("/nonexistent"), http="10.1.2.3:80"))


def test_cli_refuses_a_public_bind_without_the_flag(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "supervisor.cli",
            "serve",
            "--home",
            str(tmp_path),
            "--http",
            "0.0.0.0:0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--http-public" in result.stderr
    assert not (tmp_path / "http.json").exists()


# -- auth ------------------------------------------------------------------------------

ROUTES = [
    ("GET", "/v1/agents"),
    ("POST", "/v1/agents"),
    ("GET", "/v1/agents/x"),
    ("DELETE", "/v1/agents/x"),
    ("POST", "/v1/agents/x/restart"),
    ("GET", "/v1/agents/x/logs"),
    ("POST", "/v1/requests"),
    ("GET", "/v1/tree"),
    ("GET", "/v1/events"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
]


async def test_every_route_but_health_needs_the_token(tmp_path: Path) -> None:
    async with api(tmp_path) as a, httpx.AsyncClient(base_url=a.url) as bare:
        for method, path in ROUTES:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": a.token}):
                r = await bare.request(method, path, headers=headers)
                assert r.status_code == 401, (method, path, headers)
                assert r.headers["content-type"] == "application/problem+json"
                assert r.headers["www-authenticate"].startswith("Bearer")
        assert (await bare.get("/v1/health")).status_code == 200


async def test_a_foreign_host_header_is_misdirected(tmp_path: Path) -> None:
    async with api(tmp_path) as a:
        for host in ("evil.example", "attacker.test:80", "127.0.0.2"):
            r = await a.client.get("/v1/tree", headers={"Host": host})
            assert r.status_code == 421, host
        port = a.url.rsplit(":", 1)[1]
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost"):
            r = await a.client.get("/v1/tree", headers={"Host": host})
            assert r.status_code == 200, host


# -- routes ----------------------------------------------------------------------------


async def test_deploy_status_logs_list_tree_terminate(tmp_path: Path) -> None:
    async with api(tmp_path) as a:
        r = await a.client.post("/v1/agents", json={"agent_spec": spec("one", tmp_path)})
        assert r.status_code == 201, r.text
        deployed = DeploymentResponse.model_validate(r.json())
        assert deployed.status == "deployed"
        assert deployed.pid
        r = await a.client.get("/v1/agents/one")
        assert r.status_code == 200
        assert r.json()["agent"]["state"] == "running"
        log = r.json()["output_log"]
        await _until(lambda: len(_log_lines(log)) >= 3, "log lines")
        r = await a.client.get("/v1/agents/one/logs", params={"tail": 2})
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        assert len(r.text.splitlines()) == 2
        r = await a.client.get("/v1/agents")
        assert [x["agent_id"] for x in r.json()["agents"]] == ["one"]
        r = await a.client.get("/v1/tree")
        (wrapper,) = r.json()["tree"]["children"]  # each agent has its own supervisor
        assert [n["id"] for n in wrapper["children"]] == ["one"]
        r = await a.client.delete("/v1/agents/one")
        assert r.status_code == 200
        assert r.json()["status"] == "terminated"
        assert not psutil.pid_exists(deployed.pid) or psutil.Process(deployed.pid).status() == (
            psutil.STATUS_ZOMBIE
        )
        assert marked(["one"]) == {}  # returns once verified empty
        r = await a.client.delete("/v1/agents/one")
        assert r.status_code == 409
        assert r.json()["code"] == "not_running"
        r = await a.client.post("/v1/agents/one/restart")
        assert r.status_code == 200
        assert r.json()["status"] == "deployed"
        r = await a.client.get("/v1/agents/nobody")
        assert r.status_code == 404
        assert r.json()["code"] == "not_found"


async def test_refusals_are_409_and_422_with_the_failed_response(tmp_path: Path) -> None:
    async with api(tmp_path) as a:
        assert (
            await a.client.post("/v1/agents", json={"agent_spec": spec("a", tmp_path)})
        ).status_code == 201
        r = await a.client.post("/v1/agents", json={"agent_spec": spec("a", tmp_path)})
        assert r.status_code == 409
        assert r.json()["status"] == "failed"
        assert r.json()["code"] == "conflict"
        r = await a.client.post("/v1/agents", json={"agent_spec": spec("b", tmp_path, level="L2")})
        assert r.status_code == 422
        assert r.json()["code"] == "refused"
        assert "level" in r.json()["error"]


async def test_requests_are_exactly_once_across_transports(tmp_path: Path) -> None:
    async with api(tmp_path) as a:
        request = {
            "request_id": "shared-1",
            "parent_agent": "Ziggie",
            "action": "deploy_agent",
            "agent_spec": spec("q1", tmp_path),
        }
        drop(tmp_path, "shared-1.request.json", request)
        kind, by_file = await await_answer(tmp_path, "shared-1")
        assert kind == "response"
        assert by_file["status"] == "deployed"
        r = await a.client.post("/v1/requests", json=request)
        assert r.status_code == 200
        assert r.json() == by_file  # the recorded answer, not a second deploy
        assert len(marked(["q1"])["q1"]) == 1
        again = {**request, "request_id": "shared-2", "agent_spec": spec("q2", tmp_path)}
        first = (await a.client.post("/v1/requests", json=again)).json()
        second = (await a.client.post("/v1/requests", json=again)).json()
        assert first == second
        assert first["status"] == "deployed"


async def test_bad_input_gets_problem_json_naming_the_field(tmp_path: Path) -> None:
    async with api(tmp_path, http_max_body=64 * 1024) as a:
        r = await a.client.post("/v1/agents", content=b"{not json")
        assert r.status_code == 400
        assert r.headers["content-type"] == "application/problem+json"
        body = {"agent_spec": {**spec("t", tmp_path), "max_iterations": "many"}}
        r = await a.client.post("/v1/agents", json=body)
        assert r.status_code == 422
        assert r.json()["field"] == "agent_spec.max_iterations"
        r = await a.client.post("/v1/requests", json={"action": "fly"})
        assert r.status_code == 422
        assert r.json()["field"]
        # 10 MiB, declared up front, and the same sent chunked (no length): both 413.
        assert await _raw_post(a, declared=True) == 413
        assert await _raw_post(a, declared=False) == 413
        for path in ("/v1/agents/..%2F..%2Fetc", "/v1/agents/%2e%2e", "/v1/agents/a%00b"):
            r = await a.client.get(path)
            assert r.status_code in (404, 422), path
            assert r.headers["content-type"] == "application/problem+json"
        r = await a.client.get("/v1/nowhere")
        assert r.status_code == 404
        assert r.json()["title"] == "Not found"
        r = await a.client.put("/v1/agents")
        assert r.status_code == 405
        assert r.headers["content-type"] == "application/problem+json"
        r = await a.client.get("/v1/agents/x/logs", params={"tail": "lots"})
        assert r.status_code == 422
        assert r.json()["field"] == "tail"
    assert not any((tmp_path / "agent-logs").iterdir())  # nothing was deployed


async def _raw_post(a: Api, *, declared: bool) -> int:
    """POST 10 MiB over a plain socket; the status line's code (the server may cut us off)."""
    host, port = a.url.removeprefix("http://").rsplit(":", 1)
    size = 10 * 2**20
    head = f"POST /v1/agents HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {a.token}\r\n"
    head += "Content-Type: application/json\r\n"
    head += f"Content-Length: {size}\r\n\r\n" if declared else "Transfer-Encoding: chunked\r\n\r\n"

    def exchange() -> int:
        with socket.create_connection((host, int(port)), timeout=20) as sock:
            sock.sendall(head.encode())
            chunk = b"a" * 65536
            try:
                for _ in range(size // len(chunk)):
                    sock.sendall(chunk if declared else b"10000\r\n" + chunk + b"\r\n")
                if not declared:
                    sock.sendall(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered and closed before the body ended: fine
            data = b""
            while b"\r\n" not in data:
                more = sock.recv(4096)
                if not more:
                    break
                data += more
            return int(data.split(b" ", 2)[1])

    return await anyio.to_thread.run_sync(exchange)


async def test_a_slow_loris_client_is_cut_off(tmp_path: Path) -> None:
    async with api(tmp_path, http_read_timeout=1) as a:
        host, port = a.url.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
            sock.settimeout(10)
            with anyio.fail_after(10):
                data = await anyio.to_thread.run_sync(sock.recv, 1024)
            assert data == b"" or data.startswith(b"HTTP/1.1 408")  # closed by the server
        assert (await a.client.get("/v1/health")).status_code == 200


async def test_metrics_are_prometheus_text(tmp_path: Path) -> None:
    async with api(tmp_path) as a:
        await a.client.post("/v1/agents", json={"agent_spec": spec("m1", tmp_path)})
        r = await a.client.get("/metrics")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        assert 'ziggie_agents{level="L1",state="running"} 1.0' in r.text
        assert "ziggie_queue_depth 0.0" in r.text
        assert 'ziggie_http_request_seconds_count{method="POST",route="/v1/agents"} 1.0' in r.text


# -- events ----------------------------------------------------------------------------


async def test_sse_streams_events_and_resumes_without_gaps(tmp_path: Path) -> None:
    async with api(tmp_path) as a:
        client = HttpAgentClient(a.url, a.token)
        seen: list[dict[str, Any]] = []
        async with client:
            await client.deploy_agent(AgentSpec.model_validate(spec("e1", tmp_path)))
            with anyio.fail_after(30):
                async with client.events(last_event_id=0) as events:
                    async for event in events:
                        seen.append(event)
                        if event["event"] == "started" and event.get("agent_id") == "e1":
                            break
            ids = [e["id"] for e in seen]
            assert ids == list(range(1, len(ids) + 1))  # from the first, no gap
            await client.terminate_agent("e1")
            resumed: list[dict[str, Any]] = []
            with anyio.fail_after(30):
                async with client.events(last_event_id=ids[-1]) as events:
                    async for event in events:
                        resumed.append(event)
                        if event["event"] == "terminated" and event.get("agent_id") == "e1":
                            break
            assert resumed[0]["id"] == ids[-1] + 1  # no duplicate, no gap
            assert [e["id"] for e in resumed] == list(range(ids[-1] + 1, resumed[-1]["id"] + 1))


async def test_streams_end_cleanly_and_promptly_at_shutdown(tmp_path: Path) -> None:
    lines: list[str] = []
    ended = anyio.Event()
    opened = anyio.Event()
    outcome: list[BaseException | None] = []

    async def listen(url: str, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        try:
            async with (
                httpx.AsyncClient(base_url=url, headers=headers) as client,
                client.stream("GET", "/v1/events") as response,
            ):
                async for line in response.aiter_lines():
                    lines.append(line)
                    opened.set()
            outcome.append(None)  # the server ended the stream properly
        except Exception as exc:  # e.g. RemoteProtocolError: cut, not ended
            outcome.append(exc)
        finally:
            ended.set()

    async with anyio.create_task_group() as tg:
        with anyio.fail_after(10):
            async with api(tmp_path) as a:
                tg.start_soon(listen, a.url, a.token)
                await opened.wait()
        with anyio.fail_after(5):
            await ended.wait()
    # Ended by the server, not cut: Hypercorn cuts streams still open after its graceful
    # wait (clients then see RemoteProtocolError); ours are closed before it waits.
    assert outcome == [None]
    assert lines[0].startswith("retry:")


def test_sse_resumes_across_a_coordinator_kill_9(tmp_path: Path) -> None:
    import anyio as _anyio

    def collect(url: str, token: str, last: int | None, until: str) -> list[dict[str, Any]]:
        async def run() -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            async with HttpAgentClient(url, token) as client:
                with _anyio.fail_after(30):
                    async with client.events(last_event_id=last) as events:
                        async for event in events:
                            out.append(event)
                            if event["event"] == until:
                                break
            return out

        return _anyio.run(run)

    with served(tmp_path) as (proc, url, token):
        before = collect(url, token, 0, "coordinator_ready")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with served(tmp_path) as (_proc, url, token):
        after = collect(url, token, before[-1]["id"], "coordinator_ready")
    assert after[0]["id"] == before[-1]["id"] + 1
    ids = [e["id"] for e in before + after]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # no gap, no duplicate


# -- agent tokens, from inside real agent processes ------------------------------------


async def test_agent_tokens_reach_their_subtree_and_nothing_else(tmp_path: Path) -> None:
    async with api(tmp_path) as a:
        l3 = spec("l3", tmp_path, level="L3", env={"DEMO_TERMINATE": json.dumps(["l2b", "l3"])})
        l2a = spec("l2a", tmp_path, level="L2", env={"DEMO_CHILDREN": json.dumps([l3])})
        l2b = spec("l2b", tmp_path, level="L2")
        l1 = spec("l1", tmp_path, env={"DEMO_CHILDREN": json.dumps([l2a, l2b])})
        r = await a.client.post("/v1/agents", json={"agent_spec": l1})
        assert r.status_code == 201, r.text

        def l3_log() -> list[dict[str, Any]]:
            row = a.coord.service.journal.agent("l3")
            return _log_lines(row["log"]) if row else []

        await _until(lambda: any(x["event"] == "terminate_tried" for x in l3_log()), "l3 tries")
        deployed = _log_lines(a.coord.service.journal.agent("l2a")["log"])  # type: ignore[index]
        via = [x for x in deployed if x["event"] == "child_deployed"]
        assert via == [{**via[0], "child": "l3", "status": "deployed", "via": "http", "code": None}]
        tried = {x["target"]: x for x in l3_log() if x["event"] == "terminate_tried"}
        assert tried["l2b"]["code"] == "forbidden"  # its uncle: not its subtree
        assert (await a.client.get("/v1/agents/l2b")).json()["agent"]["state"] == "running"
        # Itself: allowed (it cannot log the answer: it is gone before the answer comes).
        await _until(
            lambda: a.coord.service.journal.agent("l3")["state"] == "terminated",  # type: ignore[index]
            "l3 terminated by its own token",
        )
        # An agent token is no operator token.
        env_token = _token_of("l2a")
        async with httpx.AsyncClient(base_url=a.url) as c:
            h = {"Authorization": f"Bearer {env_token}"}
            assert (await c.get("/v1/agents", headers=h)).status_code == 403
            assert (await c.get("/v1/tree", headers=h)).status_code == 403
            assert (await c.get("/v1/agents/l2b", headers=h)).status_code == 403
            assert (await c.get("/v1/agents/l2a", headers=h)).status_code == 200
            await a.client.delete("/v1/agents/l2a")
            # The token dies with the agent.
            assert (await c.get("/v1/agents/l2a", headers=h)).status_code == 403


def _token_of(agent_id: str) -> str:
    for pid in marked([agent_id]).get(agent_id, []):
        try:
            env = psutil.Process(pid).environ()
        except psutil.Error:
            continue
        if "ZIGGIE_AGENT_TOKEN" in env:
            return env["ZIGGIE_AGENT_TOKEN"]
    raise AssertionError(f"no token in {agent_id}'s environment")


# -- the Python client -----------------------------------------------------------------


async def test_http_client_has_the_seed_surface(tmp_path: Path) -> None:
    async with api(tmp_path) as a, HttpAgentClient(a.url, a.token) as client:
        r = await client.deploy_agent(AgentSpec.model_validate(spec("c1", tmp_path)))
        assert r.status == "deployed"
        assert r.pid
        assert (await client.check_agent_status("c1")).status == "running"
        assert (await client.list_agents()).agents
        refused = await client.deploy_agent(AgentSpec.model_validate(spec("c1", tmp_path)))
        assert refused.status == "failed"
        assert refused.code == "conflict"
        assert (await client.terminate_agent("c1")).status == "terminated"
        missing = await client.check_agent_status("nope")
        assert missing.status == "failed"
        assert missing.code == "not_found"
    async with HttpAgentClient("http://127.0.0.1:9", "x") as nowhere:
        r = await nowhere.check_agent_status("c1", timeout=5)
        assert r.status == "failed"
        assert r.code == "no_coordinator"


def _cli(*args: str, env: dict[str, str] | None = None) -> Any:
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "supervisor.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_the_cli_drives_a_coordinator_over_http(tmp_path: Path) -> None:
    spec_file = tmp_path / "agent.json"
    spec_file.write_text(json.dumps(spec("remote-1", tmp_path)))
    with served(tmp_path) as (_proc, url, token):
        elsewhere = tmp_path / "not-the-home"  # over HTTP the home is not needed
        deployed = _cli(
            "--url", url, "--token", token, "deploy", str(spec_file), "--home", str(elsewhere)
        )
        assert deployed.returncode == 0, deployed.stderr
        status = _cli(
            "status",
            "remote-1",
            "--json",
            "--home",
            str(elsewhere),
            env={"ZIGGIE_URL": url, "ZIGGIE_API_TOKEN": token},
        )
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["agent"]["state"] == "running"
        wrong = _cli("--url", url, "--token", "nope-nope-nope-nope", "status", "remote-1")
        assert wrong.returncode == 1
        assert "401" in wrong.stdout + wrong.stderr
        missing = _cli("--url", url, "--token", token, "status", "nobody")
        assert missing.returncode == 4
        link = _cli("dashboard", "--home", str(tmp_path))
        assert link.returncode == 0
        assert link.stdout.strip() == f"{url}/#token={token}"
        gone = _cli("--url", url, "--token", token, "terminate", "remote-1")
        assert gone.returncode == 0, gone.stderr
    assert _cli("dashboard", "--home", str(tmp_path)).returncode == 3  # no API serves it
