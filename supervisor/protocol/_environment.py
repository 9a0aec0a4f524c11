"""Which environment variables a spec's ``env`` may set.

An agent's environment is built by the coordinator: an allowlist of its own, the
agent's ``ZIGGIE_*``, and the spec's ``env``. That last part is written by whoever
deploys, an agent included, so it may not name a variable that chooses which program or
library code runs (a ``PATH`` of one's own picks what "git" is), that runs code when an
interpreter or a tool starts (``PYTHONWARNINGS``, ``NODE_OPTIONS``, ``BASH_ENV``,
``BROWSER``, ``GIT_*``), or that the runtime sets itself (``HOME``, ``TMPDIR``,
``ZIGGIE_*``, and ``TRACEPARENT``/``TRACESTATE``: a spec cannot put an agent in another
trace).
"""

from __future__ import annotations

import re
from typing import Final

_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")

FORBIDDEN_ENV: Final = frozenset(
    {
        # which program or library is loaded
        "PATH",
        "GCONV_PATH",
        "GLIBC_TUNABLES",
        "LOCPATH",
        "NLSPATH",
        "HOSTALIASES",
        "RESOLV_HOST_CONF",
        "MALLOC_CHECK_",
        # code an interpreter or a shell runs at start
        "PERL5LIB",
        "PERL5OPT",
        "PERL5DB",
        "PERLLIB",
        "RUBYLIB",
        "RUBYOPT",
        "NODE_OPTIONS",
        "NODE_PATH",
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "JDK_JAVA_OPTIONS",
        "CLASSPATH",
        "BASH_ENV",
        "ENV",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "PROMPT_COMMAND",
        "IFS",
        # programs a tool runs on the user's behalf
        "BROWSER",
        "EDITOR",
        "VISUAL",
        "PAGER",
        "MANPAGER",
        "LESSOPEN",
        "LESSCLOSE",
        "SSH_ASKPASS",
        "SUDO_ASKPASS",
        # the agent's own, set by the runtime: its home, and its place in the trace
        "HOME",
        "TMPDIR",
        "TRACEPARENT",
        "TRACESTATE",
    }
)
#: Prefixes of the same kinds: the dynamic loader's (glibc, macOS), exported shell
#: functions, git's (``GIT_SSH_COMMAND``, ``GIT_EXEC_PATH``, ...), and the runtime's own
#: markers, which the no-orphan sweep and nesting trust.
FORBIDDEN_ENV_PREFIXES: Final = ("LD_", "DYLD_", "BASH_FUNC_", "GIT_", "ZIGGIE_")
#: ``PYTHON*`` variables are refused (``PYTHONWARNINGS`` and ``PYTHONBREAKPOINT`` import
#: code, ``PYTHONPATH`` picks it) but these, which only tune the interpreter.
PYTHON_TUNING: Final = frozenset(
    {
        "PYTHONUNBUFFERED",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONIOENCODING",
        "PYTHONUTF8",
        "PYTHONHASHSEED",
        "PYTHONOPTIMIZE",
        "PYTHONFAULTHANDLER",
    }
)


def check_env_name(name: str) -> None:
    """Raise ``ValueError`` naming *name* if a spec may not set it."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"invalid environment variable name {name!r}")
    if name.startswith("ZIGGIE_"):
        raise ValueError(f"env: {name!r}: ZIGGIE_* variables are set by the runtime")
    if (
        name in FORBIDDEN_ENV
        or name.startswith(FORBIDDEN_ENV_PREFIXES)
        or (name.startswith("PYTHON") and name not in PYTHON_TUNING)
    ):
        raise ValueError(
            f"env: {name!r} may not be set by a spec: it chooses which program or library"
            " code runs, runs code at start, or is the runtime's own"
        )
