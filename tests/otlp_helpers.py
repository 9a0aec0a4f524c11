"""A real OTLP/HTTP trace receiver on 127.0.0.1 (protobuf decoded with opentelemetry-proto),
and the spans it received as plain data.

What the coordinator (and an agent's own SDK) exports arrives here over a real socket,
encoded as a collector would receive it: the tests assert on what a Jaeger or Tempo would
show, not on an in-memory exporter.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(v) for v in value.array_value.values)
    if kind is None:
        return None
    return getattr(value, kind)


def _attrs(items: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in items}


@dataclass(frozen=True)
class Link:
    trace_id: str
    span_id: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as a collector received it (ids in hex)."""

    trace_id: str
    span_id: str
    parent_id: str  #: '' for a root
    name: str
    kind: int
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    links: list[Link]
    status: int  #: 0 unset, 1 ok, 2 error
    service: str  #: the resource's service.name
    start: int
    end: int

    @property
    def event_names(self) -> list[str]:
        return [name for name, _ in self.events]

    def named_by(self, traceparent: str) -> bool:
        """True if *traceparent* names this span (its flags aside)."""
        return traceparent.split("-")[1:3] == [self.trace_id, self.span_id]


@dataclass
class Receiver:
    """The spans received so far; :meth:`wait` blocks until a condition on them holds."""

    url: str = ""
    spans: list[ReceivedSpan] = field(default_factory=list)
    posts: int = 0
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def add(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        found = []
        for resource_spans in request.resource_spans:
            service = _attrs(resource_spans.resource.attributes).get("service.name", "")
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    found.append(
                        ReceivedSpan(
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_id=s.parent_span_id.hex(),
                            name=s.name,
                            kind=s.kind,
                            attributes=_attrs(s.attributes),
                            events=[(e.name, _attrs(e.attributes)) for e in s.events],
                            links=[
                                Link(k.trace_id.hex(), k.span_id.hex(), _attrs(k.attributes))
                                for k in s.links
                            ],
                            status=s.status.code,
                            service=str(service),
                            start=s.start_time_unix_nano,
                            end=s.end_time_unix_nano,
                        )
                    )
        with self._changed:
            self.spans.extend(found)
            self.posts += 1
            self._changed.notify_all()

    def wait(
        self, condition: Callable[[list[ReceivedSpan]], bool], timeout: float = 30, what: str = ""
    ) -> list[ReceivedSpan]:
        """The spans once *condition(spans)* holds (woken by each export, never polled)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition(list(self.spans)):
                left = deadline - time.monotonic()
                assert left > 0, f"timed out waiting for {what or 'spans'}: got {self.names()}"
                self._changed.wait(left)
            return list(self.spans)

    def names(self) -> list[str]:
        return [s.name for s in self.spans]

    def agent_spans(self, agent_id: str) -> list[ReceivedSpan]:
        """*agent_id*'s incarnation spans, by incarnation."""
        found = [
            s
            for s in self.spans
            if s.attributes.get("gen_ai.agent.id") == agent_id
            and s.attributes.get("gen_ai.operation.name") == "invoke_agent"
        ]
        return sorted(found, key=lambda s: (s.start, s.attributes.get("ziggie.incarnation", 0)))

    def by_id(self) -> dict[str, ReceivedSpan]:
        return {s.span_id: s for s in self.spans}


@contextmanager
def otlp_receiver() -> Iterator[Receiver]:
    """An OTLP/HTTP receiver at ``receiver.url`` (a base URL, as OTEL_EXPORTER_OTLP_ENDPOINT)."""
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces":
                self.send_response(404)
                self.end_headers()
                return
            receiver.add(body)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then closed): connections are
    refused at once, as a collector that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
