"""OpenTelemetry traces of the agents: one span per incarnation, one per request.

This face imports no OpenTelemetry: tracing that is off costs nothing, not even the
import. :func:`open_tracer` imports the SDK (the ``otel`` extra) when it is on.
"""

from __future__ import annotations

from .._journal import Journal
from ._config import (
    NO_SPAN,
    RequestSpan,
    TraceConfig,
    Tracing,
    TracingUnavailable,
    request_span,
    trace_config,
    trace_fields,
)

__all__ = [
    "NO_SPAN",
    "RequestSpan",
    "TraceConfig",
    "Tracing",
    "TracingUnavailable",
    "open_tracer",
    "request_span",
    "trace_config",
    "trace_fields",
]


def open_tracer(config: TraceConfig, journal: Journal) -> Tracing:
    """The tracer of a coordinator whose journal is *journal* (imports the SDK).

    Raises :class:`TracingUnavailable` without the ``otel`` extra.
    """
    try:
        from ._spans import AgentTracer
    except ImportError as exc:
        raise TracingUnavailable(
            f"tracing needs the 'otel' extra: pip install 'ziggie[otel]' ({exc.name} is"
            " missing), or turn it off with OTEL_TRACES_EXPORTER=none"
        ) from exc
    return AgentTracer(config, journal)
