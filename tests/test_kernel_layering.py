"""The kernel's layering, asserted from the source so it cannot regress (issue 8).

Kernel modules import neither pydantic nor ``actors`` nor anything of ``supervisor``
outside the kernel, and their imports among themselves run one way (counting the ones
under ``TYPE_CHECKING`` too, which a runtime import check would not see).
"""

from __future__ import annotations

import ast
from pathlib import Path

KERNEL_DIR = Path(__file__).resolve().parent.parent / "supervisor"
KERNEL = {
    "_child",
    "_errors",
    "_events",
    "_exits",
    "_ids",
    "_lifecycle",
    "_policy",
    "_registry",
    "_runtime",
    "_slot",
    "_supervisor",
}
FORBIDDEN_ROOTS = {"pydantic", "actors", "supervisor"}


def _imports(module: str) -> set[str]:
    tree = ast.parse((KERNEL_DIR / f"{module}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: a sibling of the kernel package
                found.add("." + (node.module or ""))
            elif node.module:
                found.add(node.module)
    return found


def test_kernel_imports_nothing_outside_the_kernel() -> None:
    for module in KERNEL:
        for name in _imports(module):
            if name.startswith("."):
                assert name[1:] in KERNEL, f"{module} imports .{name[1:]}, not kernel"
            else:
                assert name.split(".")[0] not in FORBIDDEN_ROOTS, f"{module} imports {name}"


def test_kernel_imports_run_one_way() -> None:
    graph = {m: {n[1:] for n in _imports(m) if n.startswith(".")} for m in KERNEL}
    done: set[str] = set()

    def visit(module: str, stack: tuple[str, ...]) -> None:
        assert module not in stack, f"import cycle: {' -> '.join((*stack, module))}"
        if module in done:
            return
        for dep in graph[module]:
            visit(dep, (*stack, module))
        done.add(module)

    for module in sorted(KERNEL):
        visit(module, ())
