"""Kernel confinement of one process tree: Landlock rules, no capabilities, applied before exec.

A :class:`Confinement` is plain data: paths with the rights allowed beneath each, the TCP
ports allowed (or None: the network is not restricted), and whether signals and abstract
UNIX sockets are scoped to the agent's own domain. The exec shim (``ziggie-cgexec``, or
its Python twin :mod:`actors._shim`) applies it between fork and exec, after joining the
cgroup: the agent's first instruction already runs confined, and so does everything it
forks. Nothing is inherited from a parent agent's domain (the coordinator spawns every
agent itself), so each rule set must be complete: the coordinator compiles it.

Every filesystem right this kernel's Landlock ABI knows is *handled*: what no rule allows
is denied, never left out of the check.
"""

from __future__ import annotations

import ctypes
import enum
import functools
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from supervisor import ZiggieError


class Access(enum.IntFlag):
    """Landlock's filesystem rights (``LANDLOCK_ACCESS_FS_*``)."""

    EXECUTE = 1 << 0
    WRITE_FILE = 1 << 1
    READ_FILE = 1 << 2
    READ_DIR = 1 << 3
    REMOVE_DIR = 1 << 4
    REMOVE_FILE = 1 << 5
    MAKE_CHAR = 1 << 6
    MAKE_DIR = 1 << 7
    MAKE_REG = 1 << 8
    MAKE_SOCK = 1 << 9
    MAKE_FIFO = 1 << 10
    MAKE_BLOCK = 1 << 11
    MAKE_SYM = 1 << 12
    REFER = 1 << 13  # ABI 2: link or rename across directories
    TRUNCATE = 1 << 14  # ABI 3
    IOCTL_DEV = 1 << 15  # ABI 5


#: Read a file or list a directory.
READ: Final = Access.READ_FILE | Access.READ_DIR
#: Read, and change within: create, write, truncate, remove, rename (not execute, not
#: device nodes).
WRITE: Final = (
    READ
    | Access.WRITE_FILE
    | Access.REMOVE_DIR
    | Access.REMOVE_FILE
    | Access.MAKE_DIR
    | Access.MAKE_REG
    | Access.MAKE_SOCK
    | Access.MAKE_FIFO
    | Access.MAKE_SYM
    | Access.REFER
    | Access.TRUNCATE
)

#: The filesystem rights each ABI handles; a right this kernel does not know cannot be
#: denied by it (REFER before ABI 2 is always denied, which is stricter).
_FS_BY_ABI: Final = {
    1: (1 << 13) - 1,
    2: (1 << 14) - 1,
    3: (1 << 15) - 1,
    4: (1 << 15) - 1,
    5: (1 << 16) - 1,
}
TCP_BIND: Final = 1
TCP_CONNECT: Final = 2
SCOPE_ABSTRACT_UNIX_SOCKET: Final = 1
SCOPE_SIGNAL: Final = 2

#: The Landlock ABI each feature needs.
ABI_TCP: Final = 4
ABI_SCOPE: Final = 6

_SYS_LANDLOCK_CREATE_RULESET: Final = 444  # the same number on every architecture
_CREATE_RULESET_VERSION: Final = 1


class ConfinementError(ZiggieError):
    """The kernel cannot confine as asked (no Landlock, or an ABI too old for a rule)."""


@functools.cache
def landlock_abi() -> int:
    """This kernel's Landlock ABI version (0: none), asked of the syscall, never a file."""
    if sys.platform != "linux" or os.environ.get("ZIGGIE_LANDLOCK") == "off":
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    version = libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION)
    return max(int(version), 0)


@dataclass(frozen=True, slots=True)
class Confinement:
    """What one agent's processes may do, as the kernel will enforce it.

    *paths* are ``(path, rights)``: *rights* beneath *path* (a directory and everything in
    it, or one file). A path that does not exist when the agent starts grants nothing.
    ``"/proc/self"`` is the agent's own process directory (its leader's). *tcp* is None
    for an unrestricted network, else ``(port, TCP_BIND | TCP_CONNECT)`` pairs: every
    other TCP bind and connect is refused. *scoped* keeps signals and abstract UNIX
    sockets inside the agent's own processes. *drop_capabilities* leaves a root agent
    with none, even after exec (``no_new_privs`` is always set).
    """

    paths: tuple[tuple[str, int], ...]
    tcp: tuple[tuple[int, int], ...] | None = None
    scoped: bool = True
    drop_capabilities: bool = True
    #: What its maker wants said of it in the ``spawned`` event (e.g. widened patterns).
    report: Mapping[str, object] = field(default_factory=dict, compare=False)

    @property
    def abi_needed(self) -> int:
        """The oldest Landlock ABI that enforces every rule of this confinement."""
        if self.scoped:
            return ABI_SCOPE
        if self.tcp is not None:
            return ABI_TCP
        return 1

    def check(self, abi: int | None = None) -> int:
        """The ABI in use, or :class:`ConfinementError` if this kernel cannot enforce it."""
        have = landlock_abi() if abi is None else abi
        if have == 0:
            raise ConfinementError("Landlock is not available in this kernel")
        if have < self.abi_needed:
            raise ConfinementError(
                f"Landlock ABI {have} cannot enforce this confinement (needs {self.abi_needed}:"
                f" {'signal scoping' if self.scoped else 'TCP rules'})"
            )
        return have

    def shim_options(self, abi: int) -> list[str]:
        """The shim's options (see ``cgexec.c``) that apply this confinement on *abi*."""
        return list(_shim_options(self, abi))

    def describe(self) -> dict[str, object]:
        """For status and events: the rules in words."""
        return {
            "paths": [[path, rights_text(rights)] for path, rights in self.paths],
            "tcp": None if self.tcp is None else [[port, _tcp_text(r)] for port, r in self.tcp],
            "scoped": self.scoped,
        }


@functools.lru_cache(maxsize=1024)
def _shim_options(confinement: Confinement, abi: int) -> tuple[str, ...]:
    # Cached: an agent's rules are fixed at deploy, and its restarts are a hot path.
    fs = _FS_BY_ABI.get(abi, _FS_BY_ABI[5])
    net = (TCP_BIND | TCP_CONNECT) if confinement.tcp is not None else 0
    scoped = (SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL) if confinement.scoped else 0
    out = ["-L", f"{fs:x}", f"{net:x}", f"{scoped:x}"]
    for path, rights in confinement.paths:
        out += ["-r", f"{rights & fs:x}", path]
    for port, rights in confinement.tcp or ():
        out += ["-p", f"{rights:x}", str(port)]
    if confinement.drop_capabilities:
        out.append("-c")
    return tuple(out)


def rights_text(rights: int) -> str:
    """``rx``-style letters: r read, w write (create, remove, rename), x execute."""
    letters = ""
    if rights & (Access.READ_FILE | Access.READ_DIR):
        letters += "r"
    if rights & Access.WRITE_FILE:
        letters += "w"
    if rights & Access.EXECUTE:
        letters += "x"
    return letters or "-"


def _tcp_text(rights: int) -> str:
    return "+".join(n for bit, n in ((TCP_BIND, "bind"), (TCP_CONNECT, "connect")) if rights & bit)
