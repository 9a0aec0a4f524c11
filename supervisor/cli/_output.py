"""How agents are shown: sizes and times with units, why an agent ended, the tree."""

from __future__ import annotations

from typing import Any

from rich.markup import escape as markup_escape
from rich.tree import Tree

#: States of an agent that is (or may soon be) running: everything else has finished.
LIVE = ("starting", "running")


def _escapes() -> dict[int, str]:
    # C0 (but tab and newline), DEL and C1 controls: ESC sequences, 8-bit CSI, bells,
    # carriage returns that overwrite a line. And the bidirectional overrides and isolates,
    # which reorder what a reader sees ("Trojan Source", CVE-2021-42574).
    table = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
    del table[ord("\t")], table[ord("\n")]
    bidi = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
    table.update({c: f"\\u{c:04x}" for c in bidi})
    return table


_ESCAPES = _escapes()


def printable(text: str) -> str:
    """*text* safe for a terminal: control characters shown as ``\\x1b``-style escapes,
    bidirectional overrides as ``\\u202e``; tabs and newlines kept."""
    return text.translate(_ESCAPES)


def escape(text: str) -> str:
    """*text* (anyone's: an agent's name, an error) for rich markup: its brackets and its
    control sequences both escaped."""
    return markup_escape(printable(text))


def ended_for_good(agent: dict[str, Any]) -> bool:
    """True once the agent's last incarnation has ended and none will follow: not while
    it runs, nor between a crash and its restart (``restarting``)."""
    return agent.get("state") not in LIVE and not agent.get("restarting")


_COLOUR = {"running": "green", "starting": "green", "failed": "red", "timed_out": "yellow"}


def size(n: float) -> str:
    """``8.5 MiB``: binary units, one decimal."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def duration(seconds: float) -> str:
    """``5.6 s``, ``12 min 3 s``, ``2 h 5 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def ending(agent: dict[str, Any]) -> str:
    """Why an agent is no longer running: its reason and last exit, or ``""``."""
    if agent.get("state") in LIVE:
        return ""
    parts = []
    if agent.get("exit_code") is not None:
        parts.append(f"exit {agent['exit_code']}")
    elif agent.get("signal") is not None:
        parts.append(f"signal {agent['signal']}")
    if agent.get("reason"):
        parts.append(str(agent["reason"]))
    return ", ".join(parts)


def usage(agent: dict[str, Any]) -> str:
    """``rss 8.5 MiB, cpu 0.3 s, 2 processes, up 5.6 s`` for a running agent."""
    parts = []
    if agent.get("rss_bytes") is not None:
        parts.append(f"rss {size(agent['rss_bytes'])}")
    if agent.get("cpu_seconds") is not None:
        parts.append(f"cpu {duration(agent['cpu_seconds'])}")
    if agent.get("processes"):
        n = agent["processes"]
        parts.append(f"{n} process{'es' if n != 1 else ''}")
    if agent.get("uptime") is not None:
        parts.append(f"up {duration(agent['uptime'])}")
    return ", ".join(parts)


def status_lines(agent_id: str, agent: dict[str, Any]) -> list[str]:
    """``ziggie status``: the headline, then one ``key: value`` line per known fact."""
    state = agent.get("state", "?")
    lines = [
        f"[bold]{escape(agent_id)}[/] ({agent.get('level')}) "
        f"[{_COLOUR.get(state, 'dim')}]{state}[/]"
    ]
    why = ending(agent)
    facts: list[tuple[str, Any]] = [
        ("pid", agent.get("pid")),
        # A placed agent, or one in a placed agent's host: where it runs.
        ("node", _node(agent)),
        ("parent", agent.get("parent_id")),
        ("children", ", ".join(agent.get("children") or [])),
        ("restarts", agent.get("restarts") or None),
        ("next", "a restart, after its backoff" if agent.get("restarting") else None),
        ("ended", why),
        ("usage", usage(agent)),
        ("path", agent.get("path")),
        ("stops by", agent.get("stops")),
        ("log", agent.get("log")),
    ]
    lines += [f"  {key}: {escape(str(value))}" for key, value in facts if value not in (None, "")]
    return lines


def _node(agent: dict[str, Any]) -> str | None:
    if not agent.get("node"):
        return None
    host = agent.get("host")
    return (
        f"{agent['node']} (host of {host})"
        if host and host != agent.get("agent_id")
        else (f"{agent['node']} (placed, host pid {agent.get('host_pid')})")
    )


def list_line(agent: dict[str, Any], with_usage: bool) -> str:
    state = agent.get("state", "?")
    line = (
        f"{escape(agent['agent_id']):<24} {agent.get('level')}  "
        f"[{_COLOUR.get(state, 'dim')}]{state:<10}[/] pid {agent.get('pid') or '-':<8} "
        f"parent {escape(agent.get('parent_id') or '-')}"
    )
    if agent.get("node"):
        line += f" on {escape(agent['node'])}"
    extra = usage(agent) if with_usage else ""
    why = ending(agent)
    for part in (extra, why):
        if part:
            line += f"  ({escape(part)})"
    return line


def nest(agents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Agents as a forest: each with its ``children`` (those among *agents*)."""
    by_parent: dict[str | None, list[dict[str, Any]]] = {}
    ids = {a["agent_id"] for a in agents}
    for agent in agents:
        parent = agent.get("parent_id")
        by_parent.setdefault(parent if parent in ids else None, []).append(agent)

    def build(agent: dict[str, Any]) -> dict[str, Any]:
        return {**agent, "children": [build(c) for c in by_parent.get(agent["agent_id"], [])]}

    return [build(a) for a in by_parent.get(None, [])]


def render(parent: Tree, node: dict[str, Any], with_usage: bool) -> None:
    state = node.get("state", "?")
    label = (
        f"[bold]{escape(node['agent_id'])}[/] {node.get('level')} "
        f"[{_COLOUR.get(state, 'dim')}]{state}[/] pid {node.get('pid') or '-'}"
    )
    if node.get("node"):
        label += f" on {escape(node['node'])}"
    if node.get("uptime") is not None and state in LIVE and not with_usage:
        label += f", up {duration(node['uptime'])}"
    if node.get("restarts"):
        label += f", {node['restarts']} restarts"
    for extra in (usage(node) if with_usage else "", ending(node)):
        if extra:
            label += f" ({escape(extra)})"
    branch = parent.add(label)
    for child in node["children"]:
        render(branch, child, with_usage)
