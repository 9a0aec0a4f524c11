"""The CLI and the client against hostile files and processes: answers that are not
answers, a lock file that lies, agent output that drives the terminal, a home that is a
file, and an agent between a crash and its restart."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from supervisor import AgentDeploymentClient, AgentSpec, SyncAgentDeploymentClient
from supervisor.protocol import LOCK_NAME

from .helpers import real_clock_backend as anyio_backend  # noqa: F401
from .queue_helpers import agent_spec, fake_coordinator, serve_process
from .waiting import until_files_sync

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def ziggie(*args: str, home: Path, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [PY, "-m", "supervisor.cli", *args, "--home", str(home)],
        capture_output=True,
        timeout=timeout,
        cwd=ROOT,
    )


def _no_traceback(result: subprocess.CompletedProcess[bytes]) -> None:
    assert b"Traceback" not in result.stderr, result.stderr.decode()


def _one_request(queue: Path) -> str:
    """The id of the first request a client writes into *queue* (its file renamed in, not
    the writer's hidden temp file)."""
    requests = queue / "requests"

    def written() -> list[str]:
        return [
            p.name
            for p in requests.iterdir()
            if p.name.endswith(".request.json") and not p.name.startswith(".")
        ]

    until_files_sync([requests], lambda: bool(written()), 30, "a request")
    return written()[0].removesuffix(".request.json")


# -- an answer the client cannot read is a failed answer with a code ------------------------


def test_a_fifo_for_an_answer_never_outlasts_the_timeout(tmp_path: Path) -> None:
    """A FIFO renamed in as the answer: the client does not block on it. The command
    ends well within the process timeout with a failed answer and a code, no traceback."""
    home = tmp_path / "home"
    with fake_coordinator(home) as queue:
        args = ["terminate", "x", "--timeout", "3", "--json", "--home", str(home)]
        proc = subprocess.Popen(
            [PY, "-m", "supervisor.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        try:
            request_id = _one_request(queue)
            fifo = queue / "responses" / f".{request_id}.fifo"
            os.mkfifo(fifo, 0o600)
            os.rename(fifo, queue / "responses" / f"{request_id}.response.json")
            out, err = proc.communicate(timeout=30)  # on main: blocked in open() for good
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert b"Traceback" not in err, err.decode()
    assert proc.returncode == 1
    answer = json.loads(out)
    assert answer["status"] == "failed"
    assert answer["code"] == "invalid_response"
    assert "regular file" in answer["error"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("content", "what"),
    [
        (b"not json {", "invalid JSON"),
        (b'{"status": "exploded"}', "not an answer"),
        (b"[1, 2, 3]", "object"),
    ],
)
async def test_a_junk_answer_is_a_failed_answer_with_a_code(
    tmp_path: Path, content: bytes, what: str
) -> None:
    home = tmp_path / "home"
    with fake_coordinator(home) as queue:
        async with AgentDeploymentClient(queue) as client, anyio.create_task_group() as tg:
            answers = []

            async def ask() -> None:
                answers.append(await client.check_agent_status("x", timeout=30))

            tg.start_soon(ask)
            request_id = await anyio.to_thread.run_sync(_one_request, queue)
            junk = queue / "responses" / f".{request_id}.tmp"
            junk.write_bytes(content)
            junk.rename(queue / "responses" / f"{request_id}.response.json")
    (answer,) = answers
    assert answer.status == "failed"
    assert answer.code == "invalid_response"
    assert what in (answer.error or "")


def test_a_junk_answer_prints_one_line_not_a_traceback(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with fake_coordinator(home) as queue:
        proc = subprocess.Popen(
            [PY, "-m", "supervisor.cli", "status", "x", "--home", str(home)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        try:
            request_id = _one_request(queue)
            junk = queue / "responses" / f".{request_id}.tmp"
            junk.write_text('{"version": "1.0", "status": 42}')
            junk.rename(queue / "responses" / f"{request_id}.response.json")
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert b"Traceback" not in err, err.decode()
    assert proc.returncode == 1
    assert len((out + err).decode().strip().splitlines()) <= 3


# -- ziggie stop signals the lock's holder, whatever the file says ------------------------------

_BYSTANDER = """
import signal, sys, time
def term(*_):
    open(sys.argv[1], "w").write("signalled")
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
print("ready", flush=True)
time.sleep(300)
"""


def test_stop_signals_only_the_process_holding_the_lock(tmp_path: Path) -> None:
    """The lock file is rewritten to name a bystander (a process this test started): stop
    still stops the coordinator, which holds the lock, and never signals the bystander."""
    home = tmp_path / "home"
    record = tmp_path / "bystander-signalled"
    bystander = subprocess.Popen(
        [PY, "-c", _BYSTANDER, str(record)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert bystander.stdout is not None
        assert bystander.stdout.readline() == "ready\n"
        with serve_process(home) as coordinator:
            (home / LOCK_NAME).write_text(f"{bystander.pid}\n")  # the flock is untouched
            result = ziggie("stop", "--timeout", "20", home=home, timeout=60)
            _no_traceback(result)
            assert result.returncode == 0, result.stderr.decode()
            assert coordinator.wait(30) == 0
            assert f"pid {coordinator.pid}".encode() in result.stdout
        assert not record.exists()
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
        if bystander.stdout is not None:
            bystander.stdout.close()


def test_stop_without_a_holder_signals_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / LOCK_NAME).write_text(f"{os.getpid()}\n")  # no one holds it: nothing to stop
    result = ziggie("stop", home=home)
    assert result.returncode == 3
    _no_traceback(result)


# -- agent output never drives the terminal ---------------------------------------------------

_NOISY = (
    "import sys\n"
    "sys.stdout.write('plain\\ttab\\n\\x1b]0;pwned\\x07\\x1b[2J\\x1b[31mred\\u009b1m\\u202eevil\\n')\n"
)


def test_logs_and_events_escape_control_sequences(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with serve_process(home):
        command = f"{PY} -c {shlex.quote(_NOISY)}"
        deploy = ziggie("deploy", "--id", "noisy", "--task", "t", "--command", command, home=home)
        assert deploy.returncode == 0, deploy.stderr.decode()
        assert ziggie("wait", "noisy", home=home).returncode == 0
        shown = ziggie("logs", "noisy", home=home)
        assert shown.returncode == 0
        for byte in (b"\x1b", b"\x07", "\u009b".encode(), "\u202e".encode()):
            assert byte not in shown.stdout, byte
        assert b"plain\ttab\n" in shown.stdout  # tabs and newlines stay what they are
        assert b"\\x1b]0;pwned\\x07\\x1b[2J\\x1b[31mred\\x9b1m\\u202eevil" in shown.stdout
        raw = ziggie("logs", "noisy", "--raw", home=home)
        assert b"\x1b]0;pwned\x07" in raw.stdout  # for pipes: the bytes as written

        # An events line (JSON) may carry C1 controls and bidi overrides unescaped.
        with open(home / "events.jsonl", "a", encoding="utf-8") as events:
            events.write(json.dumps({"event": "odd", "note": "\u009b2J\u202e"}, ensure_ascii=False))
            events.write("\n")
        listed = ziggie("events", "--type", "odd", home=home)
        assert listed.returncode == 0
        assert "\u009b".encode() not in listed.stdout
        assert "\u202e".encode() not in listed.stdout
        assert b"\\x9b2J\\u202e" in listed.stdout
        raw_events = ziggie("events", "--type", "odd", "--raw", home=home)
        assert "\u009b".encode() in raw_events.stdout


# -- serve --home that is not a directory ---------------------------------------------------


def test_serve_on_a_home_that_is_a_file_is_a_usage_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("not a directory")
    result = ziggie("serve", home=home, timeout=60)
    _no_traceback(result)
    assert result.returncode == 2
    assert b"not a directory" in result.stderr
    assert len(result.stderr.decode().strip().splitlines()) == 1


# -- logs -f ends with the agent's last incarnation, not between two -------------------------

_TWICE = (
    "import os, sys\n"
    "n = os.environ['ZIGGIE_INCARNATION']\n"
    "print('incarnation', n, flush=True)\n"
    "sys.exit(1 if n == '1' else 0)\n"
)


def test_logs_follow_waits_through_a_restart_backoff(tmp_path: Path) -> None:
    """The first incarnation crashes; the restart waits out a backoff (a window in which
    ``logs -f`` used to see an ended agent and stop); the second exits 0. Following prints
    both incarnations' output and ends once the last has ended."""
    home = tmp_path / "home"
    spec = AgentSpec.model_validate(
        agent_spec(
            "twice",
            tmp_path,
            command=[PY, "-c", _TWICE],
            restart="transient",
            backoff_initial=1.0,
            max_restarts=3,
        )
    )
    with serve_process(home), SyncAgentDeploymentClient(home / "agent-queue") as client:
        assert client.deploy_agent(spec).status == "deployed"
        followed = ziggie("logs", "twice", "-f", home=home, timeout=60)
        assert followed.returncode == 0, followed.stderr.decode()
        assert b"incarnation 1" in followed.stdout
        assert b"incarnation 2" in followed.stdout
        status = client.check_agent_status("twice")
        assert status.agent is not None
        assert status.agent["state"] == "completed"


def test_wait_waits_through_a_restart_backoff(tmp_path: Path) -> None:
    home = tmp_path / "home"
    spec = AgentSpec.model_validate(
        agent_spec(
            "again",
            tmp_path,
            command=[PY, "-c", _TWICE],
            restart="transient",
            backoff_initial=1.0,
            max_restarts=3,
        )
    )
    with serve_process(home), SyncAgentDeploymentClient(home / "agent-queue") as client:
        assert client.deploy_agent(spec).status == "deployed"
        waited = ziggie("wait", "again", home=home, timeout=60)
        assert waited.returncode == 0, waited.stderr.decode()  # the last run's exit code
        assert client.check_agent_status("again").agent["state"] == "completed"  # type: ignore[index]
