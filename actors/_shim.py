"""The exec shim's protocol in Python, for machines where ``make`` built no ``ziggie-cgexec``.

Run as ``python -I -S _shim.py [options] -- PROGRAM ARGV0 [ARG...]`` with the options of
``cgexec.c`` (which documents them). Only the standard library, imported by a fresh
interpreter: it costs an interpreter start per spawn, and is otherwise the same: the
agent never runs outside its cgroup or its confinement (exit 126 if either fails).
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys

_SYS_CREATE, _SYS_ADD_RULE, _SYS_RESTRICT, _SYS_OPENAT2 = 444, 445, 446, 437
_PR_CAPBSET_DROP, _PR_SET_NO_NEW_PRIVS, _PR_CAP_AMBIENT = 24, 38, 47
_FILE_RIGHTS = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 14) | (1 << 15)
_libc = ctypes.CDLL(None, use_errno=True)


class _Failed(Exception):
    pass


def _call(nr: int, *args: object) -> int:
    ret = int(_libc.syscall(nr, *args))
    if ret < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return ret


def _open_rule_path(path: str) -> int:
    """Without following any symlink (the paths are real paths), but ``/proc/self``."""
    if path == "/proc/self":
        return os.open(path, os.O_PATH | os.O_CLOEXEC)
    how = ctypes.create_string_buffer(struct.pack("=QQQ", os.O_PATH | os.O_CLOEXEC, 0, 4))
    try:
        return _call(_SYS_OPENAT2, -100, path.encode(), how, 24)  # AT_FDCWD, RESOLVE_NO_SYMLINKS
    except OSError as exc:
        if exc.errno != 38:  # ENOSYS: before Linux 5.6, the last component only
            raise
        return os.open(path, os.O_PATH | os.O_CLOEXEC | os.O_NOFOLLOW)


def _allow_path(ruleset: int, mask: int, path: str) -> None:
    try:
        fd = _open_rule_path(path)
    except OSError:
        return  # absent, unreachable or a symlink: no rule, so no access
    try:
        for rights in (mask, mask & _FILE_RIGHTS):
            rule = ctypes.create_string_buffer(struct.pack("=Qi", rights, fd))
            try:
                _call(_SYS_ADD_RULE, ruleset, 1, rule, 0)
                return
            except OSError as exc:  # EINVAL: a file, not a directory; retry with file rights
                if exc.errno != 22 or rights == mask & _FILE_RIGHTS:
                    raise _Failed(f"cannot add a rule for {path} ({exc.strerror})") from exc
    finally:
        os.close(fd)


def _drop_capabilities() -> None:
    for cap in range(64):
        _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)  # EINVAL past the last: ignored
    _libc.prctl(_PR_CAP_AMBIENT, 4, 0, 0, 0)  # PR_CAP_AMBIENT_CLEAR_ALL
    header = ctypes.create_string_buffer(struct.pack("=Ii", 0x20080522, 0))
    data = ctypes.create_string_buffer(bytes(24))
    if _libc.capset(header, data) != 0:
        raise _Failed(f"cannot drop capabilities ({os.strerror(ctypes.get_errno())})")


def main(argv: list[str]) -> int:
    procs: str | None = None
    ruleset = -1
    caps = False
    i = 1
    try:
        while i < len(argv) and argv[i] != "--":
            opt = argv[i]
            if opt == "-g":
                procs, i = argv[i + 1], i + 2
            elif opt == "-L":
                fs, net, scoped = (int(x, 16) for x in argv[i + 1 : i + 4])
                size = 24 if scoped else 16 if net else 8
                attr = ctypes.create_string_buffer(struct.pack("=QQQ", fs, net, scoped))
                ruleset = _call(_SYS_CREATE, attr, size, 0)
                i += 4
            elif opt == "-r" and ruleset >= 0:
                _allow_path(ruleset, int(argv[i + 1], 16), argv[i + 2])
                i += 3
            elif opt == "-p" and ruleset >= 0:
                rule = struct.pack("=QQ", int(argv[i + 1], 16), int(argv[i + 2]))
                _call(_SYS_ADD_RULE, ruleset, 2, ctypes.create_string_buffer(rule), 0)
                i += 3
            elif opt == "-c":
                caps, i = True, i + 1
            else:
                raise _Failed(f"bad option {opt!r}")
        if i + 2 >= len(argv):
            raise _Failed("usage: [options] -- PROGRAM ARGV0 [ARG...]")
        if procs is not None:
            with open(procs, "w") as f:
                f.write(f"{os.getpid()}\n")
        if caps:
            _drop_capabilities()
        if ruleset >= 0:
            if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                raise _Failed("cannot set no_new_privs")
            _call(_SYS_RESTRICT, ruleset, 0)
            os.close(ruleset)
    except (OSError, ValueError, IndexError, _Failed) as exc:
        sys.stderr.write(f"ziggie shim: cannot confine: {exc}\n")
        return 126
    try:
        os.execve(argv[i + 1], argv[i + 2 :], os.environ)
    except OSError as exc:
        sys.stderr.write(f"ziggie shim: cannot execute {argv[i + 1]}: {exc.strerror}\n")
        return 127 if isinstance(exc, FileNotFoundError) else 126
    return 126  # pragma: no cover - execve does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv))
