"""HTTP API benchmark (issue 12): our routes against a bare Starlette route, same run.

- status round trip: ``GET /v1/agents/{id}`` of a running agent on ``ziggie serve --http``,
  against ``GET /`` of a bare Starlette app on Hypercorn (trio), same client (httpx).
- 1,000 concurrent status calls over 50 keep-alive connections.
- SSE: event emitted -> received by a client (p50), and 10,000 events/s to 10 subscribers.
"""

from __future__ import annotations

import contextlib
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx

from bench._table import table, verdict

ROUNDS = 1000
CONCURRENT = 1000
CONNECTIONS = 50
SUBSCRIBERS = 10
EVENTS = 10_000

BARE = textwrap.dedent(
    """
    import json, socket, sys, trio
    from functools import partial
    from hypercorn.config import Config
    from hypercorn.trio import serve
    from starlette.responses import Response
    from starlette.routing import Route, Router

    BODY = json.dumps({"status": "running", "agent_id": "x", "pid": 1}).encode()

    async def status(request):
        return Response(BODY, media_type="application/json")

    app = Router(routes=[Route("/v1/agents/{agent_id}", status)])
    sock = socket.socket(); sock.bind(("127.0.0.1", 0)); sock.listen(1024)
    config = Config(); config.bind = [f"fd://{sock.fileno()}"]
    config.errorlog = None; config.accesslog = None
    print(sock.getsockname()[1], flush=True)
    trio.run(partial(serve, app, config))
    """
)


