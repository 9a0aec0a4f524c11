"""One span per agent incarnation, one per request: the tracer of a coordinator
(OpenTelemetry: imported only when tracing is on).

Where a span hangs, as the tree does: an incarnation of a child agent is a child of its
parent agent's live incarnation; one of a top-level agent is a child of the request that
deployed it (itself a child of the caller's ``traceparent``, or a new trace). A restarted
incarnation is a new span linked to the one it replaces. The journal keeps, per agent,
the context its spans hang under and its latest span, so a coordinator that recovers
after ``kill -9`` ends the spans its predecessor left open (under their own ids) and goes
on in the same trace.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    Link,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
)

from supervisor import ChildContext, __version__
from supervisor.protocol import (
    AgentSpec,
)

from .._callers import Caller
from .._journal import Journal
from ._config import RequestSpan, TraceConfig
from ._convert import (
    Annotated,
    attribute,
    event_attributes,
    recorded,
    remote,
    text,
    traceparent_of,
    under,
)
from ._export import ForcedIds, provider

#: Events that end an incarnation, and those that may be its first word (a remote one's
#: process is reported by its host: its span begins with what comes home first).
_ENDS: Final = frozenset({"exited", "terminated", "timed_out", "start_failed", "ignored"})
_OPENS: Final = frozenset({"spawned", "started", "placed"})
_LOST: Final = "coordinator stopped unexpectedly"


@dataclass(slots=True)
class _Live:
    number: int  #: the incarnation
    span: Span
    started: float


@dataclass(slots=True)
class _Agent:
    """What the tracer keeps of one agent (and mirrors in its journal row's ``trace``)."""

    agent_id: str
    name: str
    level: str
    restart: str
    parent_id: str | None
    #: What its incarnations hang under (a top-level agent's deploy request; a child's
    #: parent span when it was deployed, used only if no parent incarnation is live).
    parent: SpanContext | None
    #: The request that deployed it, when it is not the parent: linked from its first span.
    cause: SpanContext | None = None
    #: Its latest incarnation's span: the next incarnation links to it.
    last: SpanContext | None = None
    live: _Live | None = None


class AgentTracer:
    """The spans of one coordinator's agents and requests (see the module's docstring).

    Every method runs on the event loop's thread; none waits: a finished span goes to a
    bounded queue that a thread of its own exports (``_export``). Nothing here may fail
    an agent's start: :meth:`environment` answers ``{}`` on any error, and counts it.
    """

    def __init__(self, config: TraceConfig, journal: Journal) -> None:
        self._config = config
        self._ids = ForcedIds()
        self._provider, self._processors = provider(config, self._ids)
        self._tracer = self._provider.get_tracer("ziggie", __version__)
        self._journal = journal
        self._agents: dict[str, _Agent] = {}
        self.errors = 0  #: spans we failed to make (a bug): an agent started without one

    # -- agents ------------------------------------------------------------------------

    def environment(self, ctx: ChildContext) -> dict[str, str]:
        try:
            live = self._begin(ctx.id, ctx.incarnation)
        except Exception:
            self.errors += 1
            return {}
        if live is None:
            return {}
        span = live.span.get_span_context()
        env = {"TRACEPARENT": traceparent_of(span)}
        state = span.trace_state.to_header() if span.trace_state else ""
        if state:
            env["TRACESTATE"] = state
        return env

    def agent_env(self, spec: AgentSpec) -> dict[str, str]:
        """The exporter's settings for the agent's own SDK (never its headers: they may
        hold the operator's credentials); what the spec's ``env`` sets is the agent's."""
        if "otlp" not in self._config.exporters:
            return {}
        env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": self._config.protocol}
        if self._config.endpoint:
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = self._config.endpoint
        else:
            for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
                if os.environ.get(name):
                    env[name] = os.environ[name]
        return {k: v for k, v in env.items() if k not in spec.env}

    def _span_of(self, agent_id: str) -> SpanContext | None:
        """*agent_id*'s live incarnation span (None between incarnations)."""
        agent = self._agents.get(agent_id)
        if agent is None or agent.live is None:
            return None
        return agent.live.span.get_span_context()

    def _parent_of(self, agent: _Agent) -> SpanContext | None:
        if agent.parent_id is not None:
            above = self._agents.get(agent.parent_id)
            if above is not None and above.live is not None:
                return above.live.span.get_span_context()
        return agent.parent

    def _load(self, agent_id: str) -> _Agent | None:
        """*agent_id* as its journal row says, as an incarnation of it begins.

        A row that records a span is an agent that ran before (a restart, a redeploy,
        recovery): it goes on where it hung, linked to that span. Else it was just
        deployed (a new deploy of an id clears its row's trace): a top-level agent hangs
        under the current span, which is the request that deployed it (its task was
        started from the request's), a child under its parent's live incarnation.
        """
        row = self._journal.agent(agent_id)
        if row is None:  # not deployed through this service: not ours to trace
            return None
        found = recorded(row)
        parent_id = row["parent_id"]
        current = trace.get_current_span().get_span_context()
        request = current if current.is_valid else None
        if "span" in found:
            parent, cause = found.get("parent"), None
        else:
            parent = request if parent_id is None else self._span_of(parent_id)
            cause = request if request != parent else None
        return _Agent(
            agent_id,
            text(row["spec"].get("name") or agent_id, 256),
            str(row["level"]),
            str(row["restart"]),
            parent_id,
            parent,
            cause,
            found.get("span"),
        )

    def _begin(self, agent_id: str, number: int) -> _Live | None:
        known = self._agents.get(agent_id)
        if known is not None and known.live is not None:
            self._finish(known, {"outcome": "error", "reason": "superseded"})
        agent = self._agents.get(agent_id) or self._load(agent_id)
        if agent is None:
            return None
        parent = self._parent_of(agent)
        links = []
        if agent.last is not None:
            links.append(Link(agent.last, {"ziggie.link": "restart_of"}))
        elif agent.cause is not None:
            links.append(Link(agent.cause, {"ziggie.link": "deployed_by"}))
        span = self._tracer.start_span(
            f"invoke_agent {agent.name}",
            context=under(parent),
            kind=SpanKind.CLIENT,
            links=links,
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.id": agent_id,
                "gen_ai.agent.name": agent.name,
                "ziggie.level": agent.level,
                "ziggie.incarnation": number,
                "ziggie.restart": agent.restart,
                "ziggie.restarted": agent.last is not None,
                **({"ziggie.parent_id": agent.parent_id} if agent.parent_id else {}),
            },
        )
        agent.live = _Live(number, span, time.time())
        self._agents[agent_id] = agent
        self._record(agent, parent)
        return agent.live

    def _finish(self, agent: _Agent, fields: Mapping[str, Any]) -> None:
        live = agent.live
        if live is None:
            return
        span = live.span
        outcome = str(fields.get("outcome") or "error")
        span.set_attribute("ziggie.outcome", outcome)
        reason = fields.get("reason")
        if reason:
            span.set_attribute("ziggie.reason", text(reason))
        if outcome in ("error", "timeout"):
            span.set_status(Status(StatusCode.ERROR, text(reason or outcome, 256)))
        span.end()
        # Only live incarnations are kept here (bounded by the agents that run): the next
        # one of this agent starts from its journal row, which names this span.
        agent.live = None
        self._agents.pop(agent.agent_id, None)

    def _record(self, agent: _Agent, parent: SpanContext | None) -> None:
        """The journal's copy: where the agent's spans hang, and its live span."""
        assert agent.live is not None
        record: dict[str, Any] = {
            "span": traceparent_of(agent.live.span.get_span_context()),
            "start": agent.live.started,
        }
        if parent is not None:
            record["parent"] = traceparent_of(parent)
            if parent.trace_state:
                record["state"] = parent.trace_state.to_header()
        self._journal.update_agent(agent.agent_id, trace=json.dumps(record))

    # -- events ------------------------------------------------------------------------

    def on_event(self, event: str, fields: dict[str, Any]) -> None:
        agent_id = fields.get("agent_id")
        if agent_id is None or fields.get("kind") != "worker":
            return
        agent = self._agents.get(agent_id)
        number = fields.get("incarnation")
        live = agent.live if agent is not None else None
        # A placed agent's own process is reported by its host, numbered by the host's
        # runtime: it belongs to the live incarnation of its proxy here.
        own_host = fields.get("host") == agent_id
        # (An end without a number is its host's death, told by the proxy: the live one.)
        if live is None or (not own_host and isinstance(number, int) and live.number != number):
            if event not in _OPENS or not isinstance(number, int):
                return
            live = self._begin(agent_id, number)
            if live is None:
                return
        span = live.span
        span.add_event(event, event_attributes(fields))
        self._annotate(span, event, fields)
        if event in _ENDS:
            self._finish(self._agents[agent_id], fields)

    @staticmethod
    def _annotate(span: Span, event: str, fields: Mapping[str, Any]) -> None:
        """What an event tells of the incarnation, as the span's own attributes."""
        if event == "spawned" and isinstance(fields.get("pid"), int):
            span.set_attribute("process.pid", fields["pid"])
        elif event in ("process_exited", "process_stopped"):
            if isinstance(fields.get("exit_code"), int):
                span.set_attribute("process.exit.code", fields["exit_code"])
            if isinstance(fields.get("signal"), int):
                span.set_attribute("ziggie.signal", fields["signal"])
        elif event == "killed" and (pids := attribute(fields.get("pids"))) is not None:
            span.set_attribute("ziggie.killed_pids", pids)
        elif event == "stop_gave_up" and (left := attribute(fields.get("left"))) is not None:
            span.set_attribute("ziggie.left_pids", left)
        elif event == "restarted" and isinstance(fields.get("restarts"), int):
            span.set_attribute("ziggie.restarts", fields["restarts"])
        if isinstance(fields.get("node"), str):
            span.set_attribute("ziggie.node", fields["node"])

    # -- requests ----------------------------------------------------------------------

    @contextlib.contextmanager
    def request(
        self,
        transport: str,
        caller: Caller,
        name: str,
        *,
        traceparent: str | None = None,
        tracestate: str | None = None,
        server: bool = False,
    ) -> Iterator[RequestSpan]:
        parent = remote(traceparent, tracestate)
        if parent is None and caller.agent_id is not None:
            parent = self._span_of(caller.agent_id)  # an agent's request, in its own span
        span = self._tracer.start_span(
            name,
            context=under(parent),
            kind=SpanKind.SERVER if server else SpanKind.CONSUMER,
            attributes={"ziggie.transport": transport, "ziggie.caller": str(caller)},
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            yield Annotated(span)
        except Exception as exc:
            span.set_status(Status(StatusCode.ERROR, text(type(exc).__name__)))
            raise
        finally:
            otel_context.detach(token)
            span.end()

    # -- recovery ----------------------------------------------------------------------

    def lost(self, row: Mapping[str, Any]) -> None:
        found = recorded(row)
        span_ctx, parent = found.get("span"), found.get("parent")
        start = found.get("start")
        if span_ctx is None or not isinstance(start, int | float):
            return  # it never ran an incarnation, or it ended (and was exported) before
        spec = row.get("spec") or {}
        name = text(spec.get("name") or row["agent_id"], 256)
        with self._ids.forced(span_ctx.trace_id, span_ctx.span_id):
            span = self._tracer.start_span(
                f"invoke_agent {name}",
                context=under(parent),
                kind=SpanKind.CLIENT,
                start_time=int(start * 1e9),
                attributes={
                    "gen_ai.operation.name": "invoke_agent",
                    "gen_ai.agent.id": row["agent_id"],
                    "gen_ai.agent.name": name,
                    "ziggie.level": str(row.get("level")),
                    "ziggie.incarnation": int(row.get("incarnation") or 0),
                    "ziggie.restart": str(row.get("restart")),
                    "ziggie.outcome": "error",
                    "ziggie.reason": _LOST,
                    "ziggie.lost": True,
                    **({"ziggie.parent_id": row["parent_id"]} if row.get("parent_id") else {}),
                },
            )
        span.add_event("lost")
        span.set_status(Status(StatusCode.ERROR, _LOST))
        span.end()

    # -- the exporter ------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        out = {"exported": 0, "queue_full": 0, "export_failed": 0, "shutdown": 0}
        for processor in self._processors:
            out["exported"] += processor.exported
            for reason, count in processor.dropped.items():
                out[reason] += count
        return out

    def close(self) -> None:
        for agent in self._agents.values():  # still open: the coordinator stops without them
            if agent.live is not None:
                self._finish(agent, {"outcome": "shutdown", "reason": "coordinator stopped"})
        self._provider.shutdown()
