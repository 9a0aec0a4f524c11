"""The seed's agent definition file, ``.claude/agents/<id>.md``: what an agent reads.

YAML front matter with every value JSON-quoted (a newline in a task stays inside its
quotes), then the seed's Markdown sections. The coordinator writes it; agents read it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

from ._schemas import AgentSpec

#: Characters some reader takes for a line break (str.splitlines, YAML 1.1), escaped in the
#: front matter so each value stays on its own line whoever reads it.
_BREAKS: Final = {ord(c): f"\\u{ord(c):04x}" for c in "\x85\u2028\u2029"}


def _q(value: object) -> str:
    # JSON scalars are valid YAML flow scalars: a newline in a name stays inside its quotes
    # (json escapes the C0 controls; U+0085, U+2028 and U+2029 are escaped here).
    return json.dumps(value, ensure_ascii=False).translate(_BREAKS)


def definition_text(spec: AgentSpec, parent_id: str | None) -> str:
    """The seed's agent definition: YAML front matter (every value quoted), then Markdown."""
    perms = spec.context.permissions
    front = {
        "id": spec.id,
        "name": spec.name,
        "role": spec.role,
        "level": spec.level,
        "parent": parent_id,
        "tools": spec.tools,
        "max_iterations": spec.max_iterations,
        "timeout": spec.timeout_seconds,
        "working_directory": spec.context.working_directory,
        "task": spec.task,
    }
    lines = ["---", *(f"{key}: {_q(value)}" for key, value in front.items()), "---", ""]

    def bullets(items: list[str]) -> str:
        return "\n".join(f"- {item}" for item in items) or "- (none)"

    lines += [
        f"# {spec.name}",
        "",
        "## Role",
        spec.role,
        "",
        "## Task",
        spec.task,
        "",
        "## Context",
        f"- Working Directory: {spec.context.working_directory}",
        f"- Knowledge Base: {spec.context.knowledge_base or 'N/A'}",
        "",
        "## Permissions",
        "### Read Access",
        bullets(perms.read),
        "",
        "### Write Access",
        bullets(perms.write),
        "",
        "### Execute Access",
        bullets(perms.execute),
        "",
    ]
    return "\n".join(lines)


def read_definition(path: Path) -> dict[str, object]:
    """Parse the front matter written by :func:`definition_text`."""
    values: dict[str, object] = {}
    # Only "\n" ends a line here: the values may hold anything else (they are JSON).
    lines = path.read_text(encoding="utf-8").split("\n")
    if not lines or lines[0] != "---":
        raise ValueError(f"{path}: no front matter")
    for line in lines[1:]:
        if line == "---":
            return values
        key, _, raw = line.partition(": ")
        values[key] = json.loads(raw)
    raise ValueError(f"{path}: unterminated front matter")
