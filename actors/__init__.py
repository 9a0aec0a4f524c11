"""What runs inside a supervised node: in-process actors and OS-process agents.

Built only on the kernel's public API (:mod:`supervisor`). Spec builders share one
naming scheme: ``*_spec`` returns a :class:`supervisor.ChildSpec`.
"""

from ._cgroup import (
    CgroupError,
    cgroup2_mount,
    cgroup_controllers,
    stop_mechanism,
)
from ._confine import (
    READ,
    TCP_BIND,
    TCP_CONNECT,
    WRITE,
    Access,
    Confinement,
    ConfinementError,
    landlock_abi,
)
from ._exec import spawn_mechanism
from ._function import function_spec
from ._loose import log_path_for, stop_processes
from ._mailbox import Actor, ActorRef, Mailbox, actor_spec
from ._process import ProcessExit, ProcessHandle, SpawnError, process_spec
from ._procfs import Marked, has_marker, marked_processes, process_start_time
from ._proctree import StopReport
from ._subreaper import become_subreaper, is_subreaper
from ._watchdog import TOKEN_VAR, detach, in_family, new_token, token, watch_token

__all__ = [
    "READ",
    "TCP_BIND",
    "TCP_CONNECT",
    "TOKEN_VAR",
    "WRITE",
    "Access",
    "Actor",
    "ActorRef",
    "CgroupError",
    "Confinement",
    "ConfinementError",
    "Mailbox",
    "Marked",
    "ProcessExit",
    "ProcessHandle",
    "SpawnError",
    "StopReport",
    "actor_spec",
    "become_subreaper",
    "cgroup2_mount",
    "cgroup_controllers",
    "detach",
    "function_spec",
    "has_marker",
    "in_family",
    "is_subreaper",
    "landlock_abi",
    "log_path_for",
    "marked_processes",
    "new_token",
    "process_spec",
    "process_start_time",
    "spawn_mechanism",
    "stop_mechanism",
    "stop_processes",
    "token",
    "watch_token",
]
