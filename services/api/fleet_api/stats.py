"""`GET /api/stats`: a window's task statistics (taskfleet.data.stats), the caller's own, one
user's for a service or admin token, or the whole fleet's for an admin token (`all=true`)."""

from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from fleet_api.auth import acting_for, principal
from fleet_api.errors import ApiError, json_response
from fleet_api.openapi import Operation
from fleet_api.routes import KERNEL, OPENAPI, parse_query, user_db
from taskfleet.core.constants import Status, TaskType
from taskfleet.core.messages import ID_PATTERN
from taskfleet.data.stats import task_stats
from taskfleet.store.tenancy import Db, audited

MAX_WINDOW_S = 90 * 86400


# A number of seconds, minutes, hours or days: whatever fits it is a window (beyond 90 days,
# 90 days), so that the schema says exactly what is accepted.
WINDOW_PATTERN = r"^[0-9]{1,9}(\.[0-9]{1,6})?[smhd]?$"
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def window_seconds(window: str) -> float:
    """The window in seconds, at most MAX_WINDOW_S (a longer one reads as that)."""
    unit = window[-1] if window[-1] in UNITS else "s"
    return min(float(window.rstrip("smhd")) * UNITS[unit], MAX_WINDOW_S)


class StatsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    window: str = Field(
        "24h",
        pattern=WINDOW_PATTERN,
        description="The tasks created this long ago or later: `90m`, `24h`, `7d`, or seconds;"
        " at most 90 days (a longer window reads as 90 days: see `window_s`).",
    )
    all: bool = Field(False, description="Admin scope only: every user's tasks.")
    user_id: str | None = Field(
        None,
        pattern=ID_PATTERN,
        description="Service or admin scope: this user's tasks (with `all`, this user's too).",
    )


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
    stats = await task_stats(db, user_id=user_id, window_s=window_seconds(query.window))
    return json_response(Stats.model_validate(stats).model_dump(mode="json"))


def _scope(request: web.Request, query: StatsQuery) -> tuple[Db, str | None]:
    who = principal(request)
    if not query.all or query.user_id is not None:
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
