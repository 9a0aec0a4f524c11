"""Spec files, read strictly: an unknown key is an error naming the nearest valid one.

The wire models ignore unknown fields (newer peers stay readable), which is right for the
protocol and wrong for a file a person typed: ``comand:`` was silently dropped and the
demo agent ran instead of the user's command. So the CLI checks every key
against the models' fields before validating, and says ``did you mean 'command'?``.

A tree file (``ziggie apply``) is ``agents:``, a list of specs each with optional
``children:``; a child's ``level`` defaults to one below its parent's.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from supervisor.protocol import AgentContext, AgentPermissions, AgentSpec

from ._common import validation_message

#: Nested mappings of a spec, and the model that knows their keys.
_NESTED: dict[str, type[BaseModel]] = {"context": AgentContext, "permissions": AgentPermissions}
_NEXT_LEVEL = {"L1": "L2", "L2": "L3"}


def child_level(parent_level: str | None) -> str:
    """The level a child gets when its spec gives none: one below its parent's (an L3's
    child is L3 too, which the coordinator refuses by name)."""
    return _NEXT_LEVEL.get(parent_level or "", "L3")


class SpecError(Exception):
    """A spec file that cannot be used; the message names the file and the key."""


def load_document(path: Path) -> Any:
    """The parsed JSON (``.json``) or YAML (anything else) document in *path*."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read {path}: {exc.strerror}") from exc
    kind = "JSON" if path.suffix == ".json" else "YAML"
    try:
        return json.loads(text) if kind == "JSON" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SpecError(f"{path} is not valid {kind}: {exc}") from exc


def check_keys(data: dict[str, Any], model: type[BaseModel], where: str, extra: set[str]) -> None:
    """Raise :class:`SpecError` for the first key neither *model* nor *extra* knows."""
    known = set(model.model_fields) | extra
    for key, value in data.items():
        if key not in known:
            near = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.6)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise SpecError(f"{where}: unknown key {key!r}{hint}")
        nested = _NESTED.get(key)
        if nested is not None and isinstance(value, dict):
            check_keys(value, nested, f"{where}.{key}", set())


def load_spec(path: Path) -> dict[str, Any]:
    """One agent spec from *path*, every key checked (``deploy``)."""
    data = load_document(path)
    if not isinstance(data, dict):
        raise SpecError(f"{path} must hold one agent spec (a mapping)")
    check_keys(data, AgentSpec, str(path), set())
    return data


def complete(data: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """The fields a person may leave out of a spec file: name, role, working directory."""
    data.setdefault("level", "L1")
    data.setdefault("role", "agent")
    data.setdefault("name", data.get("id", "agent"))
    context = dict(data.get("context") or {})
    context.setdefault("working_directory", str(workdir.absolute()))
    data["context"] = context
    return data


def validate(data: dict[str, Any], where: str) -> AgentSpec:
    try:
        return AgentSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{where}: invalid agent spec: {validation_message(exc)}") from exc


@dataclass(frozen=True)
class Declared:
    """One agent of a tree file: its spec and its parent (None: top level)."""

    spec: AgentSpec
    parent: str | None


def load_tree(path: Path) -> list[Declared]:
    """Every agent of a tree file, parents before their children (``apply``/``diff``)."""
    data = load_document(path)
    if not isinstance(data, dict) or not isinstance(data.get("agents"), list):
        raise SpecError(f"{path}: a tree file is a mapping with an 'agents:' list")
    check_keys_top = set(data) - {"agents"}
    if check_keys_top:
        key = sorted(check_keys_top)[0]
        raise SpecError(f"{path}: unknown key {key!r} (a tree file has only 'agents')")
    found: list[Declared] = []
    seen: set[str] = set()

    def visit(items: Any, parent: AgentSpec | None, where: str) -> None:
        if not isinstance(items, list):
            raise SpecError(f"{where}: must be a list of agents")
        for i, item in enumerate(items):
            here = f"{where}[{i}]"
            if not isinstance(item, dict):
                raise SpecError(f"{here}: must be a mapping (an agent spec)")
            check_keys(item, AgentSpec, here, {"children"})
            fields = {k: v for k, v in item.items() if k != "children"}
            if "id" not in fields:
                raise SpecError(f"{here}: every agent of a tree needs an 'id'")
            if parent is not None:
                fields.setdefault("level", child_level(parent.level))
            spec = validate(complete(fields, path.parent), here)
            if spec.id in seen:
                raise SpecError(f"{here}: id {spec.id!r} is declared twice")
            seen.add(spec.id)
            found.append(Declared(spec, parent.id if parent else None))
            visit(item.get("children", []), spec, f"{here}.children")

    visit(data["agents"], None, f"{path}: agents")
    return found
