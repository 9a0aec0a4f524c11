"""Whether tracing is on, and what the rest of the coordinator sees of it: no OpenTelemetry.

Tracing is off unless the standard variables (or the settings of the same names) ask for
it: then, and only then, :func:`open_tracer` imports the SDK. Off, the service and its
transports hold ``None`` and pay one attribute check where a span would be.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Final, Protocol

from supervisor import ChildContext, ZiggieError
from supervisor.protocol import AgentSpec, DeploymentRequest, DeploymentResponse, trace_id_of

from .._callers import Caller
from .._settings import Settings

#: The exporters the ``otel`` extra provides, by their ``OTEL_TRACES_EXPORTER`` names.
EXPORTERS: Final = ("otlp", "console")
PROTOCOLS: Final = ("http/protobuf", "grpc")


class TracingUnavailable(ZiggieError, ValueError):
    """Tracing was asked for but cannot run: the ``otel`` extra is missing, or a value
    names an exporter or protocol it does not have."""


@dataclass(frozen=True, slots=True)
class TraceConfig:
    """What the settings and the ``OTEL_*`` variables ask of tracing (when it is on)."""

    exporters: tuple[str, ...]
    protocol: str
    #: The collector's base URL from the settings; None: the exporter reads its variables.
    endpoint: str | None = None
    service_name: str | None = None
    resource_attributes: str | None = None


def trace_config(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> TraceConfig | None:
    """The tracing asked for by *settings*, else the standard variables; None when off.

    On when an exporter is named (``OTEL_TRACES_EXPORTER=otlp``) or, none named, when a
    collector is (``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``..._TRACES_ENDPOINT``). Off with
    ``none`` or ``OTEL_SDK_DISABLED=true``. Raises :class:`TracingUnavailable` for an
    exporter or protocol the ``otel`` extra does not provide.
    """
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    named = settings.otel_traces_exporter or env.get("OTEL_TRACES_EXPORTER") or ""
    exporters = tuple(dict.fromkeys(n.strip().lower() for n in named.split(",") if n.strip()))
    if not exporters:
        collector = (
            settings.otel_exporter_otlp_endpoint
            or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        )
        if not collector:
            return None
        exporters = ("otlp",)
    if "none" in exporters:
        return None
    for name in exporters:
        if name not in EXPORTERS:
            raise TracingUnavailable(
                f"otel_traces_exporter {name!r}: not one of {', '.join(EXPORTERS)}, none"
            )
    protocol = (
        settings.otel_exporter_otlp_protocol
        or env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol not in PROTOCOLS:
        raise TracingUnavailable(
            f"otel_exporter_otlp_protocol {protocol!r}: not one of {', '.join(PROTOCOLS)}"
        )
    return TraceConfig(
        exporters=exporters,
        protocol=protocol,
        endpoint=settings.otel_exporter_otlp_endpoint,
        service_name=settings.otel_service_name,
        resource_attributes=settings.otel_resource_attributes,
    )


class RequestSpan(Protocol):
    """The span of one request, as a transport annotates it."""

    def set(self, key: str, value: str | int | bool | None) -> None: ...

    def rename(self, name: str) -> None: ...

    def answered(self, response: DeploymentResponse | None) -> None:
        """What the service answered: the agent, the status, the refusal's code."""


class Tracing(Protocol):
    """What the service and its transports ask of the tracer (``_spans.AgentTracer``)."""

    def environment(self, ctx: ChildContext) -> dict[str, str]:
        """An incarnation starts: its span begins; its ``TRACEPARENT``/``TRACESTATE``."""

    def agent_env(self, spec: AgentSpec) -> dict[str, str]:
        """What an agent's own OpenTelemetry SDK needs to reach the collector."""

    def request(
        self,
        transport: str,
        caller: Caller,
        name: str,
        *,
        traceparent: str | None = None,
        tracestate: str | None = None,
        server: bool = False,
    ) -> AbstractContextManager[RequestSpan]:
        """A span around one request, the current span while the block runs."""

    def lost(self, row: Mapping[str, Any]) -> None:
        """A crashed predecessor's agent (a journal row): its unfinished span, ended."""

    def on_event(self, event: str, fields: dict[str, Any]) -> None:
        """The runtime's events: span events, attributes, and each incarnation's end."""

    def stats(self) -> dict[str, int]:
        """Counters for ``/metrics``: spans exported and dropped (by reason)."""

    def close(self) -> None:
        """Export what is queued, within a bound, and stop the exporter."""


class _NoSpan:
    def set(self, key: str, value: str | int | bool | None) -> None:
        pass

    def rename(self, name: str) -> None:
        pass

    def answered(self, response: DeploymentResponse | None) -> None:
        pass


NO_SPAN: Final[RequestSpan] = _NoSpan()


@contextlib.contextmanager
def request_span(
    tracing: Tracing | None, transport: str, caller: Caller, request: DeploymentRequest
) -> Iterator[RequestSpan]:
    """The span of one wire request through *transport* (nothing when tracing is off):
    a child of the request's ``traceparent``, else (an agent's) of the agent's own span.

    Every transport that hands the service a :class:`DeploymentRequest` wraps it so (the
    file queue; an MCP server calling the service would pass ``"mcp"``); HTTP traces at
    its gate, with the ``traceparent`` header.
    """
    if tracing is None:
        yield NO_SPAN
        return
    with tracing.request(
        transport,
        caller,
        request.action,
        traceparent=request.traceparent,
        tracestate=request.tracestate,
    ) as span:
        span.set("ziggie.request_id", request.request_id)
        yield span


def trace_fields(row: Mapping[str, Any], link: str | None) -> dict[str, str]:
    """The agent's trace id (and its link, from the ``trace_url`` template) for a status
    detail and the dashboard; empty for an agent never traced."""
    try:
        recorded = json.loads(row.get("trace") or "{}")
    except ValueError:  # the journal is read as if anyone wrote it
        return {}
    if not isinstance(recorded, dict):
        return {}
    trace_id = trace_id_of(recorded.get("span") or recorded.get("parent"))
    if trace_id is None:
        return {}
    fields = {"trace_id": trace_id}
    if link:
        fields["trace_url"] = link.replace("{trace_id}", trace_id)
    return fields
