"""W3C Trace Context (``traceparent``, ``tracestate``) as plain strings: no OpenTelemetry.

A request may carry the caller's trace context (the file queue's ``traceparent`` field,
HTTP's ``traceparent`` header) so that what the coordinator does for it continues the
caller's trace. A malformed value is ignored, never an error, as the W3C recommendation
says of a ``traceparent`` a vendor cannot parse (https://www.w3.org/TR/trace-context/).

Clients fill it in by themselves (:func:`current_trace_context`): from the calling
program's current OpenTelemetry span when that program uses OpenTelemetry (it has
imported it: looking costs nothing otherwise), else from ``TRACEPARENT``/``TRACESTATE``,
which the coordinator gives every agent process when tracing is on.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from typing import Any, Final

#: Version 00 exactly; a later version may append fields after a dash (read as 00's).
_TRACEPARENT: Final = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE: Final = "0" * 32
_ZERO_SPAN: Final = "0" * 16
#: The W3C limit: 512 characters, printable ASCII (members are checked by their reader).
_TRACESTATE: Final = re.compile(r"[\x20-\x7e]{1,512}")


def parse_traceparent(value: object) -> tuple[str, str, int] | None:
    """``(trace_id, span_id, flags)`` of a valid ``traceparent``, else None."""
    if not isinstance(value, str) or len(value) > 256:
        return None
    value = value.strip()
    match = _TRACEPARENT.match(value)
    if match is None:
        return None
    version, trace_id, span_id, flags = match.groups()
    rest = value[match.end() :]
    if version == "ff" or (version == "00" and rest) or (rest and not rest.startswith("-")):
        return None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return trace_id, span_id, int(flags, 16)


def valid_traceparent(value: object) -> str | None:
    """*value* as a version-00 ``traceparent`` if it is a valid one, else None."""
    parsed = parse_traceparent(value)
    return None if parsed is None else format_traceparent(*parsed)


def valid_tracestate(value: object) -> str | None:
    """*value* if it can be a ``tracestate`` (printable ASCII, at most 512), else None."""
    if not isinstance(value, str) or not _TRACESTATE.fullmatch(value.strip()):
        return None
    return value.strip()


def format_traceparent(trace_id: str, span_id: str, flags: int) -> str:
    return f"00-{trace_id}-{span_id}-{flags & 0xFF:02x}"


def trace_id_of(traceparent: object) -> str | None:
    """The trace id of a valid ``traceparent`` (what a trace viewer looks up), else None."""
    parsed = parse_traceparent(traceparent)
    return None if parsed is None else parsed[0]


def current_trace_context(
    environ: Mapping[str, str] | None = None,
) -> tuple[str | None, str | None]:
    """The caller's ``(traceparent, tracestate)``: its current OpenTelemetry span, else
    ``TRACEPARENT``/``TRACESTATE`` from *environ* (default ``os.environ``); Nones if none.

    OpenTelemetry is consulted only if the program has imported it already.
    """
    if "opentelemetry.trace" in sys.modules:
        found = _otel_current(sys.modules["opentelemetry.trace"])
        if found is not None:
            return found
    env = os.environ if environ is None else environ
    parent = valid_traceparent(env.get("TRACEPARENT"))
    if parent is None:
        return None, None
    return parent, valid_tracestate(env.get("TRACESTATE"))


def _otel_current(trace: Any) -> tuple[str, str | None] | None:
    try:
        ctx = trace.get_current_span().get_span_context()
        if not ctx.is_valid:
            return None
        parent = format_traceparent(
            f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", int(ctx.trace_flags)
        )
        state = ctx.trace_state.to_header() if ctx.trace_state else ""
    except Exception:  # another program's OpenTelemetry is no reason to fail a request
        return None
    return parent, state or None
