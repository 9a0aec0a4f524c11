"""Scenarios run on both Erlang/OTP's ``supervisor`` and the kernel, and their traces.

A scenario is a supervision tree (strategies, restart types, intensity, scripted start
results ok/error/ignore, nested supervisors, significant children with auto_shutdown)
and a list of steps (a worker crashes or finishes; dynamic ``start_child``,
``terminate_child``, ``restart_child``, ``delete_child``, ``which_children``,
``count_children``). :class:`Otp` runs it on the real OTP through
``tests/otp_supervisor.escript``; ``tests/otp_kernel.py`` runs it on ours. Both print the
same trace lines (described in the escript), so they compare as lists.

The only normalisations, each done where the trace is printed:

- error types to OTP's atoms: ``AlreadyStarted`` is ``already_started``, a failed start
  ``start_error``, the ``ValueError`` of a refused significant child ``bad_combination``;
  an exit is ``normal``, ``shutdown`` or ``error`` (any abnormal reason, or ``timeout``);
- ``which_children`` in start order (OTP lists the newest first);
- ids unique per runtime (ours) rather than per supervisor (OTP's): scenarios reuse an
  id only under the supervisor that holds it;
- OTP counts restarts in whole seconds: scenarios never let time pass, and the period
  is an hour, so every restart of a scenario falls inside one window on both sides.
"""

from __future__ import annotations

import itertools
import os
import select
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

from hypothesis import strategies as st

ESCRIPT: Final = Path(__file__).with_name("otp_supervisor.escript")
PERIOD: Final = 3600  #: seconds: no scenario comes near it (see the module docstring)
ROOT: Final = "root"


@dataclass(frozen=True)
class Flags:
    strategy: str = "one_for_one"
    intensity: int = 3
    auto_shutdown: str = "never"

    def erlang(self) -> str:
        return f"{{{self.strategy}, {self.intensity}, {PERIOD}, {self.auto_shutdown}}}"


@dataclass(frozen=True)
class Node:
    """A child: a worker, or a supervisor over *children*. *script* gives the result of
    its successive starts (counted over every incarnation); past its end, ``ok``."""

    id: str
    kind: str = "worker"
    restart: str = "permanent"
    significant: bool = False
    script: tuple[str, ...] = ()
    flags: Flags = Flags()
    children: tuple[Node, ...] = ()

    def erlang(self) -> str:
        common = f"{self.id}, {self.restart}, {str(self.significant).lower()}, "
        common += f"[{', '.join(self.script)}]"
        if self.kind == "worker":
            return f"{{worker, {common}}}"
        kids = ", ".join(c.erlang() for c in self.children)
        return f"{{supervisor, {common}, {self.flags.erlang()}, [{kids}]}}"


@dataclass(frozen=True)
class Step:
    """``crash``/``finish`` a worker *id*, or call *op* on the supervisor *sup*."""

    op: str
    id: str = ""
    sup: str = ""
    child: Node | None = None

    def erlang(self) -> str:
        if self.op in ("crash", "finish"):
            return f"{{{self.op}, {self.id}}}"
        if self.op == "start_child":
            assert self.child is not None
            return f"{{start_child, {self.sup}, {self.child.erlang()}}}"
        if self.op in ("which_children", "count_children"):
            return f"{{{self.op}, {self.sup}}}"
        return f"{{{self.op}, {self.sup}, {self.id}}}"


@dataclass(frozen=True)
class Scenario:
    flags: Flags
    children: tuple[Node, ...]
    steps: tuple[Step, ...] = field(default=())

    def erlang(self) -> str:
        kids = ", ".join(c.erlang() for c in self.children)
        steps = ", ".join(s.erlang() for s in self.steps)
        return f"{{scenario, {self.flags.erlang()}, [{kids}], [{steps}]}}."


# -- generated scenarios --------------------------------------------------------------

_RESTARTS: Final = ["permanent", "permanent", "transient", "temporary"]
_STRATEGIES: Final = ["one_for_one", "one_for_all", "rest_for_one"]
_AUTO: Final = ["never", "never", "any_significant", "all_significant"]
# A first start that mostly succeeds (else the tree is often refused at once), and later
# ones that often fail: a failed restart is where strategies differ most.
_RESULTS: Final = st.tuples(
    st.sampled_from(["ok", "ok", "ok", "ignore", "error"]),
    st.lists(st.sampled_from(["ok", "error", "error", "ignore"]), min_size=1, max_size=3),
).map(lambda t: (t[0], *t[1]))
_OPS: Final = (
    ["crash"] * 4
    + ["finish"] * 2
    + ["start_child"] * 2
    + [
        "terminate_child",
        "restart_child",
        "delete_child",
        "which_children",
        "count_children",
    ]
)


