"""Tracing's switches and its pieces: off and free unless asked for, the W3C strings read
leniently, what a spec may not set, and an exporter queue that drops rather than waits."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from pydantic import ValidationError

from supervisor.coordinator import Settings
from supervisor.coordinator._callers import fingerprint
from supervisor.coordinator._tracing import TracingUnavailable, trace_config, trace_fields
from supervisor.coordinator._tracing._export import BoundedProcessor
from supervisor.protocol import (
    AgentSpec,
    DeploymentRequest,
    current_trace_context,
    valid_traceparent,
    valid_tracestate,
)

GOOD = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    ("environ", "settings", "expected"),
    [
        ({}, {}, None),  # nothing asked: off
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, {}, (("otlp",), "http/protobuf")),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c/v1/traces"},
            {},
            (("otlp",), "http/protobuf"),
        ),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            {},
            (("otlp",), "grpc"),
        ),
        ({"OTEL_TRACES_EXPORTER": "console,otlp"}, {}, (("console", "otlp"), "http/protobuf")),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, {}, None),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, {}, None),
        ({}, {"otel_exporter_otlp_endpoint": "http://c:4318"}, (("otlp",), "http/protobuf")),
        # a setting wins over its variable
        ({"OTEL_TRACES_EXPORTER": "otlp"}, {"otel_traces_exporter": "none"}, None),
        (
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_TRACES_EXPORTER": "otlp"},
            {"otel_exporter_otlp_protocol": "http/protobuf"},
            (("otlp",), "http/protobuf"),
        ),
    ],
)
def test_on_only_when_asked(
    environ: dict[str, str], settings: dict[str, str], expected: tuple[object, str] | None
) -> None:
    found = trace_config(Settings(**settings), environ)
    assert (None if found is None else (found.exporters, found.protocol)) == expected


@pytest.mark.parametrize(
    "environ",
    [
        {"OTEL_TRACES_EXPORTER": "jaeger"},
        {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
    ],
)
def test_what_the_extra_cannot_do_is_refused_by_name(environ: dict[str, str]) -> None:
    with pytest.raises(TracingUnavailable, match=r"jaeger|http/json"):
        trace_config(Settings(), environ)


def test_trace_url_is_an_http_template() -> None:
    assert Settings(trace_url="https://t.example/trace/{trace_id}").trace_url
    for bad in ("javascript:alert(1)//{trace_id}", "https://t.example/no-placeholder"):
        with pytest.raises(ValidationError):
            Settings(trace_url=bad)


def test_trace_fields_read_the_journal_as_untrusted() -> None:
    row = {"trace": f'{{"span": "{GOOD}"}}'}
    assert trace_fields(row, "https://t/{trace_id}") == {
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "trace_url": "https://t/4bf92f3577b34da6a3ce929d0e0e4736",
    }
    for junk in (None, "", "[]", "{", '{"span": "00-zz"}', '{"span": 7}'):
        assert trace_fields({"trace": junk}, None) == {}


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (GOOD, True),
        (" " + GOOD + " ", True),
        ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later", True),  # a future version
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more", False),
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", False),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", False),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", False),
        ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", False),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", False),
        ("x" * 10_000, False),
        (7, False),
    ],
)
def test_traceparent_is_read_as_w3c_says(value: object, valid: bool) -> None:
    assert (valid_traceparent(value) is not None) is valid


def test_a_malformed_trace_context_is_ignored_not_refused() -> None:
    base = {"parent_agent": "Ziggie", "action": "status_check", "target_agent_id": "a"}
    request = DeploymentRequest.model_validate(
        {**base, "traceparent": "garbage", "tracestate": "\x00" * 600}
    )
    assert (request.traceparent, request.tracestate) == (None, None)
    good = DeploymentRequest.model_validate({**base, "traceparent": GOOD, "tracestate": "v=1"})
    assert (good.traceparent, good.tracestate) == (GOOD, "v=1")
    assert valid_tracestate("a" * 513) is None
    # A retry of the same request from another span of its caller is the same request.
    assert fingerprint(good) == fingerprint(request)


def test_a_spec_cannot_forge_its_place_in_a_trace() -> None:
    for name in ("TRACEPARENT", "TRACESTATE"):
        with pytest.raises(ValidationError, match=name):
            AgentSpec.model_validate(
                {
                    "level": "L1",
                    "name": "n",
                    "role": "r",
                    "task": "t",
                    "context": {"working_directory": "/tmp"},
                    "env": {name: GOOD},
                }
            )


def test_clients_carry_the_callers_trace_context() -> None:
    assert current_trace_context({"TRACEPARENT": GOOD, "TRACESTATE": "v=1"}) == (GOOD, "v=1")
    assert current_trace_context({"TRACEPARENT": "nope", "TRACESTATE": "v=1"}) == (None, None)
    # A program that uses OpenTelemetry: its current span wins over the variable.
    from opentelemetry.trace import use_span

    span = TracerProvider().get_tracer("t").start_span("caller")
    with use_span(span, end_on_exit=True):
        parent, _ = current_trace_context({"TRACEPARENT": GOOD})
    ctx = span.get_span_context()
    assert parent == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


class _Down(SpanExporter):
    """A collector that does not answer: each export hangs until let go, then fails."""

    def __init__(self) -> None:
        self.calls = 0
        self.entered = [threading.Event(), threading.Event()]
        self.release = [threading.Event(), threading.Event()]

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        call = min(self.calls, 1)
        self.calls += 1
        self.entered[call].set()
        self.release[call].wait(30)
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        pass


def test_the_export_queue_drops_and_counts_rather_than_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "3")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1")
    exporter = _Down()
    processor = BoundedProcessor(exporter)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    try:
        tracer.start_span("first").end()
        assert exporter.entered[0].wait(30)  # the exporter holds the first, and hangs
        for i in range(5):  # never waits: three are queued, two dropped
            tracer.start_span(f"s{i}").end()
        assert processor.dropped["queue_full"] == 2
        exporter.release[0].set()  # the first export fails; the next one hangs
        assert exporter.entered[1].wait(30)
        assert processor.dropped["export_failed"] == 1
        # A stop after a failed export does not wait for the collector: what is queued
        # is dropped, counted, and shutdown returns though an export still hangs.
        processor.shutdown()
        assert processor.dropped["shutdown"] == 2
        assert processor.dropped["export_failed"] == 1
        assert processor.exported == 0
        tracer.start_span("late").end()
        assert processor.dropped["shutdown"] == 3
    finally:
        exporter.release[1].set()


def test_off_imports_no_opentelemetry_and_gives_agents_no_trace(tmp_path: Path) -> None:
    """Tracing off is free: a coordinator deploys, answers and stops an agent without
    importing OpenTelemetry, and the agent gets no TRACEPARENT."""
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path

        import anyio

        from supervisor import AgentSpec, no_events, open_runtime
        from supervisor.client import AgentDeploymentClient
        from supervisor.coordinator import Settings, open_coordinator

        home, work = Path(sys.argv[1]), sys.argv[2]


        async def main():
            settings = Settings(home=home)
            async with open_runtime(events=no_events()) as rt, open_coordinator(rt, settings):
                async with AgentDeploymentClient(home / "agent-queue") as client:
                    spec = AgentSpec(
                        id="plain", level="L1", name="plain", role="r", task="t",
                        context={"working_directory": work}, env={"DEMO_PACE": "0.05"},
                    )
                    assert (await client.deploy_agent(spec)).status == "deployed"
                    pid = (await client.check_agent_status("plain")).pid
                    environ = Path(f"/proc/{pid}/environ").read_bytes()
                    assert (await client.terminate_agent("plain")).status == "terminated"
            print(b"TRACEPARENT=" in environ)
            print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))


        anyio.run(main, backend="trio")
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACE"))}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "home"), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["False", "[]"]
