"""An agent's spec compiled into the confinement the kernel enforces on it.

What an agent may touch is its spec's ``permissions`` plus a documented **baseline** that
lets ordinary programs start (:data:`BASELINE_READ` and friends), and nothing else:

- ``read`` and ``write`` patterns become Landlock rules on directories (write implies
  read). Landlock allows a directory and everything beneath it, so a pattern is enforced
  on its longest literal directory: exact for ``/srv/data`` and ``/srv/data/**``, widened
  (and said so in the report) for ``/srv/data/*.md``. A pattern whose directory is ``/``,
  holds the coordinator's home or lies in it, or reaches cgroup files, is refused.
- ``execute`` names programs (found on the coordinator's PATH, as ``command`` is) or
  absolute paths. Only those files, compared by real path, and the agent's own program
  can be executed, plus what they need to start: a script's interpreter, an ELF
  program's dynamic loader; their install prefix (``<prefix>/bin/<program>``) is readable.
- Each agent has a private directory (``HOME``, ``TMPDIR`` and its own request queue),
  its definition file (read-only), and its own ``/proc/<pid>``.
- Signals and abstract UNIX sockets stay within its own processes; a root agent holds no
  capability; TCP is restricted to ``permissions.network`` when the spec gives one.

Every path is passed to the exec shim as a real path, opened there without following
symlinks: a link swapped in after this check grants nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from actors import READ as R
from actors import (
    TCP_BIND,
    TCP_CONNECT,
    Access,
    Confinement,
    ConfinementError,
    cgroup2_mount,
    landlock_abi,
)
from actors import WRITE as W
from supervisor.protocol import AgentSpec

from ._globs import BadPattern, normalize
from ._programs import beneath, executables, install_prefixes
from ._replies import AgentRefused

X: Final = int(Access.EXECUTE | Access.READ_FILE)

#: Read-only system paths every agent may read: programs, libraries, the loader's cache,
#: and the few ``/etc`` files ordinary programs read at start (users and groups by name,
#: time zone, name resolution, TLS roots, locale). Never all of ``/etc``.
BASELINE_READ: Final = (
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/bin",
    "/sbin",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/resolv.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/mime.types",
    "/etc/os-release",
    "/etc/debian_version",
    "/etc/locale.alias",
    "/etc/default/locale",
    "/etc/inputrc",
    "/etc/terminfo",
    "/dev/random",
    "/dev/urandom",
    "/proc/self",
    "/proc/cpuinfo",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/loadavg",
    "/proc/uptime",
    "/proc/version",
    "/proc/filesystems",
    "/proc/sys/kernel/osrelease",
    "/proc/sys/kernel/ostype",
    "/proc/sys/kernel/random/uuid",
    "/proc/sys/vm/overcommit_memory",
    "/sys/devices/system/cpu",
)
#: Device files every agent may read and write.
BASELINE_WRITE: Final = ("/dev/null", "/dev/zero", "/dev/full")
#: Where a pattern may never reach for writing: the kernel's own interfaces.
_NO_WRITE: Final = ("/proc", "/sys", "/dev")


@dataclass(frozen=True, slots=True)
class AgentPaths:
    """The files of one agent that its confinement grants: its own, and its definition."""

    private: Path  #: read-write: HOME, TMPDIR and its own queue live here
    definition: Path  #: read-only


def literal_root(pattern: str, cwd: str) -> tuple[str, bool]:
    """The directory Landlock enforces *pattern* on, and whether that is exact.

    ``/srv/data`` and ``/srv/data/**`` are exact (the directory, everything beneath it);
    ``/srv/data/*.md`` widens to ``/srv/data``. A relative pattern is taken from *cwd*.
    """
    path = normalize(pattern if pattern.startswith("/") else f"{cwd.rstrip('/')}/{pattern}")
    cut = next((i for i, ch in enumerate(path) if ch in "*?["), None)
    if cut is None:
        return path.rstrip("/") or "/", True
    head, exact = path[:cut], False
    if path[cut:] == "**" and head.endswith("/"):
        exact = True
    return head.rsplit("/", 1)[0] or "/", exact


@dataclass(slots=True)
class _Rules:
    """Rules being gathered: real path -> rights (merged), in a stable order."""

    paths: dict[str, int]
    report: dict[str, Any]
    #: The agent's own files: kept even before they exist (written once it is accepted).
    own: set[str] = field(default_factory=set)

    def add(self, path: str, rights: int) -> None:
        # Real paths: the shim opens them without following symlinks. "/proc/self" is
        # the exception, and means the agent's own process directory there.
        if path != "/proc/self":
            path = os.path.realpath(path)
        self.paths[path] = self.paths.get(path, 0) | rights

    def minimal(self) -> tuple[tuple[str, int], ...]:
        """The rules that add something: a path that exists, not already granted the
        same rights by a rule on a directory above it. Fewer rules, fewer syscalls at
        every spawn (the baseline names links into /usr and files that may be absent)."""
        kept = []
        for path, rights in self.paths.items():
            if path not in self.own and path != "/proc/self" and not os.path.exists(path):
                continue
            covered = any(
                other != path and beneath(path, other) and rights & ~theirs == 0
                for other, theirs in self.paths.items()
            )
            if not covered:
                kept.append((path, rights))
        return tuple(kept)


def compile_confinement(
    spec: AgentSpec,
    argv: list[str],
    *,
    home: Path,
    paths: AgentPaths,
    api_port: int | None = None,
    best_effort: bool = False,
) -> Confinement | None:
    """The confinement of *spec* (run as *argv*), or None where the kernel cannot confine
    and *best_effort* allows running unconfined. Refusals are :class:`AgentRefused`
    naming the field."""
    rules = _Rules({}, {"widened": {}, "missing": []})
    cwd = spec.context.working_directory
    forbidden = os.path.realpath(home)
    perms = spec.context.permissions
    for name, rights in (("read", R), ("write", W)):
        for pattern in getattr(perms, name):
            _pattern_rule(rules, f"context.permissions.{name}", pattern, rights, cwd, forbidden)
    for given, real in executables(spec, argv):
        rules.add(real, X)
        for prefix in install_prefixes(given, forbidden):
            rules.add(prefix, R)
    for package in _ziggie_paths(forbidden):
        rules.add(*package)
    for path in BASELINE_READ:
        rules.add(path, R)
    for path in BASELINE_WRITE:
        rules.add(path, R | Access.WRITE_FILE)
    rules.add(str(paths.private), W)
    rules.add(str(paths.definition), int(Access.READ_FILE))
    rules.own |= {os.path.realpath(paths.private), os.path.realpath(paths.definition)}
    tcp = _tcp(spec, api_port)
    confinement = Confinement(
        paths=rules.minimal(),
        tcp=tcp,
        scoped=True,
        drop_capabilities=True,
        report=rules.report,
    )
    try:
        abi = confinement.check()
    except ConfinementError as exc:
        if best_effort:
            return None
        raise AgentRefused(
            f"confinement: {exc}; the agent was not started (set confinement ="
            ' "best_effort" to run agents unconfined where the kernel cannot confine)'
        ) from None
    rules.report["mechanism"] = f"landlock abi {abi}"
    rules.report["rules"] = len(confinement.paths) + len(tcp or ())
    return confinement


def _pattern_rule(
    rules: _Rules, field: str, pattern: str, rights: int, cwd: str, home: str
) -> None:
    try:
        root, exact = literal_root(pattern, cwd)
    except BadPattern as exc:
        raise AgentRefused(f"{field}: {exc}") from None
    real = os.path.realpath(root)
    where = f"{field}: {pattern!r} (enforced on {real!r})"
    if real == "/":
        raise AgentRefused(f"{where} would allow the whole filesystem")
    if beneath(real, home) or beneath(home, real):
        raise AgentRefused(
            f"{where} reaches the coordinator's home {home!r}, which no agent may touch"
            " (serve from a home outside the directories agents use: --home)"
        )
    cgroups = cgroup2_mount()
    if cgroups is not None and (beneath(real, cgroups) or beneath(cgroups, real)):
        raise AgentRefused(f"{where} reaches cgroup files, which no agent may touch")
    if rights & Access.WRITE_FILE and any(beneath(real, k) for k in _NO_WRITE):
        raise AgentRefused(f"{where}: the kernel's interfaces cannot be written by an agent")
    if not os.path.exists(real):
        rules.report["missing"].append(pattern)  # nothing to allow until it exists
        return
    if not exact:
        rules.report["widened"][pattern] = real
    rules.add(real, rights)


def _ziggie_paths(home: str) -> list[tuple[str, int]]:
    """ziggie's own packages, so an agent can use its client (read-only). Listing the
    import path they sit in is needed too (Python lists it to find them), unless that
    would reach the home."""
    out: list[tuple[str, int]] = []
    import actors
    import supervisor

    for module in (supervisor, actors):
        package = os.path.realpath(os.path.dirname(module.__file__ or ""))
        out.append((package, R))
        parent = os.path.dirname(package)
        if not beneath(home, parent):
            out.append((parent, int(Access.READ_DIR)))
    return out


def _tcp(spec: AgentSpec, api_port: int | None) -> tuple[tuple[int, int], ...] | None:
    network = spec.context.permissions.network
    if network is None:
        return None
    ports: dict[int, int] = {}
    for port in network.connect:
        ports[port] = ports.get(port, 0) | TCP_CONNECT
    for port in network.bind:
        ports[port] = ports.get(port, 0) | TCP_BIND
    if api_port is not None:  # its own way to the coordinator's API
        ports[api_port] = ports.get(api_port, 0) | TCP_CONNECT
    return tuple(sorted(ports.items()))


def mechanism(best_effort: bool) -> str:
    """How this coordinator confines agents, for ``coordinator_ready`` and status."""
    abi, needed = landlock_abi(), Confinement(paths=()).abi_needed
    if abi >= needed:
        return f"landlock abi {abi}"
    why = f"Landlock ABI {abi} (signal scoping needs {needed})" if abi else "no Landlock"
    if best_effort:
        return f"none: {why}; best_effort runs agents unconfined"
    return f"unavailable: {why}; deploys are refused (confinement = best_effort runs them)"


def confinement_summary(confinement: Confinement | None, reason: str = "") -> dict[str, Any]:
    """What status, events and the deploy answer say about an agent's confinement."""
    if confinement is None:
        return {"mechanism": "none", "reason": reason or "best_effort: the kernel cannot confine"}
    return dict(confinement.report)


def agent_environment(inherited: Mapping[str, str], allowed: Iterable[str] = ()) -> dict[str, str]:
    """The coordinator's environment, reduced to what an agent inherits: a documented
    allowlist (:data:`INHERITED_ENV`, ``LC_*``) plus the names the operator allows."""
    names = set(INHERITED_ENV) | set(allowed)
    return {k: v for k, v in inherited.items() if k in names or k.startswith("LC_")}


#: What an agent inherits from the coordinator's environment; ``HOME`` and ``TMPDIR``
#: are its own, ``ZIGGIE_*`` are set for it, the rest comes from its spec's ``env``.
INHERITED_ENV: Final = ("PATH", "LANG", "LANGUAGE", "TZ", "TERM", "COLORTERM", "NO_COLOR")
