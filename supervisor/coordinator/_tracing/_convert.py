"""Between W3C strings, span contexts, our events and the journal (OpenTelemetry's API).

Everything read here may come from outside (a request's ``traceparent``, a journal row):
what does not parse is left out, never an error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, TraceFlags, TraceState

from supervisor.protocol import DeploymentResponse, format_traceparent, parse_traceparent

_MAX_TEXT: Final = 1024
#: Fields every event carries: the span's attributes already say them.
_COMMON: Final = frozenset(
    {"agent_id", "parent_id", "level", "path", "incarnation", "kind", "name", "placement"}
)


def text(value: object, limit: int = _MAX_TEXT) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def traceparent_of(ctx: SpanContext) -> str:
    return format_traceparent(f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", int(ctx.trace_flags))


def remote(traceparent: object, tracestate: object = None) -> SpanContext | None:
    """A span context from W3C strings (None if they do not parse)."""
    parsed = parse_traceparent(traceparent)
    if parsed is None:
        return None
    trace_id, span_id, flags = parsed
    try:
        state = TraceState.from_header([tracestate]) if isinstance(tracestate, str) else None
    except Exception:
        state = None
    return SpanContext(
        int(trace_id, 16),
        int(span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(flags & 0xFF),
        trace_state=state,
    )


def under(parent: SpanContext | None) -> Context:
    """The context a span starts in: under *parent*, or a new trace (never the ambient
    context, which may hold some request's span)."""
    if parent is None:
        return Context()
    return trace.set_span_in_context(NonRecordingSpan(parent), Context())


def attribute(value: Any) -> Any:
    """*value* as a span attribute, or None where it has no faithful form."""
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return text(value)
    if isinstance(value, list | tuple) and value:
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return tuple(value[:256])
        if all(isinstance(v, str) for v in value):
            return tuple(text(v, 256) for v in value[:64])
    return None


def event_attributes(fields: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in fields.items():
        if key not in _COMMON and (converted := attribute(value)) is not None:
            out[key] = converted
    return out


class Annotated:
    """A request span, as a transport annotates it."""

    __slots__ = ("span",)

    def __init__(self, span: Span) -> None:
        self.span = span

    def set(self, key: str, value: str | int | bool | None) -> None:
        if value is not None:
            self.span.set_attribute(key, text(value) if isinstance(value, str) else value)

    def rename(self, name: str) -> None:
        self.span.update_name(text(name, 256))

    def answered(self, response: DeploymentResponse | None) -> None:
        if response is not None:
            self.set("gen_ai.agent.id", response.agent_id)
            self.set("ziggie.status", response.status)
            self.set("ziggie.code", response.code)


def recorded(row: Mapping[str, Any] | None) -> dict[str, Any]:
    """A journal row's ``trace``, its contexts parsed (anything malformed is left out:
    the journal is read as if anyone wrote it)."""
    if row is None:
        return {}
    try:
        data = json.loads(row.get("trace") or "{}")
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    out: dict[str, Any] = {}
    for key in ("parent", "span"):
        found = remote(data.get(key), data.get("state") if key == "parent" else None)
        if found is not None:
            out[key] = found
    if isinstance(data.get("start"), int | float):
        out["start"] = float(data["start"])
    return out
