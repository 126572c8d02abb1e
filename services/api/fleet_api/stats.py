"""`GET /api/stats`: a window's task statistics (taskfleet.data.stats), the caller's own, one
user's for a service or admin token, or the whole fleet's for an admin token (`all=true`)."""

from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fleet_api.auth import acting_for, principal
from fleet_api.errors import ApiError, json_response
from fleet_api.openapi import Operation
from fleet_api.routes import KERNEL, OPENAPI, parse_query, user_db
from taskfleet.core.constants import Status, TaskType
from taskfleet.core.messages import ID_PATTERN
from taskfleet.core.settings import parse_duration
from taskfleet.data.stats import task_stats
from taskfleet.store.tenancy import Db, audited

MAX_WINDOW_S = 90 * 86400


class StatsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    window: str = Field(
        "24h",
        max_length=20,
        pattern=r"^\s*\d+(\.\d+)?\s*[smhd]?\s*$",
        description="The tasks created this long ago or later: `90m`, `24h`, `7d`, or seconds;"
        " at most 90 days.",
    )
    all: bool = Field(False, description="Admin scope only: every user's tasks.")
    user_id: str | None = Field(
        None, pattern=ID_PATTERN, description="Service or admin scope: this user's tasks."
    )

    @field_validator("window")
    @classmethod
    def _a_duration(cls, window: str) -> str:
        if parse_duration(window) > MAX_WINDOW_S:
            raise ValueError("a window may be at most 90 days")
        return window

    @model_validator(mode="after")
    def _one_scope(self) -> "StatsQuery":
        if self.all and self.user_id is not None:
            raise ValueError("all=true and user_id exclude each other")
        return self


class Quantiles(BaseModel):
    p50: float | None
    p95: float | None


class StatsSummary(BaseModel):
    total: int = Field(description="Tasks created in the window.")
    by_status: dict[Status, int] = Field(description="Their statuses now.")
    success_rate: float | None = Field(
        description="completed / (completed + failed); null before any ended."
    )
    wait_s: Quantiles = Field(
        description="Seconds from when a task could run (created, or its `run_at`) to its first"
        " claim, over the claimed ones."
    )
    duration_s: Quantiles = Field(
        description="Seconds from the first claim to completion, over the completed ones."
    )


class Stats(StatsSummary):
    window_s: float
    since: datetime = Field(description="The window's start.")
    user_id: str | None = Field(description="Whose tasks; null: the whole fleet's.")
    by_type: dict[TaskType, StatsSummary] = Field(description="The same, per task type.")


async def get_stats(request: web.Request) -> web.Response:
    """The window's statistics; 403 for `all=true` without an admin token."""
    query = parse_query(request, StatsQuery)
    db, user_id = _scope(request, query)
    stats = await task_stats(db, user_id=user_id, window_s=parse_duration(query.window))
    return json_response(Stats.model_validate(stats).model_dump(mode="json"))


def _scope(request: web.Request, query: StatsQuery) -> tuple[Db, str | None]:
    who = principal(request)
    if not query.all:
        user_id = acting_for(request, query.user_id, reading=False, what="stats")
        return user_db(request, user_id), user_id
    if who.scope != "admin":
        raise ApiError(403, "forbidden", "fleet-wide statistics (all=true) need an admin token")
    return audited(request.app[KERNEL].pool, who.user_id, "GET /api/stats", all=True), None


def add_stats_routes(app: web.Application) -> None:
    """Declare `GET /api/stats`."""
    app[OPENAPI].add(
        app,
        Operation(
            "GET",
            "/api/stats",
            get_stats,
            "Task statistics over a window",
            Stats,
            query=StatsQuery,
            errors=(401, 403, 422, 503),
            tags=("tasks",),
        ),
    )
