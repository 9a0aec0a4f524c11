"""The REST API under hostile callers: bounded connections, errors as problems, the
machine's own addresses, and an API that is up before recovery starts agents.

A real server on 127.0.0.1 (port 0), both anyio backends, real agents where it matters.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import psutil
import pytest

from supervisor import AgentSpec, SyncAgentDeploymentClient
from supervisor.coordinator import Settings
from supervisor.coordinator._http._server import agent_url, allowed_hosts

from .helpers import marked
from .helpers import real_clock_backend as anyio_backend  # noqa: F401
from .http_helpers import api, served, spec
from .queue_helpers import agent_spec, reap_descendants, serve_process
from .waiting import until_gone_sync

pytestmark = pytest.mark.anyio


# -- every error is application/problem+json -------------------------------------------


async def test_every_refusal_is_a_problem_that_is_also_the_failed_answer(tmp_path: Path) -> None:
    """404, 409 and 422 answers are RFC 9457 problems (``title``, ``detail``) whose members
    are also the seed's failed ``DeploymentResponse`` (``status``, ``code``, ``error``)."""
    async with api(tmp_path) as a:
        assert (
            await a.client.post("/v1/agents", json={"agent_spec": spec("a", tmp_path)})
        ).status_code == 201
        refusals = [
            await a.client.get("/v1/agents/nobody"),
            await a.client.delete("/v1/agents/nobody"),
            await a.client.post("/v1/agents/nobody/restart"),
            await a.client.post("/v1/agents", json={"agent_spec": spec("a", tmp_path)}),
            await a.client.post("/v1/agents", json={"agent_spec": spec("b", tmp_path, level="L2")}),
        ]
        assert [r.status_code for r in refusals] == [404, 404, 404, 409, 422]
        for r in refusals:
            assert r.headers["content-type"] == "application/problem+json", r.request.url
            body = r.json()
            assert body["title"]
            assert body["detail"] == body["error"]
            assert body["status"] == "failed"  # the seed's field (a number is only advisory)
            assert body["code"] in ("not_found", "conflict", "refused")
        await a.client.delete("/v1/agents/a")


# -- connections are capped -------------------------------------------------------------


def _exchange(sock: socket.socket, request: bytes) -> bytes:
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


async def test_open_connections_are_capped(tmp_path: Path) -> None:
    """With ``http_max_connections = 3`` three keep-alive connections are served; a fourth
    gets a 503 problem and is closed at once, without a token and before any request. Once
    they close, new connections are served again."""
    async with api(tmp_path, http_max_connections=3) as a:
        host, port = a.url.removeprefix("http://").rsplit(":", 1)
        held = [socket.create_connection((host, int(port))) for _ in range(3)]
        try:
            health = f"GET /v1/health HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
            for sock in held:  # each answered, and kept open (keep-alive)
                answer = await anyio.to_thread.run_sync(_exchange, sock, health)
                assert answer.startswith(b"HTTP/1.1 200")
            transport = a.coord.http
            assert transport is not None
            assert transport.connections.open == 3
            with socket.create_connection((host, int(port))) as extra:
                refused = await anyio.to_thread.run_sync(lambda: extra.recv(65536))
                rest = await anyio.to_thread.run_sync(lambda: extra.recv(65536))
            assert refused.startswith(b"HTTP/1.1 503")
            assert b"application/problem+json" in refused
            assert rest == b""  # closed by the server
            assert transport.connections.refused == 1
        finally:
            for sock in held:
                sock.close()
        with anyio.fail_after(10):  # the server notices the closes on its own time
            while transport.connections.open:
                await anyio.sleep(0.01)
        assert (await a.client.get("/v1/health")).status_code == 200


# -- a wildcard bind answers to the machine's own addresses -------------------------------


def _primary_address() -> str:
    """The address this machine uses to reach the world (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("198.51.100.1", 9))  # TEST-NET-2: routed, never answered
        except OSError:
            pytest.skip("no IPv4 route on this machine")
        return str(probe.getsockname()[0])


def test_a_wildcard_bind_answers_to_the_machines_own_addresses() -> None:
    address = _primary_address()
    hosts = allowed_hosts("0.0.0.0", 8420, ["ziggie.example"])
    for host in (address, f"{address}:8420", "127.0.0.1:8420", "localhost:8420"):
        assert host in hosts, host
    assert "ziggie.example:8420" in hosts
    assert "evil.example:8420" not in hosts
    assert "203.0.113.9:8420" not in hosts  # TEST-NET-3: no machine's own
    # A specific address answers to itself (and the names), not to the others.
    assert address not in allowed_hosts("127.0.0.1", 8420, [])


def test_agents_never_get_a_wildcard_url() -> None:
    assert agent_url("0.0.0.0", 8420, []) == "http://127.0.0.1:8420"
    assert agent_url("::", 8420, []) == "http://[::1]:8420"
    assert agent_url("0.0.0.0", 8420, ["ziggie.example"]) == "http://ziggie.example:8420"
    assert agent_url("127.0.0.1", 8420, ["ziggie.example"]) == "http://127.0.0.1:8420"


def test_http_hosts_are_host_names() -> None:
    names = ["ziggie.example", "10.0.0.5", "fd00::2"]
    assert Settings(http_hosts=names).http_hosts == names
    with pytest.raises(ValueError, match="http_hosts"):
        Settings(http_hosts=["evil.example/path"])


# -- the API is up before recovery starts agents ------------------------------------------


def _kill9(proc: subprocess.Popen[bytes]) -> None:
    descendants = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reap_descendants(descendants)


def test_recovered_agents_get_the_api_and_a_stale_http_json_goes(tmp_path: Path) -> None:
    """A coordinator serving no API removes a ``kill -9``'d one's ``http.json``; after
    another ``kill -9``, recovery restarts a permanent agent with the new API's URL and a
    working token of its own (the API is up before recovery starts anything)."""
    home = tmp_path / "home"
    keeper = AgentSpec.model_validate(
        agent_spec(
            "keeper",
            tmp_path,
            restart="permanent",
            command=[sys.executable, "-c", "import time; time.sleep(300)"],
        )
    )
    with served(home) as (first, _url, _token):
        with SyncAgentDeploymentClient(home / "agent-queue") as client:
            assert client.deploy_agent(keeper).status == "deployed"
        _kill9(first)
    _until_agent_gone()
    assert json.loads((home / "http.json").read_text())["pid"] == first.pid  # stale

    with serve_process(home) as second:  # no API: the dead one's file must not linger
        assert not (home / "http.json").exists()
        _kill9(second)
    _until_agent_gone()

    with served(home) as (third, url, _token):
        pids = marked(["keeper"])["keeper"]
        leader = next(p for p in pids if psutil.Process(p).ppid() == third.pid)
        env = psutil.Process(leader).environ()
        assert env["ZIGGIE_URL"] == url
        own = httpx.get(
            f"{url}/v1/agents/keeper",
            headers={"Authorization": f"Bearer {env['ZIGGIE_AGENT_TOKEN']}"},
            timeout=30,
        )
        assert own.status_code == 200
        assert own.json()["agent"]["state"] == "running"


def _until_agent_gone() -> None:
    until_gone_sync([p for pids in marked(["keeper"]).values() for p in pids], 20)
