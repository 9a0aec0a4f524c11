"""The runtime's watchdog: a tiny process that kills every agent if the runtime dies.

Why not ``PR_SET_PDEATHSIG``: setting it needs a ``preexec_fn``, which makes CPython fork
the whole interpreter instead of vfork-ing (measured: 12x slower spawns), and it only
reaches direct children. The watchdog is spawned once per runtime process, holds the read
end of a pipe, and learns each agent's process group by one ``write``. When the runtime
dies, by SIGKILL or otherwise, the pipe reaches EOF and the watchdog SIGKILLs every
registered group, then every process that carries this runtime's token in its environment
(grandchildren that left their group included), until none is left.

Run as a script (``python -S _watchdog.py TOKEN``) so it starts in milliseconds and
imports nothing of ours.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

TOKEN_VAR = "ZIGGIE_RUNTIME"

_lock = threading.Lock()
_proc: subprocess.Popen[bytes] | None = None
_token: str | None = None
#: Every token this process's agents were started with: the watchdog sweeps them all.
_tokens: set[str] = set()


def new_token(parent: str | None = None) -> str:
    """A fresh token; under *parent* it is ``<parent>.<fresh>``, a member of its family."""
    fresh = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    return f"{parent}.{fresh}" if parent else fresh


def token() -> str:
    """This runtime process's default token; agents inherit theirs as ``ZIGGIE_RUNTIME``.

    Made on first use. A process that itself runs under a token (``ZIGGIE_RUNTIME`` in
    its environment: an agent, or a test run that set one) gets a token of that family,
    ``<inherited>.<fresh>``, never the inherited one itself: its watchdog's sweep must not
    reach its parent's agents, while whoever owns the family can still recognise it by
    prefix (a test run checks only its own processes).
    """
    global _token
    if _token is None:
        _token = new_token(os.environ.get(TOKEN_VAR) or None)
    return _token


def in_family(value: str | None, family: str) -> bool:
    """True if token *value* is *family* or was made under it."""
    return value is not None and (value == family or value.startswith(family + "."))


def watchdog_pid() -> int | None:
    return _proc.pid if _proc is not None else None


#: Set by :func:`detach`: the watchdog is re-parented away from this process.
_detached = False
_broken = False


def detach() -> None:
    """Run this process's watchdog as no child of ours (call it before the first agent,
    and before becoming a subreaper).

    For a runtime hosted by a supervisor that kills its workers' *children* when a worker
    dies: Ray's raylet does (``kill_child_processes_on_worker_exit``), and would take the
    watchdog before its sweep, leaving the agents' ``setsid`` escapees to init.
    """
    global _detached
    _detached = True
    _ensure()  # now: once we are a subreaper, an orphaned watchdog would come back to us


def _alive(proc: subprocess.Popen[bytes]) -> bool:
    # A detached watchdog's launcher exits at once: a broken pipe is what says it died.
    return not _broken if _detached else proc.poll() is None


def _ensure() -> subprocess.Popen[bytes]:
    global _proc, _broken
    with _lock:
        if _proc is None or not _alive(_proc):
            env = {k: v for k, v in os.environ.items() if not k.startswith("ZIGGIE_")}
            _broken = False
            mode = ["--detach"] if _detached else []
            _proc = subprocess.Popen(
                [sys.executable, "-S", os.path.abspath(__file__), *mode, token()],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # never inside an agent's group or our own
                env=env,
            )
            if _detached:
                _proc.wait()  # the launcher forks the watchdog and exits at once
            if _cgroups:
                assert _proc.stdin is not None
                with contextlib.suppress(BrokenPipeError):
                    _proc.stdin.write("".join(f"c{c}\n" for c in sorted(_cgroups)).encode())
                    _proc.stdin.flush()
            if _tokens:  # a watchdog started again must know every token still in use
                assert _proc.stdin is not None
                with contextlib.suppress(BrokenPipeError):
                    _proc.stdin.write("".join(f"t{t}\n" for t in sorted(_tokens)).encode())
                    _proc.stdin.flush()
        return _proc


@atexit.register
def _close_at_exit() -> None:
    """At a normal exit, hang up as a crash would (the watchdog sweeps what is left, which
    after a clean stop is nothing) and see it go: no watchdog outlives its runtime, and
    no warning says a subprocess was left running."""
    proc = _proc
    if proc is None or _detached or proc.stdin is None:
        return
    with contextlib.suppress(OSError):
        proc.stdin.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _send(line: str) -> None:
    global _broken
    proc = _ensure()
    assert proc.stdin is not None
    try:
        proc.stdin.write(line.encode())
        proc.stdin.flush()
    except BrokenPipeError:
        _broken = True
        if _detached:  # its launcher is no witness of its death: start it again, resend
            proc = _ensure()
            assert proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.write(line.encode())
                proc.stdin.flush()


def watch(pgid: int, tok: str | None = None) -> None:
    """Kill process group *pgid* if this runtime dies before :func:`unwatch`, and sweep
    every process carrying *tok* (default: :func:`token`) then."""
    if tok is not None:
        watch_token(tok)
    _send(f"+{pgid}\n")


_cgroups: set[str] = set()


def watch_cgroup(path: str) -> None:
    """Kill the whole cgroup *path* (``cgroup.kill``) if this runtime dies."""
    if path not in _cgroups:
        _cgroups.add(path)
        _send(f"c{path}\n")


def unwatch(pgid: int) -> None:
    _send(f"-{pgid}\n")


def watch_token(tok: str) -> None:
    """Sweep every process carrying *tok* if this runtime dies: for helpers that are not
    agents, such as a private Ray head started for a coordinator."""
    if tok not in _tokens and tok != token():
        _tokens.add(tok)
        _send(f"t{tok}\n")


# -- the watchdog process itself ------------------------------------------------------


def env_has(env: bytes, name: str, value: str) -> bool:
    """True if the NUL-separated environment block *env* holds exactly ``name=value``."""
    needle = f"{name}={value}".encode()
    return (
        env.startswith(needle + b"\0")
        or b"\0" + needle + b"\0" in env
        or env == needle
        or env.endswith(b"\0" + needle)
    )


def _marked(toks: set[str]) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if any(env_has(env, TOKEN_VAR, tok) for tok in toks):
            found.append(int(name))
    return found


def _main(tok: str) -> None:  # pragma: no cover - runs in the watchdog process
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C to the terminal is not for us
    groups: set[int] = set()
    cgroups: set[str] = set()
    toks = {tok}
    for raw in sys.stdin.buffer:
        line = raw.decode().strip()
        if line.startswith("t"):
            toks.add(line[1:])
        elif line.startswith("c"):
            cgroups.add(line[1:])
        elif line.startswith("+"):
            groups.add(int(line[1:]))
        elif line.startswith("-"):
            groups.discard(int(line[1:]))
    # EOF: the runtime is gone. Nothing of it may outlive it.
    for path in cgroups:  # every agent's cgroup at once, forks and escapees included
        with contextlib.suppress(OSError), open(os.path.join(path, "cgroup.kill"), "w") as f:
            f.write("1")
    for _ in range(50):  # then the emptied cgroups themselves (they empty in ~1 ms)
        left = [p for p in cgroups if os.path.isdir(p)]
        for path in left:
            for name in os.listdir(path):
                with contextlib.suppress(OSError):
                    os.rmdir(os.path.join(path, name))
            with contextlib.suppress(OSError):
                os.rmdir(path)
        if not any(os.path.isdir(p) for p in cgroups):
            break
        time.sleep(0.02)
    for pgid in groups:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
    for _ in range(50):
        pids = [pid for pid in _marked(toks) if pid != os.getpid()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)


if __name__ == "__main__":  # pragma: no cover
    if sys.argv[1] == "--detach":  # the launcher exits; its child is init's, not ours
        if os.fork() > 0:
            os._exit(0)
        _main(sys.argv[2])
    else:
        _main(sys.argv[1])
