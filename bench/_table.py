"""Printing benchmark tables, and running one measurement in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any


def isolated(module: str, *args: str) -> dict[str, Any]:
    """Run ``python -m module args`` and parse its last stdout line as JSON.

    A fresh interpreter per variant keeps RSS and warm caches from leaking between rows.
    """
    out = subprocess.run(
        [sys.executable, "-m", module, *args], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def table(title: str, rows: list[tuple[str, str, str, str, str]]) -> None:
    """rows: (measure, ours, baseline, ratio, goal)."""
    head = ("measure", "ziggie", "baseline", "ratio", "goal")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(5)]
    line = "  ".join("-" * w for w in widths)
    print(f"\n## {title}\n")
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    print(line)
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    sys.stdout.flush()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"