@st.composite
def scenarios(draw: st.DrawFn, max_steps: int = 8) -> Scenario:
    """A root over 2-4 children, supervisors nested up to two deep, and 2 to *max_steps*
    steps; every id is unique in the scenario but where a step starts again a child its
    supervisor held."""
    numbers = itertools.count(1)
    under: dict[str, list[Node]] = {ROOT: []}  # every child ever placed under a supervisor
    flags_of: dict[str, Flags] = {}
    workers: list[str] = []

    def flags() -> Flags:
        return Flags(
            draw(st.sampled_from(_STRATEGIES)),
            draw(st.sampled_from([0, 1, 2, 3, 3])),
            draw(st.sampled_from(_AUTO)),
        )

    def node(parent: str, depth: int, dynamic: bool = False) -> Node:
        kind = "supervisor" if depth < 2 and draw(st.integers(0, 4)) == 0 else "worker"
        node_id = f"{kind[0]}{next(numbers)}"
        restart = draw(st.sampled_from(_RESTARTS))
        # Statically, significant only where OTP and ours both accept it; a dynamic child
        # may be refused (bad_combination on both sides).
        allowed = flags_of[parent].auto_shutdown != "never" and restart != "permanent"
        significant = (dynamic or allowed) and draw(st.booleans())
        if kind == "worker":
            workers.append(node_id)
            made = Node(node_id, "worker", restart, significant, draw(_RESULTS))
        else:
            flags_of[node_id] = flags()
            under[node_id] = []
            children = tuple(node(node_id, depth + 1) for _ in range(draw(st.integers(1, 3))))
            script = draw(_RESULTS)
            made = Node(node_id, kind, restart, significant, script, flags_of[node_id], children)
        under[parent].append(made)
        return made

    flags_of[ROOT] = flags()
    children = tuple(node(ROOT, 0) for _ in range(draw(st.integers(2, 4))))
    steps: list[Step] = []
    for _ in range(draw(st.integers(2, max_steps))):
        op = draw(st.sampled_from(_OPS))
        sup = draw(st.sampled_from(sorted(under)))
        if op in ("crash", "finish"):
            steps.append(Step(op, id=draw(st.sampled_from(workers or ["nobody"]))))
        elif op == "start_child":
            known = under[sup]
            if known and draw(st.integers(0, 3)) == 0:
                # Again a child this supervisor held: the same id for the same kind of child.
                steps.append(Step(op, sup=sup, child=draw(st.sampled_from(known))))
            else:
                steps.append(Step(op, sup=sup, child=node(sup, 1, dynamic=True)))
        elif op in ("which_children", "count_children"):
            steps.append(Step(op, sup=sup))
        else:
            ids = [c.id for c in under[sup]] or ["nobody"]
            steps.append(Step(op, sup=sup, id=draw(st.sampled_from(ids))))
    return Scenario(flags_of[ROOT], children, tuple(steps))


# -- the real OTP ---------------------------------------------------------------------


class Otp:
    """One Erlang VM for a whole test session, running scenarios on OTP's supervisor."""

    def __init__(self, proc: subprocess.Popen[bytes], stderr: IO[bytes], timeout: float) -> None:
        self._proc = proc
        self._stderr = stderr
        self.timeout = timeout
        self._buffer = b""
        if (line := self._line()) != "ready":
            raise RuntimeError(f"the Erlang VM did not start: {line!r}")

    def run(self, scenario: Scenario) -> list[str]:
        assert self._proc.stdin is not None
        self._proc.stdin.write(scenario.erlang().encode() + b"\n")
        self._proc.stdin.flush()
        lines: list[str] = []
        try:
            while (line := self._line()) != "end":
                lines.append(line)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\non {scenario.erlang()}\nafter {lines}") from None
        return lines

    def _line(self) -> str:
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([fd], [], [], self.timeout)
            chunk = os.read(fd, 65536) if ready else b""
            if not chunk:
                self._stderr.seek(0)
                raise RuntimeError(
                    f"the Erlang VM gave no answer within {self.timeout:g}s "
                    f"(exit status {self._proc.poll()}): {self._stderr.read().decode()[-2000:]}"
                )
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()


@contextmanager
def open_otp(escript: str, timeout: float = 30.0) -> Iterator[Otp]:
    """Start the Erlang VM; stop it (end of input) when the block ends."""
    with (
        tempfile.TemporaryFile() as stderr,
        subprocess.Popen(
            [escript, str(ESCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env={**os.environ, "ERL_CRASH_DUMP_SECONDS": "0"},  # no erl_crash.dump in cwd
        ) as proc,
    ):
        try:
            yield Otp(proc, stderr, timeout)
        finally:
            assert proc.stdin is not None
            proc.stdin.close()  # the escript ends at end of input
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
