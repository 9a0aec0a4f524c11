"""A misbehaving agent for the no-orphan tests: ``behave.py MODE READY_FILE``.

Writes the pids it created to READY_FILE (one line each) once its tree is in place.
"""

import os
import signal
import subprocess
import sys
import time

mode, ready = sys.argv[1], sys.argv[2]
pids = [os.getpid()]


def hang_ignoring_term() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        time.sleep(3600)


def child(setup: str) -> int:
    """Start a python child that runs *setup*, then says so, then sleeps."""
    code = f"import os, signal, sys, time; {setup}; print('set', flush=True); time.sleep(3600)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"set"  # its setup is in place
    return proc.pid


if mode == "child_ignores_term":
    pids.append(child("signal.signal(signal.SIGTERM, signal.SIG_IGN)"))
elif mode == "setsid_grandchild":
    pids.append(child("os.setsid()"))
elif mode == "double_fork":
    r, w = os.pipe()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.write(w, f"{os.getpid()}\n".encode())
            time.sleep(3600)
            os._exit(0)
        os._exit(0)
    pids.append(int(os.read(r, 64)))
elif mode == "ignore_term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
elif mode.startswith("exit"):
    time.sleep(float(os.environ.get("EXIT_AFTER", "0")))
    print("exiting at", time.time(), flush=True)
    sys.exit(int(mode[4:]))

tmp = ready + ".tmp"
with open(tmp, "w") as f:
    f.write("\n".join(map(str, pids)) + "\n")
os.replace(tmp, ready)
print("ready", pids, flush=True)
if mode == "ignore_term":
    hang_ignoring_term()
time.sleep(3600)
