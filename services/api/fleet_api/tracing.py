"""A span per API request (off unless tracing is: taskfleet.core.tracing), named by its route
template, continuing the trace a client's `traceparent` names. The task messages a request
makes carry its context on to the workers (taskfleet.store.records.Outgoing)."""

from aiohttp import web
from aiohttp.typedefs import Handler
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from fleet_api.metrics import route_of
from taskfleet.core import tracing


@web.middleware
async def tracing_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The request as a SERVER span, its status recorded (5xx: an error)."""
    if not tracing.continues(request.headers):  # no span would show: none made
        return await handler(request)
    route = route_of(request)
    with tracing.tracer.start_as_current_span(
        f"{request.method} {route}",
        context=tracing.context_of(request.headers),
        kind=SpanKind.SERVER,
        attributes={"http.request.method": request.method, "http.route": route},
    ) as span:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            _status(span, exc.status)
            raise
        _status(span, response.status)
        return response


def _status(span: trace.Span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(StatusCode.ERROR)
