"""``GET /metrics``: Prometheus text, from prometheus_client (one registry per coordinator).

Counters follow the runtime's events; gauges (agents by state and level, queue depth) are
read from the journal and the queue at scrape time, so they cannot drift.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from supervisor.protocol import REQUEST_SUFFIX, REQUESTS

from .._service import AgentService
from .._tracing import Tracing

#: Content type of the Prometheus text format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_EXITS = {"exited", "terminated", "timed_out"}


class _Gauges(Collector):
    def __init__(self, service: AgentService) -> None:
        self.service = service

    def collect(self) -> Iterator[GaugeMetricFamily]:
        agents = GaugeMetricFamily(
            "ziggie_agents",
            "Agents known to the coordinator, by state and level",
            labels=["state", "level"],
        )
        counts: dict[tuple[str, str], int] = {}
        for row in self.service.journal.agents():
            key = (str(row["state"]), str(row["level"]))
            counts[key] = counts.get(key, 0) + 1
        for (state, level), n in sorted(counts.items()):
            agents.add_metric([state, level], n)
        yield agents
        depth = GaugeMetricFamily(
            "ziggie_queue_depth", "Request files waiting in the file queue's requests/"
        )
        try:
            names = os.listdir(self.service.home.queue / REQUESTS)
        except OSError:
            names = []
        depth.add_metric([], sum(1 for n in names if n.endswith(REQUEST_SUFFIX)))
        yield depth


class _TraceCounters(Collector):
    """The exporter's counters: spans exported, and dropped (queue full, export failed,
    left at a stop): a collector that is down shows here, and nowhere else."""

    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing

    def collect(self) -> Iterator[CounterMetricFamily]:
        stats = self.tracing.stats()
        exported = CounterMetricFamily(
            "ziggie_trace_spans_exported", "Spans the trace exporter delivered"
        )
        exported.add_metric([], stats["exported"])
        yield exported
        dropped = CounterMetricFamily(
            "ziggie_trace_spans_dropped",
            "Spans never delivered, by reason (queue_full, export_failed, shutdown)",
            labels=["reason"],
        )
        for reason in ("queue_full", "export_failed", "shutdown"):
            dropped.add_metric([reason], stats[reason])
        yield dropped


class Metrics:
    """The coordinator's metrics; ``on_event`` is a runtime event listener."""

    def __init__(self, service: AgentService) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "ziggie_http_request_seconds",
            "HTTP API request latency",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
        )
        self.restarts = Counter(
            "ziggie_agent_restarts",
            "Restarts of agents by their supervisors",
            registry=self.registry,
        )
        self.exits = Counter(
            "ziggie_agent_exits",
            "Ended agent incarnations by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.registry.register(_Gauges(service))
        if service.tracing is not None:
            self.registry.register(_TraceCounters(service.tracing))

    def on_event(self, event: str, fields: dict[str, Any]) -> None:
        if fields.get("kind") != "worker":
            return
        if event == "restarted":
            self.restarts.inc()
        elif event in _EXITS:
            self.exits.labels(str(fields.get("outcome", "error"))).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
