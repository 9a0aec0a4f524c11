"""What runs inside a supervised node: in-process actors and OS-process agents."""

from ._agents import (
    AgentHome,
    AgentRefused,
    agent_child_spec,
    check_deployable,
    definition_text,
    read_definition,
)
from ._function import function_actor
from ._mailbox import Actor, ActorRef, Mailbox, actor
from ._process import ProcessExit, ProcessHandle, SpawnError, process_spec
from ._proctree import (
    StopReport,
    become_subreaper,
    find_marked,
    has_marker,
    process_start_time,
    reap_orphans,
    stop_strays,
)
from ._runners import RUNNERS, Runner, claude_runner, demo_runner, register_runner, resolve_argv

__all__ = [
    "RUNNERS",
    "Actor",
    "ActorRef",
    "AgentHome",
    "AgentRefused",
    "Mailbox",
    "ProcessExit",
    "ProcessHandle",
    "Runner",
    "SpawnError",
    "StopReport",
    "actor",
    "agent_child_spec",
    "become_subreaper",
    "check_deployable",
    "claude_runner",
    "definition_text",
    "demo_runner",
    "find_marked",
    "function_actor",
    "has_marker",
    "process_spec",
    "process_start_time",
    "read_definition",
    "reap_orphans",
    "register_runner",
    "resolve_argv",
    "stop_strays",
]
