"""Routes are declared once, with the pydantic models that validate them; /openapi.json is
generated from those declarations, so the spec cannot drift from what the code accepts."""

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from fleet_api.models import ErrorBody
from taskfleet.messages import ID_PATTERN

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ERROR_TEXT = {
    400: "Malformed request", 401: "Missing or invalid token", 403: "Not allowed for this scope",
    404: "Not found (or another user's)", 405: "Method not allowed", 409: "Conflict with the state",
    413: "Too large", 415: "Unsupported media type", 422: "Does not fit the schema",
    429: "Too many requests", 503: "A dependency is unavailable; retry",
}  # fmt: skip
COMMON_ERRORS = (400, 401, 404, 413, 422, 503)

# The path parameters every route module shares; anything else is a plain string.
PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "task_id": {"type": "string", "format": "uuid"},
    "user_id": {"type": "string", "pattern": ID_PATTERN},
    "chat_id": {"type": "string", "pattern": ID_PATTERN},
    "camera_id": {"type": "string", "pattern": ID_PATTERN},
    "document_id": {"type": "string", "format": "uuid"},
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
    # Schemas of path parameters; a name not listed here is described by PATH_PARAMETERS.
    path_schemas: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class OpenApi:
    title: str
    version: str
    operations: list[Operation] = field(default_factory=list)

    def add(self, app: web.Application, op: Operation) -> None:
        app.router.add_route(op.method, op.path, op.handler)
        self.operations.append(op)

    def document(self) -> dict[str, Any]:
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


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional query parameter is absent, never null: drop pydantic's null branch."""
    options = [s for s in schema.get("anyOf", []) if s != {"type": "null"}]
    if len(options) == 1:
        rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
        return {**rest, **options[0]}
    return schema


def _operation(op: Operation) -> dict[str, Any]:
    params = [
        {"name": name, "in": "path", "required": True,
         "schema": op.path_schemas.get(name) or PATH_PARAMETERS.get(name, {"type": "string"})}
        for name in re.findall(r"{(\w+)}", op.path)
    ]  # fmt: skip
    if op.query is not None:
        props = op.query.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, prop in props.get("properties", {}).items():
            params.append(
                {"name": name, "in": "query", "required": False, "schema": _not_null(prop)}
            )
    ok: dict[str, Any] = {"description": "OK"}
    if op.response is not None:
        ok["content"] = {"application/json": {"schema": _ref(op.response)}}
    responses: dict[str, Any] = {str(op.status): ok}
    for status in op.errors:
        if op.public and status == 401:
            continue
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
