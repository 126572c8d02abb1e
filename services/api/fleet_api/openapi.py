"""Routes are declared once, with the pydantic models that validate them; /openapi.json is
generated from those declarations, so the spec cannot drift from what the code accepts."""

import functools
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from fleet_api.errors import ApiError, not_found
from fleet_api.models import ErrorBody
from fleet_api.submitting import KEY_PATTERN
from taskfleet.core.messages import ID_PATTERN

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ERROR_TEXT = {
    400: "Malformed request", 401: "Missing or invalid token", 403: "Not allowed for this scope",
    404: "Not found (or another user's)", 405: "Method not allowed", 409: "Conflict with the state",
    413: "Too large", 415: "Unsupported media type", 422: "Does not fit the schema",
    429: "Too many requests", 503: "A dependency is unavailable; retry",
}  # fmt: skip
COMMON_ERRORS = (400, 401, 404, 413, 422, 503)

IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "The same key (per user) gives the same task; with another request, 409.",
    "schema": {"type": "string", "pattern": KEY_PATTERN},
}  # fmt: skip
LOCATION = {"description": "The task's URL", "schema": {"type": "string"}}

UUID_PATTERN = r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"


@dataclass(frozen=True)
class PathParam:
    """A path parameter: its schema in /openapi.json and the pattern the router checks before
    any handler runs, so a handler (and the SQL behind it) only ever sees a well-formed value.

    A malformed value names nothing that can exist: 404 as if absent, or `status` where the
    route creates what it names (a camera is made by its first frame or PUT)."""

    schema: dict[str, Any]
    pattern: str
    what: str
    status: int = 404

    def refusal(self, name: str) -> ApiError:
        """The answer to a `name` value that does not match: 404 as if absent, else `status`."""
        if self.status == 404:
            return not_found(f"{self.what} not found")
        where = [{"loc": ["path", name], "msg": f"does not match {self.pattern}"}]
        return ApiError(self.status, "invalid_request", f"{name}: not a {self.what} id", where)


def _id(what: str, status: int = 404) -> PathParam:
    return PathParam({"type": "string", "pattern": ID_PATTERN}, ID_PATTERN, what, status)


def _uuid(what: str) -> PathParam:
    return PathParam({"type": "string", "format": "uuid"}, UUID_PATTERN, what)


# The path parameters every route module shares. A route with a parameter that is neither
# here nor in its Operation's path_params is refused at start: none goes unchecked.
PATH_PARAMETERS: dict[str, PathParam] = {
    "task_id": _uuid("task"),
    "document_id": _uuid("document"),
    "batch_id": _uuid("batch"),
    "schedule_id": _uuid("schedule"),
    "user_id": _id("user"),
    "chat_id": _id("chat"),
    "camera_id": _id("camera", 422),
}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    response: type[BaseModel] | None = None
    status: int = 200
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = COMMON_ERRORS
    tags: tuple[str, ...] = ()
    public: bool = False
    # Non-JSON request bodies (multipart, images): media type -> JSON schema.
    raw_body: dict[str, Any] | None = None
    # A route that creates a task takes an Idempotency-Key (fleet_api.submitting).
    idempotent: bool = False
    # Path parameters of this route alone; the others are PATH_PARAMETERS.
    path_params: dict[str, PathParam] = field(default_factory=dict)

    def path_param(self, name: str) -> PathParam:
        """The route's own declaration of the parameter, else the shared one. ValueError for
        neither: the app then refuses to start."""
        found = self.path_params.get(name) or PATH_PARAMETERS.get(name)
        if found is None:
            raise ValueError(f"{self.method} {self.path}: path parameter {name!r} is undeclared")
        return found


@dataclass
class OpenApi:
    title: str
    version: str
    operations: list[Operation] = field(default_factory=list)

    def add(self, app: web.Application, op: Operation) -> None:
        """Route `op`, its path parameters checked first, and list it in /openapi.json."""
        app.router.add_route(op.method, op.path, _checked(op))
        self.operations.append(op)

    def document(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document (/openapi.json): every operation added, with its models."""
        models: set[type[BaseModel]] = {ErrorBody}
        for op in self.operations:
            models |= {m for m in (op.response, op.body, op.query) if m is not None}
        _, schema = models_json_schema(
            [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
            ref_template="#/components/schemas/{model}",
        )
        paths: dict[str, dict[str, Any]] = {}
        for op in self.operations:
            paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
        return {
            "openapi": "3.1.0",
            "info": {"title": self.title, "version": self.version},
            "paths": paths,
            "components": {
                "schemas": schema.get("$defs", {}),
                "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
                },
            },
            "security": [{"bearer": []}],
        }


def _checked(op: Operation) -> Handler:
    """The handler behind a check of every path parameter against its pattern."""
    checks = [
        (name, op.path_param(name), re.compile(op.path_param(name).pattern))
        for name in _path_names(op.path)
    ]
    if not checks:
        return op.handler

    @functools.wraps(op.handler)
    async def handler(request: web.Request) -> web.StreamResponse:
        for name, param, pattern in checks:
            # fullmatch: `$` would also match before a final newline.
            if not pattern.fullmatch(request.match_info[name]):
                raise param.refusal(name)
        return await op.handler(request)

    return handler


def _path_names(path: str) -> list[str]:
    return re.findall(r"{(\w+)}", path)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional query parameter is absent, never null: drop pydantic's null branch."""
    options = [s for s in schema.get("anyOf", []) if s != {"type": "null"}]
    if len(options) == 1:
        rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
        return {**rest, **options[0]}
    return schema


def _query_params(query: type[BaseModel] | None) -> list[dict[str, Any]]:
    if query is None:
        return []
    props = query.model_json_schema(ref_template="#/components/schemas/{model}")
    return [
        {"name": name, "in": "query", "required": False, "schema": _not_null(prop)}
        for name, prop in props.get("properties", {}).items()
    ]


def _operation(op: Operation) -> dict[str, Any]:
    params = [
        {"name": name, "in": "path", "required": True, "schema": op.path_param(name).schema}
        for name in _path_names(op.path)
    ]
    params += _query_params(op.query)
    if op.idempotent:
        params.append(IDEMPOTENCY_KEY)
    ok: dict[str, Any] = {"description": "OK"}
    if op.status == 202:
        ok["headers"] = {"Location": LOCATION}
    if op.response is not None:
        ok["content"] = {"application/json": {"schema": _ref(op.response)}}
    responses: dict[str, Any] = {str(op.status): ok}
    for status in op.errors:  # a public route lists its own (a refused sign-in code is 401)
        responses[str(status)] = {
            "description": ERROR_TEXT[status],
            "content": {"application/json": {"schema": _ref(ErrorBody)}},
        }
    doc: dict[str, Any] = {
        "summary": op.summary, "operationId": op.handler.__name__, "tags": list(op.tags),
        "parameters": params, "responses": responses,
    }  # fmt: skip
    if op.body is not None:
        doc["requestBody"] = {
            "required": True, "content": {"application/json": {"schema": _ref(op.body)}}
        }  # fmt: skip
    elif op.raw_body is not None:
        doc["requestBody"] = {
            "required": True, "content": {k: {"schema": v} for k, v in op.raw_body.items()}
        }  # fmt: skip
    if op.public:
        doc["security"] = []
    return doc
