"""One trace per agent tree: spans of real agent processes, as a real OTLP/HTTP receiver
on 127.0.0.1 gets them (decoded with opentelemetry-proto).

L1 -> L2 -> L3 of real processes, the L2 deployed by the L1 through its own queue (the
demo agent's DEMO_CHILDREN), one L3 crashing and restarted, a terminate cascade; an agent
running the OpenTelemetry SDK itself; the HTTP transport's ``traceparent`` header.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from supervisor import AgentDeploymentClient, AgentSpec

from .http_helpers import api
from .otlp_helpers import ReceivedSpan, Receiver, otlp_receiver
from .queue_helpers import agent_spec, coordinator
from .waiting import event_waits

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

#: W3C's example trace: a caller of ours, in a trace of its own.
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def anyio_backend() -> str:
    return "trio"  # real processes; the tracer is backend-neutral code on the loop's thread


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # export within 50 ms of a span's end
    with otlp_receiver() as found:
        yield found


def spec(agent_id: str, work: Path, level: str, **extra: Any) -> dict[str, Any]:
    data = agent_spec(agent_id, work, level=level, timeout_seconds=60)
    data["env"] = {"DEMO_PACE": "0.05", **extra.pop("env", {})}
    data.update(extra)
    return data


def one(spans: list[ReceivedSpan], what: str) -> ReceivedSpan:
    assert len(spans) == 1, f"{what}: {[s.name for s in spans]}"
    return spans[0]


def requests_of(receiver: Receiver, caller: str, action: str) -> list[ReceivedSpan]:
    return [
        s
        for s in receiver.spans
        if s.attributes.get("ziggie.caller") == caller and s.name == action
    ]


async def test_an_agent_tree_is_one_trace(tmp_path: Path, receiver: Receiver) -> None:
    work = tmp_path / "work"
    work.mkdir()
    crashy = spec("l3-crashy", work, "L3", restart="transient", env={"DEMO_CRASH_AT": "3"})
    steady = spec("l3-steady", work, "L3")
    l2 = spec("l2", work, "L2", env={"DEMO_CHILDREN": json.dumps([crashy, steady])})
    l1 = spec("l1", work, "L1", env={"DEMO_CHILDREN": json.dumps([l2])})
    home = tmp_path / "home"
    link = "http://traces.example/trace/{trace_id}"
    async with (
        coordinator(home, otel_exporter_otlp_endpoint=receiver.url, trace_url=link) as (rt, _c),
        AgentDeploymentClient(home / "agent-queue") as client,
    ):
        with event_waits(rt) as waits:
            answer = await client.deploy_agent(AgentSpec.model_validate(l1))
            assert answer.status == "deployed", answer
            await waits.event("restarted", "l3-crashy", timeout=60)
            await waits.event("started", "l3-steady", timeout=60)
            status = await client.check_agent_status("l3-steady")
            assert status.agent is not None
            trace_id = status.agent["trace_id"]
            assert status.agent["trace_url"] == f"http://traces.example/trace/{trace_id}"
            assert (await client.terminate_agent("l1", timeout=30)).status == "terminated"

    # The coordinator stopped: every span was flushed to the receiver on the way out.
    l1s = receiver.agent_spans("l1")
    l2s = receiver.agent_spans("l2")
    steadies = receiver.agent_spans("l3-steady")
    crashes = receiver.agent_spans("l3-crashy")
    top, mid, leaf = one(l1s, "l1"), one(l2s, "l2"), one(steadies, "l3-steady")
    assert len(crashes) == 2, [s.attributes for s in crashes]
    first, second = crashes

    # One trace for the whole tree, the top-level agent under the operator's request.
    agents = [top, mid, leaf, first, second]
    assert {s.trace_id for s in agents} == {trace_id}
    deploy = one(requests_of(receiver, "operator", "deploy_agent"), "the operator's deploy")
    assert deploy.trace_id == trace_id
    assert deploy.parent_id == ""  # the operator sent no trace context: a new trace
    assert deploy.attributes["ziggie.transport"] == "file_queue"
    assert deploy.attributes["gen_ai.agent.id"] == "l1"
    assert top.parent_id == deploy.span_id

    # Parent links mirror the tree; a restarted incarnation links to the one it replaces.
    assert mid.parent_id == top.span_id
    assert leaf.parent_id == mid.span_id
    assert first.parent_id == mid.span_id
    assert second.parent_id == mid.span_id
    assert [(k.span_id, k.attributes) for k in second.links] == [
        (first.span_id, {"ziggie.link": "restart_of"})
    ]
    assert second.attributes["ziggie.restarted"] is True
    assert first.attributes["ziggie.restarted"] is False

    # The L1 deployed the L2 through its own queue, in its own span (its TRACEPARENT).
    by_l1 = one(requests_of(receiver, "l1", "deploy_agent"), "the L1's deploy")
    assert by_l1.parent_id == top.span_id
    assert by_l1.attributes["ziggie.transport"] == "file_queue"
    assert [(k.span_id, k.attributes) for k in mid.links] == [
        (by_l1.span_id, {"ziggie.link": "deployed_by"})
    ]

    # The GenAI conventions for agents, and ours.
    assert top.name == "invoke_agent l1"
    assert top.kind == 3  # CLIENT: the agent runs in a process of its own
    assert top.service == "ziggie"
    for s, level in ((top, "L1"), (mid, "L2"), (leaf, "L3")):
        assert s.attributes["gen_ai.operation.name"] == "invoke_agent"
        assert s.attributes["gen_ai.agent.name"] == s.attributes["gen_ai.agent.id"]
        assert s.attributes["ziggie.level"] == level
        assert s.attributes["ziggie.incarnation"] == 1
        assert isinstance(s.attributes["process.pid"], int)
    assert mid.attributes["ziggie.parent_id"] == "l1"
    assert first.attributes["ziggie.restart"] == "transient"
    assert (first.attributes["ziggie.incarnation"], second.attributes["ziggie.incarnation"]) == (
        1,
        2,
    )
    # The crash: an error, its exit code, its lifecycle as span events.
    assert first.status == 2
    assert first.attributes["ziggie.outcome"] == "error"
    assert first.attributes["process.exit.code"] == 3
    assert first.event_names[:2] == ["spawned", "started"]
    assert "process_exited" in first.event_names
    assert first.event_names[-1] == "exited"
    assert "restarted" in second.event_names
    assert second.attributes["ziggie.restarts"] == 1
    # The cascade: every one stopped on request (children first), none an error.
    for s in (top, mid, leaf, second):
        assert s.attributes["ziggie.outcome"] == "shutdown", s.attributes
        assert s.status != 2
        assert "stop_requested" in s.event_names
        assert s.event_names[-1] == "terminated"
    assert leaf.end <= mid.end <= top.end


#: An agent that runs the OpenTelemetry SDK itself: it continues the trace from its
#: TRACEPARENT, and deploys its child from inside its own span (through its queue).
SDK_AGENT = """
import json, os, signal, sys