@contextlib.contextmanager
def bare_server() -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-c", BARE], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield f"http://127.0.0.1:{proc.stdout.readline().strip()}"
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def ziggie_server(home: Path) -> Iterator[tuple[str, str]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "supervisor.cli",
            "serve",
            "--home",
            str(home),
            "--quiet",
            "--http",
            "127.0.0.1:0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None
            assert time.monotonic() < deadline
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                info = json.loads((home / "http.json").read_text())
                if info.get("pid") == proc.pid:
                    break
            time.sleep(0.02)
        yield info["url"], (home / "api-token").read_text().strip()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


async def _sequential(url: str, headers: dict[str, str]) -> float:
    async with httpx.AsyncClient(base_url=url, headers=headers) as client:
        for _ in range(50):  # warm up
            (await client.get("/v1/agents/bench")).raise_for_status()
        times = []
        for _ in range(ROUNDS):
            t0 = time.perf_counter()
            (await client.get("/v1/agents/bench")).raise_for_status()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


async def _raw_call(stream: Any, request: bytes, buffer: bytearray) -> int:
    """One keep-alive request on a raw connection; its status code."""
    await stream.send(request)
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            head = bytes(buffer[:end]).decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            if len(buffer) >= end + 4 + length:
                del buffer[: end + 4 + length]
                return int(head.split(" ", 2)[1])
        buffer += await stream.receive()


async def _concurrent(url: str, headers: dict[str, str]) -> float:
    """1,000 status calls, 50 keep-alive connections, each with one call in flight.

    A lean raw-socket client: httpx costs ~1 ms of client CPU per call on this machine
    (and its pool is quadratic with 1,000 queued requests), which would measure the client.
    """
    host, port = url.removeprefix("http://").rsplit(":", 1)
    lines = ["GET /v1/agents/bench HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    streams = [await anyio.connect_tcp(host, int(port)) for _ in range(CONNECTIONS)]
    statuses: list[int] = []
    left = CONCURRENT

    async def worker(stream: Any) -> None:
        nonlocal left
        buffer = bytearray()
        while left > 0:
            left -= 1
            statuses.append(await _raw_call(stream, request, buffer))

    try:
        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for stream in streams:
                tg.start_soon(worker, stream)
        took = time.perf_counter() - t0
    finally:
        for stream in streams:
            await stream.aclose()
    assert statuses.count(200) == CONCURRENT, f"not every call answered 200: {set(statuses)}"
    return took


def requests_rows() -> list[tuple[str, str, str, str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        with ziggie_server(home) as (url, token), bare_server() as bare_url:
            headers = {"Authorization": f"Bearer {token}"}
            spec = {
                "id": "bench",
                "level": "L1",
                "name": "bench",
                "role": "bench",
                "task": "idle",
                "context": {"working_directory": tmp},
                "command": ["sleep", "600"],
            }
            r = httpx.post(f"{url}/v1/agents", json={"agent_spec": spec}, headers=headers)
            assert r.status_code == 201, r.text
            ours = anyio.run(_sequential, url, headers, backend="trio")
            base = anyio.run(_sequential, bare_url, {}, backend="trio")
            burst_trio = anyio.run(_concurrent, url, headers, backend="trio")
            burst_asyncio = anyio.run(_concurrent, url, headers, backend="asyncio")
            burst_bare = anyio.run(_concurrent, bare_url, {}, backend="trio")
    ratio = ours / base
    return [
        (
            "GET /v1/agents/{id} p50 (running agent)",
            f"{ours * 1000:.2f} ms",
            f"{base * 1000:.2f} ms (bare Starlette route, Hypercorn)",
            f"{ratio:.2f}x",
            f"<= 1.2x: {verdict(ratio <= 1.2)}",
        ),
        (
            f"{CONCURRENT} concurrent status calls, {CONNECTIONS} keep-alive (trio / asyncio)",
            f"{burst_trio:.3f} s / {burst_asyncio:.3f} s",
            f"{burst_bare:.3f} s (bare route, trio)",
            f"{burst_trio / burst_bare:.2f}x",
            f"<= 1 s: {verdict(max(burst_trio, burst_asyncio) <= 1.0)}",
        ),
    ]


SUBSCRIBER = textwrap.dedent(
    """
    import json, re, sys, anyio, httpx
    url, token, n, total = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    ID = re.compile(rb"^id: ([0-9]+)$", re.M)
    counts = []
    async def one(client, ready):
        first = last = None
        seen = 0
        gapless = True
        tail = b""
        async with client.stream("GET", "/v1/events") as response:
            ready()
            async for chunk in response.aiter_raw():
                data = tail + chunk
                cut = data.rfind(b"\\n\\n") + 2
                data, tail = data[:cut], data[cut:]
                for m in ID.finditer(data):
                    i = int(m.group(1))
                    gapless = gapless and (last is None or i == last + 1)
                    first = i if first is None else first
                    last = i
                    seen += 1
                if seen >= total:
                    break
        counts.append((seen, gapless))
    async def main():
        opened = 0
        def ready():
            nonlocal opened
            opened += 1
            if opened == n:
                print("ready", flush=True)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
            async with anyio.create_task_group() as tg:
                for _ in range(n):
                    tg.start_soon(one, client, ready)
        print(json.dumps(counts), flush=True)
    anyio.run(main, backend="trio")
    """
)


async def _sse(home: Path) -> dict[str, Any]:
    from supervisor import no_events, open_runtime
    from supervisor.coordinator import Settings, open_coordinator

    async with (
        open_runtime(events=no_events()) as rt,
        open_coordinator(rt, Settings(home=home, http="127.0.0.1:0")) as coord,
    ):
        url = coord.url
        assert url is not None
        token = (home / "api-token").read_text().strip()
        # Latency: one subscriber in this process; each event carries its emit time.
        lat: list[float] = []
        got = anyio.Event()
        async with (
            httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c,
            anyio.create_task_group() as tg,
        ):
            opened = anyio.Event()

            async def listen() -> None:
                async with c.stream("GET", "/v1/events") as response:
                    opened.set()
                    async for line in response.aiter_lines():
                        if line.startswith("data: ") and '"bench"' in line:
                            sent = json.loads(line[6:])["t"]
                            lat.append(time.perf_counter() - sent)
                            if len(lat) == 500:
                                got.set()
                                return

            tg.start_soon(listen)
            await opened.wait()
            for _ in range(500):
                rt.events.emit("bench", t=time.perf_counter())
                await anyio.sleep(0.002)
            with anyio.fail_after(30):
                await got.wait()
        # Throughput: 10 subscribers in another process, 10,000 events in one second.
        proc = await anyio.open_process(
            [sys.executable, "-c", SUBSCRIBER, url, token, str(SUBSCRIBERS), str(EVENTS)],
            stderr=None,
        )
        assert proc.stdout is not None
        lines = proc.stdout
        buffer = b""
        while b"ready" not in buffer:
            buffer += await lines.receive()
        t0 = time.perf_counter()
        for batch in range(100):
            for _ in range(EVENTS // 100):
                rt.events.emit("load", n=batch)
            # 100 events every 10 ms: a sustained 10,000 events/s.
            await anyio.sleep(max(0.0, t0 + (batch + 1) * 0.01 - time.perf_counter()))
        emit_seconds = time.perf_counter() - t0
        with anyio.fail_after(60):
            while not buffer.strip().endswith(b"]"):
                buffer += await lines.receive()
        await proc.wait()
        counts = json.loads(buffer.decode().strip().splitlines()[-1])
        dropped = coord.http.hub.dropped if coord.http else -1
    return {
        "p50": statistics.median(lat),
        "received": [c[0] for c in counts],
        "contiguous": all(c[1] for c in counts),
        "rate": EVENTS / emit_seconds,
        "dropped": dropped,
    }


def sse_rows() -> list[tuple[str, str, str, str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        result = anyio.run(_sse, Path(tmp), backend="trio")
    p50 = result["p50"]
    complete = all(n == EVENTS for n in result["received"]) and result["contiguous"]
    return [
        (
            "SSE: event emitted -> received by a client, p50",
            f"{p50 * 1000:.2f} ms",
            "-",
            "-",
            f"<= 1 ms: {verdict(p50 <= 0.001)}",
        ),
        (
            f"SSE: {EVENTS:,} events at {result['rate']:,.0f}/s to {SUBSCRIBERS} subscribers",
            f"{min(result['received']):,} of {EVENTS:,} each, gapless: {result['contiguous']}",
            "-",
            "-",
            f"none dropped: {verdict(complete and result['dropped'] == 0)}",
        ),
    ]


def main() -> None:
    title = "HTTP API: ziggie serve --http vs a bare Starlette route (same run)"
    table(title, requests_rows() + sse_rows())


if __name__ == "__main__":
    main()
