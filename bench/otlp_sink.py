"""An OTLP/HTTP receiver that accepts every export and keeps nothing, for measuring what tracing
costs the fleet (not the collector): `python bench/otlp_sink.py [PORT]` then point the fleet's
`OTEL_EXPORTER_OTLP_ENDPOINT` at http://127.0.0.1:PORT. GET /stats tells the requests, bytes and
spans by name it was sent."""

import collections
import sys

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

received: dict[str, int] = {"requests": 0, "bytes": 0}
spans: collections.Counter[str] = collections.Counter()


async def export(request: web.Request) -> web.Response:
    body = await request.read()
    received["requests"] += 1
    received["bytes"] += len(body)
    request_ = ExportTraceServiceRequest.FromString(body)
    for resource in request_.resource_spans:
        for scope in resource.scope_spans:
            spans.update(span.name for span in scope.spans)
    return web.Response(content_type="application/x-protobuf", body=b"")


async def stats(_: web.Request) -> web.Response:
    return web.json_response({**received, "spans": dict(spans.most_common())})


def main() -> None:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", export)
    app.router.add_get("/stats", stats)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]) if len(sys.argv) > 1 else 4318)


if __name__ == "__main__":
    main()
