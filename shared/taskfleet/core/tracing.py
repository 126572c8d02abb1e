"""OpenTelemetry tracing, off unless the standard OTEL_* variables ask for it.

On when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (OTLP over
HTTP), and neither OTEL_SDK_DISABLED=true nor OTEL_TRACES_EXPORTER=none; everything else
(OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER, OTEL_BSP_*, headers, timeout)
is read by the SDK itself. Off, the API's no-op tracer makes every span a cheap no-op.

The trace context travels in the AMQP message headers as W3C `traceparent` (and `tracestate`):
`headers()` takes the current context when a task's message is made, `context_of()` gives it
back to the worker that receives it. `traceparent()` is what a task keeps of it (its row's
`traceparent`, migrations/0029), so that the messages the outbox relay publishes later, long
after the request, carry it too (`stored()`). `add_trace_ids` puts `trace_id` and `span_id`
into every log line written inside a span, and `statement_span` makes a span of every
PostgreSQL statement run inside one (store/pool.py installs it as asyncpg's query logger only
when tracing is on).

Off, no span is made where none would show (`span`, `continues`): a no-op span still costs
~10 µs (two context managers, a context attached and detached), and a task made five. A
`traceparent` that comes in still passes through (into log lines, into the messages made under
it), as the API's no-op spans pass it.
"""

import contextlib
import os
import re
import time
from collections.abc import Callable, Mapping, MutableMapping
from contextlib import AbstractContextManager
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

tracer = trace.get_tracer("taskfleet")
_NO_OP = tracer  # the API's proxy: it makes no-op spans until a provider is installed
_OFF: AbstractContextManager[trace.Span] = contextlib.nullcontext(trace.INVALID_SPAN)
_FUNCTION = re.compile(r"\b(tf_[a-z0-9_]+)\s*\(")  # the store's functions (store/sql/)
STATEMENT_CHARS = 2_000  # db.statement's text at most; never the arguments (they hold data)

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
# Whether configure_tracing set up the export: only then does a task keep its traceparent.
_exporting = False


def enabled(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces to be exported."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(env.get(name) for name in _ENDPOINTS)


def configure_tracing(service: str) -> Callable[[], None]:
    """Export this process's spans over OTLP/HTTP when `enabled()`; returns what flushes and
    stops the export at exit (nothing to do when off). `service` names the process unless
    OTEL_SERVICE_NAME does."""
    if not enabled():
        return lambda: None
    # Imported here: a process with tracing off never loads the SDK and its exporter.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": service}).merge(OTELResourceDetector().detect())
    if os.environ.get("OTEL_SERVICE_NAME"):
        resource = resource.merge(Resource({"service.name": os.environ["OTEL_SERVICE_NAME"]}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    global _exporting
    _exporting = True
    return provider.shutdown


def recording() -> bool:
    """Whether spans are made: configure_tracing installed a provider, or `tracer` was
    replaced (a test's own). Otherwise every span would be the API's no-op."""
    return _exporting or tracer is not _NO_OP


def span(name: str, **kwargs: Any) -> AbstractContextManager[trace.Span]:
    """`tracer.start_as_current_span(name, **kwargs)` in the current context; while not
    `recording()`, a context that does nothing. (A no-op span's child is the same no-op span,
    so nothing is lost: the current span, valid or not, stays current.)"""
    if not recording():
        return _OFF
    return tracer.start_as_current_span(name, **kwargs)


def continues(carrier: Mapping[str, Any] | None) -> bool:
    """Whether a span made from these headers' context would show: tracing is on, or they
    carry a trace to pass through (the no-op span then makes it current)."""
    return recording() or (carrier is not None and "traceparent" in carrier)


def headers() -> dict[str, str]:
    """The current trace context as message headers (`traceparent`); empty outside a span."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def traceparent() -> str | None:
    """The current span's W3C `traceparent`, for a task made in it to keep (its row's column):
    None outside a span, and always None with tracing off in this process. Off, the no-op span
    of a request still passes a client's `traceparent` on to the message published at once
    (`headers()`), but nothing more is written than the NULL a row has anyway."""
    if not _exporting:
        return None
    return headers().get("traceparent")


def kept(message_headers: Mapping[str, Any] | None) -> str | None:
    """The `traceparent` a message carries, for the task row its claim creates to keep (a
    chat message a backend published straight to the queue); None with tracing off here,
    as `traceparent()`."""
    if not _exporting:
        return None
    return carried(message_headers).get("traceparent")


def stored(value: str | None) -> dict[str, str]:
    """The message headers of a task's kept `traceparent` (none without one)."""
    return {"traceparent": value} if value else {}


def context_of(message_headers: Mapping[str, Any] | None) -> context.Context:
    """The trace context a message's headers carry."""
    return propagate.extract(carried(message_headers))


def carried(message_headers: Mapping[str, Any] | None) -> dict[str, str]:
    """The trace headers among a message's (AMQP may hand text back as bytes)."""
    return {
        key: value.decode(errors="replace") if isinstance(value, bytes) else str(value)
        for key, value in (message_headers or {}).items()
        if key in ("traceparent", "tracestate")
    }


def add_trace_ids(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: `trace_id` and `span_id` of the span the line is written in."""
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        event.setdefault("trace_id", format(span.trace_id, "032x"))
        event.setdefault("span_id", format(span.span_id, "016x"))
    return event


def statement_span(query: Any) -> None:
    """An asyncpg query logger (its LoggedQuery): a CLIENT span for the statement, back-dated
    by its `elapsed`, under the span that ran it. Statements outside any span (the relay's and
    heartbeat's polls) make none: each would be a trace of its own."""
    # The span that ran it may have ended by now (the logger runs on the loop's next turn, in
    # the caller's context), so its context is asked, not whether it still records.
    parent = trace.get_current_span().get_span_context()
    if not (parent.is_valid and parent.trace_flags.sampled):
        return
    end = time.time_ns()
    text = str(query.query)
    function = _FUNCTION.search(text)
    name = function.group(1) if function else (text.split(None, 1) or ["statement"])[0].upper()
    span = tracer.start_span(
        name,
        kind=SpanKind.CLIENT,
        start_time=end - int(query.elapsed * 1e9),
        attributes={"db.system": "postgresql", "db.statement": text[:STATEMENT_CHARS]},
    )
    if query.exception is not None:
        span.set_status(Status(StatusCode.ERROR, type(query.exception).__name__))
    span.end(end_time=end)
