"""The API's request metrics: `taskfleet_http_requests_total{route,method,status}` and
`taskfleet_http_request_duration_seconds{route,method}`, by route template (`/api/tasks/{task_id}`,
never the raw path: one series per route, whatever ids clients send)."""

import time

from aiohttp import web
from aiohttp.typedefs import Handler

from taskfleet.core.metrics import HTTP_DURATION, HTTP_REQUESTS

# A path no route matches (a 404 or 405 from the router): one label for all of them.
UNMATCHED = "unmatched"


def route_of(request: web.Request) -> str:
    """The template of the route that matched `request`, or `unmatched`."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Counts and times every request; outermost, so it sees the status the client gets
    (error_middleware has already turned failures into their error body)."""
    started = time.perf_counter()
    status = 500  # unless a response or an HTTP exception says otherwise
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        route = route_of(request)
        HTTP_REQUESTS.labels(route, request.method, str(status)).inc()
        HTTP_DURATION.labels(route, request.method).observe(time.perf_counter() - started)
