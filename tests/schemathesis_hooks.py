"""Schemathesis hooks for tests/test_http_schema.py: generated deploys run nothing real.

A generated ``agent_spec.command`` could name any program on this machine; every body
that carries a spec gets a harmless one instead (the API's behaviour is still exercised:
validation, refusals, answers).
"""

from __future__ import annotations

import sys
from typing import Any

import schemathesis

HARMLESS = [sys.executable, "-c", "pass"]


@schemathesis.hook
def map_body(context: Any, body: Any) -> Any:
    if isinstance(body, dict):
        spec = body.get("agent_spec")
        if isinstance(spec, dict):
            spec["command"] = list(HARMLESS)
            spec.pop("runner", None)
    return body
