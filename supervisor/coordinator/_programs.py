"""What a program needs to run: the files an agent may execute, by real path.

An agent may execute its own program and the programs its spec lists, compared by real
path, never by name; and what each needs to start: a script's ``#!`` interpreter (and the
program ``env`` would run), an ELF program's dynamic loader (``PT_INTERP``). Its install
prefix (``<prefix>/bin/<program>``) is readable, so its libraries and modules load.
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import struct
from typing import Any

from supervisor.protocol import AgentSpec

from ._replies import AgentRefused


def beneath(path: str, root: str) -> bool:
    """True if *path* is *root* or lies under it (both normalized, absolute)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


@functools.cache
def _user_homes() -> frozenset[str]:
    """Home directories of this machine's users: never an install prefix (``~/bin``)."""
    try:
        return frozenset(os.path.realpath(p.pw_dir) for p in pwd.getpwall() if p.pw_dir)
    except OSError:  # pragma: no cover - no passwd database
        return frozenset()


def executables(spec: AgentSpec, argv: list[str]) -> list[tuple[str, str]]:
    """What the agent may execute, as (path as named, real path): its program, its
    ``execute`` entries, and what each needs to start (interpreter, dynamic loader)."""
    wanted: list[str] = [argv[0]]
    for entry in spec.context.permissions.execute:
        if os.path.isabs(entry):
            wanted.append(entry)
        elif "/" in entry:
            raise AgentRefused(
                f"context.permissions.execute: {entry!r}: a program name or an absolute path"
            )
        else:
            found = shutil.which(entry)
            if found is None:
                raise AgentRefused(
                    f"context.permissions.execute: {entry!r} not found on the coordinator's PATH"
                )
            wanted.append(found)
    out: list[tuple[str, str]] = []
    for program in wanted:
        for pair in _with_interpreters(program):
            if pair not in out:
                out.append(pair)
    return out


def _with_interpreters(program: str, depth: int = 0) -> list[tuple[str, str]]:
    real = os.path.realpath(program)
    if not os.path.isfile(real):
        raise AgentRefused(f"context.permissions.execute: {program!r} is not a file")
    found = [(program, real)]
    if depth > 3:  # an interpreter's interpreter's interpreter: enough
        return found
    for interpreter in _interpreters_of(real):
        found += _with_interpreters(interpreter, depth + 1)
    return found


def _interpreters_of(path: str) -> list[str]:
    """A script's ``#!`` interpreter (and ``env``'s program), or an ELF's loader."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
            if head.startswith(b"#!"):
                words = head[2:].split(b"\n", 1)[0].decode(errors="replace").split()
                if not words:
                    return []
                out = [words[0]]
                if os.path.basename(words[0]) == "env":
                    names = [w for w in words[1:] if not w.startswith("-")]
                    found = shutil.which(names[0]) if names else None
                    out += [found] if found else []
                return out
            if head.startswith(b"\x7fELF"):
                return _elf_interpreter(f, head)
    except OSError:
        pass
    return []


def _elf_interpreter(f: Any, head: bytes) -> list[str]:
    """The PT_INTERP of a 64- or 32-bit little- or big-endian ELF file."""
    wide, order = head[4] == 2, "<" if head[5] == 1 else ">"
    if wide:
        phoff, phentsize, phnum = (
            struct.unpack_from(order + "Q", head, 32)[0],
            *struct.unpack_from(order + "HH", head, 54),
        )
    else:
        phoff, phentsize, phnum = (
            struct.unpack_from(order + "I", head, 28)[0],
            *struct.unpack_from(order + "HH", head, 42),
        )
    for i in range(min(phnum, 64)):
        f.seek(phoff + i * phentsize)
        entry = f.read(phentsize)
        if len(entry) < phentsize or struct.unpack_from(order + "I", entry, 0)[0] != 3:
            continue  # not PT_INTERP
        if wide:
            offset, size = (
                struct.unpack_from(order + "Q", entry, 8)[0],
                struct.unpack_from(order + "Q", entry, 32)[0],
            )
        else:
            offset, size = (
                struct.unpack_from(order + "I", entry, 4)[0],
                struct.unpack_from(order + "I", entry, 16)[0],
            )
        f.seek(offset)
        return [f.read(min(size, 4096)).split(b"\0", 1)[0].decode(errors="replace")]
    return []


def install_prefixes(program: str, home: str) -> list[str]:
    """The install prefixes of *program* (``<prefix>/bin/<program>``), as named and as
    its real path (a virtual environment's and its base interpreter's): never ``/``, a
    user's home directory, or one holding the coordinator's home."""
    out = []
    for path in {program, os.path.realpath(program)}:
        directory = os.path.dirname(path)
        if os.path.basename(directory) not in ("bin", "sbin"):
            continue
        prefix = os.path.dirname(directory)
        if prefix == "/" or prefix in _user_homes() or beneath(home, prefix):
            continue
        out.append(prefix)
    return out
