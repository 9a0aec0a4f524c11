"""The exporting end of tracing: a provider of our own, the exporters the ``OTEL_*``
variables choose, and a bounded queue between them (OpenTelemetry: imported when on).

A collector that is slow or down must never slow supervision: a finished span is put in a
bounded queue under a lock (never a wait), a thread of its own exports batches, and what
does not fit, or fails to export, is dropped and counted (``ziggie_trace_spans_dropped``).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import unquote

from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

from ._config import TraceConfig, TracingUnavailable

#: How long a clean stop waits for the last spans to reach a collector that answers.
FINAL_WAIT = 2.0


def _env_number(name: str, default: int) -> int:
    try:
        value = int(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


class BoundedProcessor(SpanProcessor):
    """The SDK's batch processor, bounded and counted: ``on_end`` appends under a lock or
    drops (queue full), a daemon thread exports. Sizes from the ``OTEL_BSP_*`` variables.
    """

    def __init__(self, exporter: SpanExporter) -> None:
        self._exporter = exporter
        self._max = _env_number("OTEL_BSP_MAX_QUEUE_SIZE", 2048)
        self._batch = min(_env_number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512), self._max)
        self._delay = _env_number("OTEL_BSP_SCHEDULE_DELAY", 5000) / 1000
        self._queue: deque[ReadableSpan] = deque()
        self._cond = threading.Condition()
        self._flushes = 0
        self._closed = False
        #: The last export succeeded (or none was tried): a clean stop waits for it.
        self._healthy = True
        self.exported = 0
        self.dropped = {"queue_full": 0, "export_failed": 0, "shutdown": 0}
        self._thread = threading.Thread(target=self._work, name="ziggie-trace-export", daemon=True)
        self._thread.start()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None or not context.trace_flags.sampled:
            return
        with self._cond:
            if self._closed:
                self.dropped["shutdown"] += 1
            elif len(self._queue) >= self._max:
                self.dropped["queue_full"] += 1
            else:
                self._queue.append(span)
                if len(self._queue) >= self._batch:
                    self._cond.notify_all()

    def _work(self) -> None:
        while True:
            with self._cond:
                if len(self._queue) < self._batch and not (self._closed or self._flushes):
                    self._cond.wait(self._delay)
                batch = [self._queue.popleft() for _ in range(min(self._batch, len(self._queue)))]
                if not batch:
                    self._flushes = 0
                    self._cond.notify_all()  # a flush waiting: everything went out
                    if self._closed:
                        return
                    continue
            self._export(batch)

    def _export(self, batch: Sequence[ReadableSpan]) -> None:
        try:
            ok = self._exporter.export(batch) is SpanExportResult.SUCCESS
        except Exception:  # an exporter's bug is a failed export, never a dead thread
            ok = False
        with self._cond:
            self._healthy = ok
            if ok:
                self.exported += len(batch)
            else:
                self.dropped["export_failed"] += len(batch)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        with self._cond:
            self._flushes += 1
            self._cond.notify_all()
            return self._cond.wait_for(
                lambda: not self._queue and not self._flushes, timeout_millis / 1000
            )

    def shutdown(self) -> None:
        """Export what is queued if the collector answers (within :data:`FINAL_WAIT`);
        else drop it, counted: a stop never waits on a collector that is down."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            healthy = self._healthy
            self._cond.notify_all()
        self._thread.join(FINAL_WAIT if healthy else 0)
        with self._cond:
            self.dropped["shutdown"] += len(self._queue)
            self._queue.clear()
        self._exporter.shutdown()  # also cuts short an export still retrying


class ForcedIds(RandomIdGenerator):
    """Random ids, except the next ones when forced: a span ended by a crash is exported
    afterwards under the very ids its children and its agent's ``TRACEPARENT`` named."""

    def __init__(self) -> None:
        self._span: int | None = None
        self._trace: int | None = None

    @contextlib.contextmanager
    def forced(self, trace_id: int, span_id: int) -> Iterator[None]:
        """The next span started (synchronously, in this block) gets these ids."""
        self._trace, self._span = trace_id, span_id
        try:
            yield
        finally:
            self._trace = self._span = None

    def generate_span_id(self) -> int:
        if self._span is not None:
            value, self._span = self._span, None
            return value
        return super().generate_span_id()

    def generate_trace_id(self) -> int:
        if self._trace is not None:
            value, self._trace = self._trace, None
            return value
        return super().generate_trace_id()


def _parse_attributes(text: str) -> dict[str, str]:
    """``key=value,key2=value2`` (values percent-encoded), as OTEL_RESOURCE_ATTRIBUTES."""
    out: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            out[key.strip()] = unquote(value.strip())
    return out


def resource(config: TraceConfig) -> Resource:
    """The variables' resource, then the settings' attributes; ``service.name`` ziggie
    unless one is given."""
    base = Resource.create({})
    extra: dict[str, Any] = _parse_attributes(config.resource_attributes or "")
    if config.service_name:
        extra[SERVICE_NAME] = config.service_name
    elif SERVICE_NAME not in extra and str(base.attributes.get(SERVICE_NAME, "")).startswith(
        "unknown_service"
    ):
        extra[SERVICE_NAME] = "ziggie"
    return base.merge(Resource(extra))


def exporters(config: TraceConfig) -> list[SpanExporter]:
    """One exporter per name in ``OTEL_TRACES_EXPORTER`` (its protocol for ``otlp``)."""
    made: list[SpanExporter] = []
    for name in config.exporters:
        if name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            made.append(ConsoleSpanExporter())
        elif config.protocol == "grpc":
            made.append(_grpc(config.endpoint))
        else:
            made.append(_http(config.endpoint))
    return made


def _http(endpoint: str | None) -> SpanExporter:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise TracingUnavailable(
            "OTLP over http/protobuf needs opentelemetry-exporter-otlp-proto-http:"
            f" pip install 'ziggie[otel]' ({exc.name} is missing)"
        ) from exc
    # A base URL, as OTEL_EXPORTER_OTLP_ENDPOINT: the signal's path is added to it.
    full = endpoint.rstrip("/") + "/v1/traces" if endpoint else None
    return OTLPSpanExporter(endpoint=full)


def _grpc(endpoint: str | None) -> SpanExporter:
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise TracingUnavailable(
            "OTLP over grpc needs opentelemetry-exporter-otlp-proto-grpc:"
            f" pip install 'ziggie[otel]' ({exc.name} is missing)"
        ) from exc
    return OTLPSpanExporter(endpoint=endpoint)


def provider(config: TraceConfig, ids: ForcedIds) -> tuple[TracerProvider, list[BoundedProcessor]]:
    """A provider of our own (never the global one: a host program may have its own),
    with one bounded processor per exporter. The sampler is ``OTEL_TRACES_SAMPLER``'s."""
    made = TracerProvider(resource=resource(config), id_generator=ids, shutdown_on_exit=False)
    processors = [BoundedProcessor(exporter) for exporter in exporters(config)]
    for processor in processors:
        made.add_span_processor(processor)
    return made, processors
