"""The house's layers, read from the source: they cannot regress unnoticed.

kernel (top level of ``supervisor/``) <- actors <- protocol <- client <- coordinator <- cli.
Each layer imports only the ones below it; the kernel imports neither pydantic, nor
actors, nor any subpackage. Public names are pinned, so API changes are deliberate.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import actors
import supervisor
import supervisor.client
import supervisor.coordinator
import supervisor.protocol

ROOT = Path(__file__).resolve().parent.parent

#: Each layer, and the packages of ours it may import (besides itself).
LAYERS: dict[str, set[str]] = {
    "kernel": set(),
    "actors": {"kernel"},
    "protocol": {"kernel"},
    "client": {"kernel", "protocol"},
    "coordinator": {"kernel", "actors", "protocol", "client"},
    "agents": {"kernel", "protocol", "client"},
    "cli": {"kernel", "protocol", "client", "coordinator"},
}
SUBPACKAGES = ("protocol", "client", "coordinator", "agents", "cli")


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "actors":
        return "actors"
    if parts[0] != "supervisor":
        return None
    if len(parts) > 1 and parts[1] in SUBPACKAGES:
        return parts[1]
    return "kernel"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """Every module *path* imports at run time (``if TYPE_CHECKING:`` blocks excluded)."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package[: len(package) - (child.level - 1)]
                    module = ".".join(base + ([child.module] if child.module else []))
                else:
                    module = child.module or ""
                found.add(module)
                found.update(f"{module}.{alias.name}" for alias in child.names)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def sources(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", sources("supervisor", "actors"), ids=module_name)
def test_each_module_imports_only_layers_below_it(path: Path) -> None:
    mine = layer_of(module_name(path))
    assert mine is not None
    allowed = LAYERS[mine] | {mine}
    for target in imports(path):
        theirs = layer_of(target)
        if theirs is None:
            continue
        # The package face hands on the client and the wire models, lazily: allowed.
        if module_name(path) == "supervisor" and theirs in ("client", "protocol"):
            continue
        # "from supervisor import client" names a subpackage through the face.
        if target in ("supervisor", "actors"):
            theirs = "kernel" if target == "supervisor" else "actors"
        assert theirs in allowed, f"{module_name(path)} ({mine}) imports {target} ({theirs})"


def kernel_modules() -> list[Path]:
    return sorted((ROOT / "supervisor").glob("*.py"))


@pytest.mark.parametrize("path", kernel_modules(), ids=module_name)
def test_the_kernel_imports_no_pydantic_no_actors_no_subpackage(path: Path) -> None:
    for target in imports(path):
        top = target.split(".")[0]
        assert top not in ("pydantic", "pydantic_settings", "actors"), target
        if path.name != "__init__.py":  # the face's lazy hand-on is checked above
            assert layer_of(target) in (None, "kernel"), target


def test_importing_the_kernel_does_not_import_pydantic() -> None:
    import subprocess
    import sys

    code = "import sys, supervisor, actors; print('pydantic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_no_file_over_400_lines_without_a_reason() -> None:
    for path in sources("supervisor", "actors"):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > 400:
            assert "Why this file is" in text[:2500], f"{path} has no reason at its top"


ACTORS_EXPORTS = [
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
    "READ",
    "SpawnError",
    "StopReport",
    "TCP_BIND",
    "TCP_CONNECT",
    "TOKEN_VAR",
    "WRITE",
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

SUPERVISOR_EXPORTS = [
    "ActorDied",
    "ActorError",
    "ActorNotRunning",
    "AgentContext",
    "AgentDeploymentClient",
    "AgentPermissions",
    "AgentSpec",
    "AlreadyPresent",
    "AlreadyStarted",
    "AutoShutdown",
    "AutoShutdownExit",
    "Backoff",
    "ChildContext",
    "ChildCounts",
    "ChildInfo",
    "ChildKind",
    "ChildSpec",
    "ChildState",
    "DeploymentRequest",
    "DeploymentResponse",
    "EventLog",
    "HttpAgentClient",
    "IGNORE",
    "MailboxFull",
    "MaxChildren",
    "NotFound",
    "Outcome",
    "PROTOCOL_VERSION",
    "Restart",
    "RestartIntensityExceeded",
    "Running",
    "Runtime",
    "Shutdown",
    "SpecOptions",
    "StartError",
    "StopOrder",
    "Strategy",
    "Supervisor",
    "SupervisorClosed",
    "SupervisorError",
    "SupervisorOptions",
    "SupervisorSpecOptions",
    "SyncAgentDeploymentClient",
    "ZiggieError",
    "__version__",
    "describe",
    "is_valid_id",
    "json_events",
    "no_events",
    "open_runtime",
    "open_supervisor",
    "supervisor_spec",
    "validate_id",
]

COORDINATOR_EXPORTS = [
    "OPERATOR",
    "AgentHome",
    "AgentRefused",
    "AgentService",
    "AgentState",
    "Answer",
    "BadRequest",
    "Caller",
    "Coordinator",
    "CoordinatorRunning",
    "FileQueue",
    "Forbidden",
    "HomeUnusable",
    "HttpUnavailable",
    "Journal",
    "Runner",
    "Settings",
    "authorize",
    "check_http",
    "check_ray",
    "claude_runner",
    "default_runners",
    "demo_runner",
    "open_coordinator",
    "prune_home",
    "serve_home",
]


@pytest.mark.parametrize(
    ("module", "pinned"),
    [
        (actors, ACTORS_EXPORTS),
        (supervisor, SUPERVISOR_EXPORTS),
        (supervisor.coordinator, COORDINATOR_EXPORTS),
        (
            supervisor.client,
            [
                "AgentDeploymentClient",
                "HttpAgentClient",
                "SyncAgentDeploymentClient",
                "default_queue_dir",
            ],
        ),
    ],
    ids=lambda m: getattr(m, "__name__", ""),
)
def test_public_names_are_pinned(module: object, pinned: list[str]) -> None:
    # Changing a public API is a deliberate act: update the list with it.
    assert sorted(module.__all__) == sorted(pinned)  # type: ignore[attr-defined]
    for name in module.__all__:  # type: ignore[attr-defined]
        assert hasattr(module, name), name


def test_the_face_hands_on_the_client_and_wire_models() -> None:
    assert supervisor.AgentSpec is supervisor.protocol.AgentSpec
    assert supervisor.AgentDeploymentClient is supervisor.client.AgentDeploymentClient
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = supervisor.nope  # type: ignore[attr-defined]
