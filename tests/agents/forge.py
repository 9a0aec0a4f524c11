"""A hostile agent for the queue-identity tests: ``forge.py PLAN OUT``.

It writes into its own queue, ``$ZIGGIE_HOME/agent-queue``, whatever its PLAN (a JSON
file, a list of steps) says, and awaits each answer:

- ``{"request": {...}}``: that request, exactly as given (``parent_agent`` and all);
- ``{"fifo": ID}``: a FIFO renamed in as ``ID.request.json``;
- ``{"symlink": ID, "to": PATH}``: a symlink to PATH renamed in as ``ID.request.json``;
- ``{"plant": NAME, "to": PATH}``: a symlink planted in its ``responses/`` at NAME (a
  temp name a coordinator might write), no answer awaited;
- ``{"raw": ID, "bytes": N}``: N bytes of nothing like JSON, as ``ID.request.json``.

Each answer becomes one JSON line of OUT: ``{"step": i, "kind": "response" | "error" |
"timeout", "answer": ..., "regular": true}`` (``regular``: the answer is a plain file, not a
symlink). Then it waits to be stopped.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
import time
from typing import Any

from inotify_simple import INotify, flags

plan_path, out_path = sys.argv[1], sys.argv[2]
queue = os.path.join(os.environ["ZIGGIE_HOME"], "agent-queue")
requests, responses = os.path.join(queue, "requests"), os.path.join(queue, "responses")


def place(file_id: str, make: Any) -> None:
    """Make the entry at a temp name, then rename it in: one MOVED_TO for the coordinator."""
    tmp = os.path.join(requests, f".{file_id}.forge")
    make(tmp)
    os.rename(tmp, os.path.join(requests, f"{file_id}.request.json"))


def answer(file_id: str, ino: INotify, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        for kind in ("response", "error"):
            path = os.path.join(responses, f"{file_id}.{kind}.json")
            try:
                info = os.lstat(path)
                with open(path, encoding="utf-8") as f:
                    body = json.load(f)
            except (FileNotFoundError, json.JSONDecodeError):
                continue
            return {"kind": kind, "answer": body, "regular": stat.S_ISREG(info.st_mode)}
        left = deadline - time.monotonic()
        if left <= 0:
            return {"kind": "timeout"}
        ino.read(timeout=int(left * 1000) + 1)


def write_request(file_id: str, data: bytes) -> None:
    def make(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    place(file_id, make)


def main() -> None:
    with open(plan_path, encoding="utf-8") as f:
        plan = json.load(f)
    ino = INotify()
    ino.add_watch(responses, flags.MOVED_TO | flags.CLOSE_WRITE | flags.CREATE)
    for i, step in enumerate(plan):
        if "plant" in step:
            os.symlink(step["to"], os.path.join(responses, step["plant"]))
            continue
        if "request" in step:
            file_id = step["request"]["request_id"]
            write_request(file_id, json.dumps(step["request"]).encode())
        elif "fifo" in step:
            file_id = step["fifo"]
            place(file_id, os.mkfifo)
        elif "symlink" in step:
            file_id = step["symlink"]
            place(file_id, lambda tmp, to=step["to"]: os.symlink(to, tmp))
        else:
            file_id = step["raw"]
            write_request(file_id, b"x" * step["bytes"])
        line = {"step": i, "id": file_id, **answer(file_id, ino)}
        with open(out_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
    with open(out_path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"done": True}) + "\n")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
