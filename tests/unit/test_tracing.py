"""taskfleet.core.tracing: on only when the OTEL_* variables ask for an OTLP endpoint; the
trace context through message headers (as AMQP may hand them back: bytes); trace ids in log
lines written inside a span, none outside."""

from typing import Any

import asyncpg
import pytest
from asyncpg.connection import LoggedQuery
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from taskfleet.core import tracing

# A provider of this test's own: the process's global one stays the no-op.
LOCAL = TracerProvider().get_tracer("test")


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x"}, False),  # a name alone exports nothing
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_tracing_is_on_only_when_an_endpoint_is_set(env: dict[str, str], on: bool) -> None:
    assert tracing.enabled(env) is on


def test_off_the_process_keeps_the_no_op_tracer(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    tracing.configure_tracing("taskfleet-test")()
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)
    with tracing.tracer.start_as_current_span("nothing") as span:
        assert not span.is_recording()
        assert tracing.headers() == {}
        assert tracing.add_trace_ids(None, "info", {"event": "e"}) == {"event": "e"}


def test_the_context_travels_in_headers_and_names_the_span_in_log_lines() -> None:
    with LOCAL.start_as_current_span("request") as span:
        headers = tracing.headers()
        line = tracing.add_trace_ids(None, "info", {"event": "e"})
    ids = span.get_span_context()
    # version-trace id-span id-flags (sampled, and with this SDK the random-id flag too)
    assert headers["traceparent"].startswith(f"00-{ids.trace_id:032x}-{ids.span_id:016x}-")
    assert line == {
        "event": "e",
        "trace_id": f"{ids.trace_id:032x}",
        "span_id": f"{ids.span_id:016x}",
    }
    # A worker reads it back from the message's headers, whatever else they hold.
    received = {"traceparent": headers["traceparent"].encode(), "x-taskfleet-copy": "c1"}
    parent = trace.get_current_span(tracing.context_of(received)).get_span_context()
    assert (parent.trace_id, parent.span_id) == (ids.trace_id, ids.span_id)
    assert not trace.get_current_span(tracing.context_of(None)).get_span_context().is_valid


def test_a_statement_run_in_a_span_is_a_span_under_it(monkeypatch: pytest.MonkeyPatch) -> None:
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    monkeypatch.setattr(tracing, "tracer", provider.get_tracer("test"))

    def logged(query: str, elapsed: float, exception: BaseException | None = None) -> Any:
        return LoggedQuery(query, (), None, elapsed, exception, None, None)

    tracing.statement_span(logged("SELECT 1", 0.5))  # outside any span: no trace of its own
    assert exported.get_finished_spans() == ()
    with tracing.tracer.start_as_current_span("claim") as claim:
        tracing.statement_span(logged("SELECT * FROM tf_claim($1, $2)", 0.25))
        tracing.statement_span(
            logged("update tasks SET x = 1", 0.0, asyncpg.DeadlockDetectedError())
        )
    function, update = exported.get_finished_spans()[:2]
    assert (function.name, update.name) == ("tf_claim", "UPDATE")
    assert function.parent is not None
    assert function.parent.span_id == claim.get_span_context().span_id
    assert function.attributes is not None
    assert function.attributes["db.statement"] == "SELECT * FROM tf_claim($1, $2)"
    assert function.end_time is not None
    assert function.start_time is not None
    assert function.end_time - function.start_time == 250_000_000
    assert function.status.is_ok
    assert not update.status.is_ok


CLIENT_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_off_a_task_keeps_no_trace_even_where_a_client_sent_one() -> None:
    # The no-op tracer passes a client's context on to the message published at once...
    context = tracing.context_of({"traceparent": CLIENT_TRACEPARENT})
    with tracing.tracer.start_as_current_span("request", context=context):
        assert tracing.headers()["traceparent"] == CLIENT_TRACEPARENT
        # ... but off, nothing more than a NULL is written with the task.
        assert tracing.traceparent() is None


def test_on_a_task_keeps_the_traceparent_of_the_span_it_is_made_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tracing, "_exporting", True)
    assert tracing.traceparent() is None  # outside any span
    with LOCAL.start_as_current_span("request"):
        kept = tracing.traceparent()
        assert kept == tracing.headers()["traceparent"]
    # What the relay puts on the task's later messages, and a worker reads back.
    assert tracing.stored(kept) == {"traceparent": kept}
    assert tracing.stored(None) == {}
    assert tracing.carried({"traceparent": str(kept).encode(), "x-other": "1"}) == {
        "traceparent": kept
    }


def test_a_backend_s_message_gives_the_row_its_claim_creates_its_traceparent_only_when_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    headers = {"traceparent": CLIENT_TRACEPARENT.encode(), "tracestate": "v=1", "x-other": "1"}
    monkeypatch.setattr(tracing, "_exporting", True)
    assert tracing.kept(headers) == CLIENT_TRACEPARENT  # AMQP may hand text back as bytes
    assert tracing.kept({"x-other": "1"}) is None
    assert tracing.kept(None) is None
    monkeypatch.setattr(tracing, "_exporting", False)  # off: the row's column stays NULL
    assert tracing.kept(headers) is None


def test_off_no_span_is_made_and_a_traceparent_that_comes_in_still_passes_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tracing, "_exporting", False)
    assert not tracing.recording()
    assert not tracing.continues(None)
    assert not tracing.continues({"x-taskfleet-copy": "c1"})
    with tracing.span("claim") as span:
        assert span is trace.INVALID_SPAN  # nothing made, nothing made current
        assert not trace.get_current_span().get_span_context().is_valid
    # A client's trace: the message path makes the span that passes it on.
    with LOCAL.start_as_current_span("client") as client:
        headers = tracing.headers()
    assert tracing.continues(headers)
    process = tracing.tracer.start_as_current_span("process", context=tracing.context_of(headers))
    with process, tracing.span("claim"):  # the claim's is skipped: the client's stays current
        line = tracing.add_trace_ids(None, "info", {"event": "e"})
    assert line["trace_id"] == f"{client.get_span_context().trace_id:032x}"


def test_spans_are_made_once_a_tracer_records(monkeypatch: pytest.MonkeyPatch) -> None:
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    monkeypatch.setattr(tracing, "tracer", provider.get_tracer("test"))
    assert tracing.recording()
    assert tracing.continues(None)
    with tracing.span("run"):
        pass
    assert [s.name for s in exported.get_finished_spans()] == ["run"]