import anyio
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from supervisor.client import AgentDeploymentClient
from supervisor.protocol import AgentSpec

provider = TracerProvider(resource=Resource.create({"service.name": "sdk-agent"}))
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))  # OTEL_EXPORTER_OTLP_*
carrier = {"traceparent": os.environ["TRACEPARENT"]}
context = TraceContextTextMapPropagator().extract(carrier)
child = AgentSpec.model_validate(json.loads(os.environ["CHILD"]))


async def deploy():
    async with AgentDeploymentClient() as client:
        return await client.deploy_agent(child, timeout=30)


with provider.get_tracer("sdk-agent").start_as_current_span("plan", context=context):
    answer = anyio.run(deploy)
    print(answer.status, answer.code, answer.error, flush=True)
provider.shutdown()
signal.sigwait({signal.SIGTERM})
"""


async def test_an_agent_using_the_sdk_joins_the_trace(tmp_path: Path, receiver: Receiver) -> None:
    work = tmp_path / "work"
    work.mkdir()
    program = work / "sdk_agent.py"
    program.write_text(SDK_AGENT)
    child = spec("sdk-child", work, "L2")
    parent = spec(
        "sdk",
        work,
        "L1",
        command=[sys.executable, str(program)],
        env={"CHILD": json.dumps(child)},
    )
    # Under confinement its program must be readable: the work directory is its to read.
    parent["context"]["permissions"]["read"] = [str(work)]
    home = tmp_path / "home"
    async with (
        coordinator(home, otel_exporter_otlp_endpoint=receiver.url) as (rt, _),
        AgentDeploymentClient(home / "agent-queue") as client,
    ):
        with event_waits(rt) as waits:
            assert (await client.deploy_agent(AgentSpec.model_validate(parent))).status == (
                "deployed"
            )
            await waits.event("started", "sdk-child", timeout=60)
        await anyio.to_thread.run_sync(
            lambda: receiver.wait(lambda spans: any(s.name == "plan" for s in spans))
        )
        assert (await client.terminate_agent("sdk", timeout=30)).status == "terminated"

    agent = one(receiver.agent_spans("sdk"), "the SDK agent's incarnation")
    plan = one([s for s in receiver.spans if s.name == "plan"], "the agent's own span")
    # Its own span continues its incarnation's (the TRACEPARENT it was given) ...
    assert plan.service == "sdk-agent"
    assert (plan.trace_id, plan.parent_id) == (agent.trace_id, agent.span_id)
    # ... and what it asked from inside that span continues it too.
    deploy = one(requests_of(receiver, "sdk", "deploy_agent"), "the agent's deploy")
    assert (deploy.trace_id, deploy.parent_id) == (plan.trace_id, plan.span_id)
    kid = one(receiver.agent_spans("sdk-child"), "its child")
    assert (kid.trace_id, kid.parent_id) == (agent.trace_id, agent.span_id)
    assert [k.span_id for k in kid.links] == [deploy.span_id]


async def test_http_continues_the_callers_trace(tmp_path: Path, receiver: Receiver) -> None:
    """The ``traceparent`` header (and our HTTP client sends one from its caller's span)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import use_span

    work = tmp_path / "work"
    work.mkdir()
    home = tmp_path / "home"
    async with api(home, otel_exporter_otlp_endpoint=receiver.url) as a:
        caller = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
        body = {"agent_spec": spec("by-header", work, "L1")}
        answer = await a.client.post(
            "/v1/agents", json=body, headers={"traceparent": caller, "tracestate": "vendor=x"}
        )
        assert answer.status_code == 201, answer.text
        # The client: from inside a span of the calling program.
        from supervisor.client import HttpAgentClient

        tracer = TracerProvider().get_tracer("caller")
        with use_span(tracer.start_span("calling"), end_on_exit=True) as calling:
            async with HttpAgentClient(a.url, a.token) as client:
                deployed = await client.deploy_agent(
                    AgentSpec.model_validate(spec("by-client", work, "L1"))
                )
        assert deployed.status == "deployed", deployed
        theirs = calling.get_span_context()
        status = await a.client.get("/v1/agents/by-header")
        assert status.json()["agent"]["trace_id"] == CALLER_TRACE
        for agent_id in ("by-header", "by-client"):
            assert (await a.client.delete(f"/v1/agents/{agent_id}")).status_code == 200

    post = [s for s in receiver.spans if s.name == "POST /v1/agents"]
    assert len(post) == 2
    by_header = next(s for s in post if s.trace_id == CALLER_TRACE)
    assert by_header.parent_id == CALLER_SPAN
    assert by_header.kind == 2  # SERVER
    assert by_header.attributes["http.route"] == "/v1/agents"
    assert by_header.attributes["http.response.status_code"] == 201
    assert by_header.attributes["ziggie.caller"] == "operator"
    top = one(receiver.agent_spans("by-header"), "by-header")
    assert (top.trace_id, top.parent_id) == (CALLER_TRACE, by_header.span_id)
    by_client = next(s for s in post if s.trace_id != CALLER_TRACE)
    assert by_client.trace_id == f"{theirs.trace_id:032x}"
    assert by_client.parent_id == f"{theirs.span_id:016x}"
    assert one(receiver.agent_spans("by-client"), "by-client").parent_id == by_client.span_id
    deletes = [s for s in receiver.spans if s.name == "DELETE /v1/agents/{agent_id}"]
    assert len(deletes) == 2
