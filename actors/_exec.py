"""How an agent's program is started: directly, or through the exec shim.

The shim runs between fork and exec (``cgexec.c`` documents its protocol): it joins the
agent's cgroup and applies its confinement, then execs the agent with its argv untouched.
``preexec_fn`` could do the same from Python, but forces CPython to fork instead of vfork
(12x slower spawns, measured) and runs Python code in a forked child. The shim is the
static ``ziggie-cgexec`` built by ``make``; without it, the same protocol in Python
(:mod:`actors._shim`, an interpreter start per spawn) confines, and a cgroup alone is
joined through ``/bin/sh``.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from . import _watchdog
from ._cgroup import AgentCgroup, CgroupError, agent_cgroup, runtime_cgroups
from ._confine import Confinement

#: Where ``make`` builds ``cgexec.c``; ``ZIGGIE_CGROUP_SHIM`` may name another build, or
#: ``sh`` for the fallbacks.
CGEXEC: Final = Path(__file__).with_name("_bin") / "ziggie-cgexec"
#: The Python implementation of the protocol.
PYTHON_SHIM: Final = str(Path(__file__).with_name("_shim.py"))
#: The shell shim (cgroups only): ``$0`` is the cgroup's ``cgroup.procs``, ``"$@"`` the
#: agent's argv. The agent's words are arguments, never part of the script.
SH_SHIM: Final = 'echo $$ > "$0" && exec "$@"'


def exec_shim() -> str | None:
    """The built ``ziggie-cgexec``, or None where the fallbacks must serve."""
    chosen = os.environ.get("ZIGGIE_CGROUP_SHIM", "auto")
    if chosen == "sh":
        return None
    path = CGEXEC if chosen == "auto" else Path(chosen)
    return str(path) if os.access(path, os.X_OK) and path.is_file() else None


def shim_argv(
    program: str,
    argv: list[str],
    *,
    cgroup_procs: str | None = None,
    confinement: Confinement | None = None,
    abi: int = 0,
    shim: str | None = "auto",
) -> list[str]:
    """*argv* (whose executable is *program*) started so that it first joins the cgroup
    of *cgroup_procs* and enters *confinement* (enforced on Landlock ABI *abi*).

    *shim* is a ``ziggie-cgexec`` to use, ``"auto"`` for :func:`exec_shim`, or None for
    the fallbacks (Python when confining, else ``/bin/sh``). Nothing to do: *argv* itself.
    """
    if cgroup_procs is None and confinement is None:
        return argv
    if shim == "auto":
        shim = exec_shim()
    if shim is None and confinement is None:
        assert cgroup_procs is not None
        return ["/bin/sh", "-c", SH_SHIM, cgroup_procs, *argv]
    options = ["-g", cgroup_procs] if cgroup_procs else []
    if confinement is not None:
        options += confinement.shim_options(abi)
    head = [shim] if shim else [sys.executable, "-I", "-S", PYTHON_SHIM]
    return [*head, *options, "--", program, *argv]


def check_program(program: str, cwd: str | os.PathLike[str], env: Mapping[bytes, bytes]) -> str:
    """The executable *program* names, found as Popen would; FileNotFoundError if none.

    A shim reports a missing program only as exit 127: checked here, a start is refused
    with a clear error instead of entering a crash loop.
    """
    if os.sep in program:
        path = program if os.path.isabs(program) else os.path.join(os.fspath(cwd), program)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
        return program  # relative to cwd, which the shim runs in, as Popen would
    # As Popen (os.get_exec_path): the agent's PATH, else the default; a relative entry
    # is relative to the directory the agent starts in.
    search = os.fsdecode(env.get(b"PATH", os.defpath.encode()))
    here = os.fspath(cwd)
    dirs = [d if os.path.isabs(d) else os.path.join(here, d) for d in search.split(os.pathsep)]
    found = shutil.which(program, path=os.pathsep.join(dirs))
    if found is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
    return os.path.abspath(found)  # checked from here: the shim runs it from the agent's cwd


def prepare(
    agent_id: str,
    argv: list[str],
    cwd: str | os.PathLike[str],
    env: Mapping[bytes, bytes],
    limits: Mapping[str, str] | None,
    confinement: Confinement | None,
) -> tuple[list[str], AgentCgroup | None]:
    """The argv that starts *argv* in a new cgroup (where the host allows; limited by
    *limits*) and in *confinement*, and that cgroup. A kernel that cannot confine, a
    limit without its controller, or a missing program refuses the start before anything
    is made (or the cgroup made is removed again)."""
    abi = confinement.check() if confinement is not None else 0
    cgroup = agent_cgroup(agent_id)
    if cgroup is None and limits:
        raise CgroupError(
            f"limits {sorted(limits)}: no usable cgroup v2 hierarchy here"
            " (ZIGGIE_CGROUPS=off or none delegated)"
        )
    if cgroup is None and confinement is None:
        return argv, None
    try:
        if cgroup is not None:
            cgroup.limit(dict(limits or {}))
        program = check_program(argv[0], cwd, env)
    except OSError:
        if cgroup is not None:
            cgroup.remove()
        raise
    procs = cgroup.procs_file if cgroup is not None else None
    return shim_argv(program, argv, cgroup_procs=procs, confinement=confinement, abi=abi), cgroup


def spawn_mechanism() -> str:
    """How an agent joins its cgroup before exec: ``ziggie-cgexec``, ``sh shim``, or
    ``direct`` (no cgroups here)."""
    if runtime_cgroups(_watchdog.token()) is None:
        return "direct"
    return "sh shim" if exec_shim() is None else "ziggie-cgexec"
