"""One agent's OS process tree: spawn it, await its exit, and stop it with nothing left.

The no-orphan guarantee rests on four Linux mechanisms, each covering what the one
before it cannot:

1. the agent starts in its own session, so one ``killpg`` reaches every process that
   stayed in its group;
2. every process it starts inherits the marker ``ZIGGIE_AGENT_ID``, so a process that
   left the group (``setsid``, double fork) is still recognisable;
3. the runtime is a child subreaper, so such escapees re-parent to us (not to init): they
   stay our descendants, can be found by walking ``/proc``, and are reaped by us;
4. a watchdog process (:mod:`actors._watchdog`) kills every agent group, and every process
   carrying this runtime's token, if the runtime dies (SIGKILL included).

Exit waits use pidfds: no polling tick, and no PID-reuse race for the leader.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Final

import anyio
import psutil

from . import _watchdog
from ._confine import Confinement
from ._exec import prepare
from ._procfs import (
    CHILD_LISTS,
    MARKER,
    Stat,
    all_stats,
    boot_ticks,
    children,
    descendants,
    has_marker,
    pidfd_open,
    read_stat,
    subtree,
    wait_gone,
)
from ._subreaper import (
    hold,
    is_subreaper,
    live_groups,
    reap_held,
    reap_orphans,
    remember,
    seen_starts,
)

#: SIGKILL rounds a stop tries before it reports what it could not kill.
KILL_ROUNDS: Final = 5
#: Seconds each SIGKILL round waits for its processes to go.
KILL_WAIT: Final = 1.0


@dataclass(slots=True)
class StopReport:
    """What a stop had to do: who got SIGTERM, who needed SIGKILL, how long it took."""

    terminated: list[int] = field(default_factory=list)
    killed: list[int] = field(default_factory=list)
    seconds: float = 0.0
    #: Pids still alive when the stop gave up (unkillable, e.g. in uninterruptible sleep).
    left: list[int] = field(default_factory=list)


class ProcessTree:
    """An agent process (session leader) and everything it starts."""

    def __init__(
        self,
        argv: list[str],
        *,
        agent_id: str,
        cwd: str | os.PathLike[str],
        env: Mapping[bytes, bytes],
        stdout: int | IO[bytes] | None,
        token: str | None = None,
        limits: Mapping[str, str] | None = None,
        confinement: Confinement | None = None,
    ) -> None:
        self.agent_id = agent_id
        #: The runtime token its processes carry (``ZIGGIE_RUNTIME``): a coordinator
        #: passes its home's, so a successor finds them.
        self.token = token or _watchdog.token()
        full_env = {
            **env,
            MARKER.encode(): agent_id.encode(),
            _watchdog.TOKEN_VAR.encode(): self.token.encode(),
        }
        #: This incarnation's own cgroup, where the host allows; else None. The argv
        #: to spawn goes through the exec shim when there is a cgroup or a confinement.
        argv, self.cgroup = prepare(agent_id, argv, cwd, env, limits, confinement)
        self.confinement = confinement
        #: A bound on the start time (clock ticks) of every process of the agent. Taken
        #: here, not read from the leader's /proc/<pid>/stat: that read waits for its exec
        #: to finish (0.35 ms a spawn, measured), and the tick is coarser than the gap.
        self.start = boot_ticks()
        # No preexec_fn: it would force fork over vfork (12x slower spawns, measured).
        try:
            self.popen = self._spawn(argv, cwd, full_env, stdout)
        except OSError:
            if self.cgroup is not None:
                self.cgroup.remove()
            raise
        self.pid = self.popen.pid
        self.pgid = self.pid
        self._pidfd: int | None = pidfd_open(self.pid)
        live_groups[self.pgid] = agent_id
        if self.cgroup is None:
            _watchdog.watch(self.pgid, self.token)
        else:  # the watchdog kills the runtime's whole cgroup, and sweeps the token
            _watchdog.watch_token(self.token)
        self.returncode: int | None = None

    @staticmethod
    def _spawn(
        argv: list[str],
        cwd: str | os.PathLike[str],
        env: Mapping[bytes, bytes],
        stdout: int | IO[bytes] | None,
    ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    async def wait(self) -> int:
        """Wait for the leader to exit (no polling where pidfds exist); its return code."""
        if self.returncode is None:
            if self._pidfd is not None:
                await anyio.wait_readable(self._pidfd)
            else:  # pragma: no cover - kernels without pidfd
                # ASYNC110: polling is the only way to wait without a pidfd.
                while self.popen.poll() is None:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            self.returncode = self.popen.wait()
            self._close_pidfd()
        return self.returncode

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def _quick_members(self) -> set[int]:
        """Like :meth:`members`, from the child lists of the leader and of ourselves only."""
        skip = set(live_groups) - {self.pgid}
        skip.add(_watchdog.watchdog_pid() or -1)
        candidates = set()
        if self.returncode is None:  # the leader lives: it and its subtree are ours
            candidates = subtree(self.pid) | {self.pid}
        ours = set(candidates)
        for root in children(os.getpid()):
            if root not in skip and root != self.pid:
                candidates.add(root)
                candidates |= subtree(root)
        found = set()
        for pid in candidates:
            st = read_stat(pid)
            if st is None or st.zombie:
                continue
            if pid in ours or st.pgid == self.pgid or has_marker(pid, self.agent_id, self.token):
                found.add(pid)
                seen_starts[pid] = st.start
        return found

    def live_members(self) -> set[int]:
        """The agent's live processes, by the cheapest sound means this kernel offers.

        The child lists of the leader and of ourselves see everything only when we are
        the subreaper; otherwise escapees live under init, and only a full scan finds them.
        """
        if self.cgroup is not None:  # the kernel keeps the list: every fork is in it
            return self.cgroup.pids()
        return self._quick_members() if CHILD_LISTS and is_subreaper() else self.members()

    def members(self, stats: Mapping[int, Stat] | None = None) -> set[int]:
        """Every live process of this agent: its group, its descendants, marked escapees."""
        if stats is None:
            stats = all_stats()
        me = os.getpid()
        tree = {pid for pid, st in stats.items() if st.pgid == self.pgid}
        tree |= descendants(stats, self.pid)
        # Zombies are dead but ours to reap once they re-parent to us (double fork).
        remember(tree, stats)
        found = {pid for pid in tree if not stats[pid].zombie}
        others = {g for g, a in live_groups.items() if a != self.agent_id}
        # Not the subreaper: an escapee re-parented to init, anywhere in /proc; only one
        # born after the agent's leader can be the agent's (the host's old ones are not).
        maybe = descendants(stats, me) if is_subreaper() else set(stats) - {me}
        for pid in maybe:
            st = stats[pid]
            if pid in found or st.zombie or st.pgid in others or st.start < self.start:
                continue
            if has_marker(pid, self.agent_id, self.token):
                found.add(pid)
        remember(found, stats)
        return found

    async def stop(self, grace: float) -> StopReport:
        """SIGTERM the tree, wait up to *grace*, SIGKILL what is left, until none is left.

        The group and the leader get SIGTERM at once; ``/proc`` is read again once the
        leader is gone, to find what remains (group members still dying, escapees).
        Runs to completion whatever the caller's cancellation (shielded): a half-done stop
        is how orphans are made. Bounded all the same: after
        ``KILL_ROUNDS`` rounds of SIGKILL, what still lives (an unkillable process, in
        uninterruptible sleep) is reported in ``report.left`` instead of waited for.
        """
        if self.cgroup is not None:
            return await self._stop_cgroup(grace)
        report = StopReport()
        t0 = time.perf_counter()
        with anyio.CancelScope(shield=True):
            deadline = anyio.current_time() + grace
            signalled: set[int] = set()
            if self.returncode is None:
                # Snapshot the tree while the leader lives: its zombie children (a double
                # fork's middle process) cannot be recognised once they re-parent to us.
                remember(subtree(self.pid))
                report.terminated.append(self.pid)
                self._signal((self.pid,), signal.SIGTERM if grace > 0 else signal.SIGKILL)
                # Brutal: the group has SIGKILL, so its leader goes at once; the tree is
                # read once it has, not while all of it is still dying.
                with anyio.move_on_at(deadline if grace > 0 else deadline + KILL_WAIT):
                    await self.wait()
            rounds = 0
            while True:
                # As the subreaper, every process the agent ever had is still in our
                # subtree (under its leader, or re-parented to us), so walking the child
                # lists of the leader and of ourselves sees all of it.
                members = self.live_members()
                if not members:
                    break
                if rounds >= KILL_ROUNDS:
                    report.left = sorted(members)
                    break
                if anyio.current_time() < deadline:
                    fresh = members - signalled
                    report.terminated += sorted(fresh)
                    signalled |= fresh
                    self._signal(fresh, signal.SIGTERM)
                    with anyio.move_on_at(deadline):
                        await wait_gone(members)
                else:
                    rounds += 1
                    report.killed = sorted(set(report.killed) | members)
                    self._signal(members, signal.SIGKILL)
                    with anyio.move_on_after(KILL_WAIT):
                        await wait_gone(members)
            if self.pid not in report.left:
                with anyio.move_on_after(KILL_WAIT):
                    await self.wait()
            reap_orphans()
        live_groups.pop(self.pgid, None)
        _watchdog.unwatch(self.pgid)
        report.terminated = sorted(set(report.terminated))
        report.seconds = time.perf_counter() - t0
        return report

    async def _stop_cgroup(self, grace: float) -> StopReport:
        """SIGTERM, grace, then ``cgroup.kill``; verified by ``populated 0``.

        Brutal kill is the one write. The leader's pidfd is waited for as well only while
        the cgroup does not list it: a stop may come before the shim has joined, and
        the shim then never execs the agent. The other members are held by pidfds from
        the moment they are listed, so the ones that end as our zombies (escapees
        re-parented to us) are reaped as themselves, whatever became of their pids.
        """
        cg = self.cgroup
        assert cg is not None
        report = StopReport()
        t0 = time.perf_counter()
        with anyio.CancelScope(shield=True):
            members = cg.pids()
            outside = self.returncode is None and self.pid not in members
            if outside:
                members.add(self.pid)
            held = hold(members - {self.pid}, cg.pids)
            empty = False
            try:
                graceful = grace > 0 and bool(members)
                if graceful:
                    report.terminated = sorted(members)
                    self._signal_each(members, signal.SIGTERM, held)
                    with anyio.move_on_after(grace):
                        await self.wait()  # the leader's pidfd: usually the last to go
                        empty = await cg.wait_empty(grace)
                elif not members:
                    empty = not cg.populated()
                if not empty:
                    left = cg.pids() if graceful else members
                    if self._reap_leader():
                        left.discard(self.pid)
                    else:
                        left.add(self.pid)
                    held.update(hold(left - held.keys() - {self.pid}, cg.pids))
                    report.killed = sorted(left)
                    if self.pid in left:  # first: a shim not yet in the cgroup cannot
                        self._signal_each((self.pid,), signal.SIGKILL, held)  # join, fork
                    cg.kill()  # one write: every process of the cgroup, forks included
                    if self.pid in left:
                        with anyio.move_on_after(KILL_WAIT):
                            await self.wait()  # usually the last to go: then all are
                    empty = await cg.wait_empty(KILL_WAIT * KILL_ROUNDS)
                if not self._reap_leader():
                    # populated 0 comes as it leaves the cgroup, a moment before its exit
                    with anyio.move_on_after(KILL_WAIT):
                        await self.wait()
                if not empty or self.returncode is None:
                    alive = {self.pid} if self.returncode is None else set()
                    report.left = sorted(cg.pids() | alive)
            finally:
                # After the leader: its orphans are ours by then.
                await reap_held(held, wait=KILL_WAIT if empty else 0)
            if empty:
                cg.remove()
        live_groups.pop(self.pgid, None)
        report.seconds = time.perf_counter() - t0
        return report

    def oom_killed(self) -> bool:
        """Whether the OOM killer struck in this incarnation's cgroup (``memory.events``)."""
        return self.cgroup is not None and self.cgroup.oom_killed()

    def _reap_leader(self) -> bool:
        """Reap the leader if it has exited (no waiting); True once it is reaped."""
        if self.returncode is None and self.popen.poll() is not None:
            self.returncode = self.popen.returncode
            self._close_pidfd()
        return self.returncode is not None

    def _signal_each(
        self, pids: Iterable[int], sig: signal.Signals, held: Mapping[int, int] | None = None
    ) -> None:
        """*sig* to each of *pids*, through a pidfd where there is one (the leader's, or
        *held*): no pid-reuse race."""
        for pid in pids:
            fd = self._pidfd if pid == self.pid else (held or {}).get(pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if fd is not None:
                    signal.pidfd_send_signal(fd, sig)
                else:
                    os.kill(pid, sig)

    def _signal(self, pids: Iterable[int], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)
        self._signal_each(pids, sig)

    def usage(self) -> dict[str, float]:
        """CPU seconds and RSS of the whole tree, for status replies.

        From the cgroup where there is one (``cpu.stat``, ``memory.current``), else psutil.
        """
        if self.cgroup is not None:  # the leader counts before its shim has joined it
            return self.cgroup.usage({self.pid} if self.returncode is None else set())
        cpu = rss = 0.0
        count = 0
        for pid in self.live_members():
            try:
                proc = psutil.Process(pid)
                times = proc.cpu_times()
                cpu += times.user + times.system
                rss += proc.memory_info().rss
                count += 1
            except psutil.Error:
                continue
        return {"cpu_seconds": round(cpu, 3), "rss_bytes": rss, "processes": count}
