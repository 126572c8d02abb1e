"""`GET /api/users/{user_id}/memories`: what the agent remembers about a user (docs/agent.md).

A user token sees only its own user's memories; another user's answer 404 as if absent. A
service or admin token may read any user's.
"""

from datetime import datetime
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from fleet_api.auth import principal
from fleet_api.errors import json_response, not_found
from fleet_api.openapi import Operation
from fleet_api.routes import KERNEL, OPENAPI, parse_query, user_db
from taskfleet.data.memories import list_memories


class MemoryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(100, ge=1, le=500)


class Memory(BaseModel):
    id: UUID
    fact: str
    source_task_id: UUID | None = Field(description="The chat task whose exchange it came from.")
    created_at: datetime


class MemoryList(BaseModel):
    user_id: str
    memories: list[Memory] = Field(description="Newest first.")


async def user_memories(request: web.Request) -> web.Response:
    """Facts extracted from the user's chats, deduplicated, newest first."""
    user_id = request.match_info["user_id"]
    if not principal(request).may_act_for(user_id):  # its pattern: checked by the router
        raise not_found("user not found")
    query = parse_query(request, MemoryQuery)
    kernel = request.app[KERNEL]
    memories = await list_memories(
        user_db(request, user_id), kernel.keyring, user_id, limit=query.limit
    )
    return json_response({"user_id": user_id, "memories": memories})


def add_memory_routes(app: web.Application) -> None:
    """Declare the memories route."""
    app[OPENAPI].add(
        app,
        Operation(
            "GET",
            "/api/users/{user_id}/memories",
            user_memories,
            "A user's memories",
            MemoryList,
            query=MemoryQuery,
            errors=(400, 401, 404, 422, 503),
            tags=("memories",),
        ),
    )
