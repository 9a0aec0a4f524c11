"""Test helpers: a probe whose children crash, exit or hang on command, and event capture."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from actors import marked_processes
from actors._watchdog import TOKEN_VAR, in_family
from supervisor import ChildContext, ChildSpec, EventLog, Restart, Shutdown, no_events

#: Programs a test agent may run besides its own (the demo agent's DEMO_GRANDCHILD
#: ``sleep``, the escapee scripts); its parents must hold them too (never wider).
TEST_PROGRAMS = ["sh", "setsid", "sleep"]


class Crash(Exception):
    pass


class Probe:
    """Children that log ``("start"|"stop", id, incarnation)`` and obey commands.

    ``probe.crash("a")`` makes the running incarnation of ``a`` raise, ``probe.finish("a")``
    makes it return; ``await probe.wait_for(entry)`` waits until *entry* is logged.
    """

    def __init__(self) -> None:
        self.log: list[tuple[str, str, int]] = []
        self._commands: dict[str, tuple[anyio.Event, list[str]]] = {}
        self._changed = anyio.Event()
        self._attempts: dict[str, int] = {}  # starts per id, kept when the log is cleared

    def _append(self, entry: tuple[str, str, int]) -> None:
        self.log.append(entry)
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, entry: tuple[str, str, int]) -> None:
        while entry not in self.log:
            await self._changed.wait()

    async def wait_starts(self, child_id: str, count: int) -> None:
        """Wait until *child_id* has started *count* times, over every incarnation."""
        while self.starts(child_id) < count:
            await self._changed.wait()

    def _command(self, child_id: str, action: str) -> None:
        event, box = self._commands[child_id]
        box.append(action)
        event.set()

    def crash(self, child_id: str) -> None:
        self._command(child_id, "crash")

    def finish(self, child_id: str) -> None:
        self._command(child_id, "finish")

    def starts(self, child_id: str) -> int:
        return sum(1 for kind, cid, _ in self.log if kind == "start" and cid == child_id)

    def spec(
        self,
        child_id: str,
        *,
        restart: Restart = Restart.PERMANENT,
        shutdown: Shutdown = Shutdown(5.0),
        fail_start: bool = False,
        fail_starts: Collection[int] = (),
        **kw: Any,
    ) -> ChildSpec:
        """*fail_start*: every start fails; *fail_starts*: which starts of *child_id* fail,
        counted from 1 over every incarnation (also those of a rebuilt parent)."""

        async def start(ctx: ChildContext) -> None:
            self._append(("start", child_id, ctx.incarnation))
            attempt = self._attempts[child_id] = self._attempts.get(child_id, 0) + 1
            if fail_start or attempt in fail_starts:
                raise Crash(f"{child_id} cannot start")
            event, box = anyio.Event(), []
            self._commands[child_id] = (event, box)
            ctx.started(ctx.incarnation)
            try:
                await event.wait()
                if box[0] == "crash":
                    raise Crash(child_id)
            finally:
                self._append(("stop", child_id, ctx.incarnation))

        return ChildSpec(id=child_id, start=start, restart=restart, shutdown=shutdown, **kw)


@contextmanager
def recording() -> Iterator[tuple[EventLog, list[tuple[str, dict[str, Any]]]]]:
    """An event log that keeps every event as ``(name, fields)``."""
    events = no_events()
    seen: list[tuple[str, dict[str, Any]]] = []
    with events.listen(lambda name, fields: seen.append((name, fields))):
        yield events, seen


def names(seen: list[tuple[str, dict[str, Any]]], *wanted: str) -> list[tuple[str, str]]:
    return [(n, f.get("agent_id", "")) for n, f in seen if not wanted or n in wanted]


@pytest.fixture(params=["trio", "asyncio"])
def real_clock_backend(request: pytest.FixtureRequest) -> str:
    """Both backends on the real clock: real processes cannot run on a MockClock.

    Use it as a module's backend with ``from .helpers import real_clock_backend as
    anyio_backend``.
    """
    return str(request.param)


def marked(agent_ids: Iterable[str]) -> dict[str, list[int]]:
    """Live processes of *agent_ids* started by THIS test process's runtime (its token).

    Other runtimes on the host (a live ``ziggie serve``, another test run) may run agents
    of the same ids: never ours to count or touch.
    """
    wanted = set(agent_ids)
    family = os.environ[TOKEN_VAR]  # the test run's token family (see conftest)
    found: dict[str, list[int]] = {}
    for proc in marked_processes():
        if proc.agent_id in wanted and in_family(proc.token, family):
            found.setdefault(proc.agent_id, []).append(proc.pid)
    return found


def build_cgexec(tmp_path: Path, variant: str) -> Path:
    """``actors/cgexec.c`` built into *tmp_path* with the Makefile's flags for *variant*
    (``nolibc``: x86-64 only; ``libc``), or a loud skip where it cannot be built here."""
    import platform
    import shutil
    import subprocess

    from .loud import loud_skip

    if shutil.which("cc") is None:
        loud_skip("no C compiler here: ziggie-cgexec's source was not built by the tests")
    if variant == "nolibc" and platform.machine() != "x86_64":
        pytest.skip("the nolibc variant is x86-64 only; the libc one is tested")
    root = Path(__file__).resolve().parent.parent
    make = (root / "Makefile").read_text().replace("\\\n", " ")
    nolibc = make.split("CGEXEC_NOLIBC :=", 1)[1].split("\n", 1)[0].split()
    flags = nolibc if variant == "nolibc" else ["-O2", "-DCGEXEC_LIBC"]
    binary = tmp_path / f"cgexec-{variant}"
    source = root / "actors" / "cgexec.c"
    subprocess.run(["cc", *flags, "-Wall", "-Wextra", "-Werror", "-o", binary, source], check=True)
    return binary
