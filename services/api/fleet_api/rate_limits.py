"""Rate-limit routes (admin scope; docs/scheduling.md#rate-limits): fleet-wide limits per task
type or tool, enforced where tasks are claimed (taskfleet.data.rate_limits)."""

from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, model_validator

from fleet_api.admin import require_admin
from fleet_api.auth import principal
from fleet_api.errors import json_response, not_found
from fleet_api.openapi import Operation, PathParam
from fleet_api.routes import KERNEL, OPENAPI, parse_body
from taskfleet.data import rate_limits
from taskfleet.store.tenancy import Db, audited

# A malformed key is 422 (PUT makes what it names), on DELETE as well.
PATHS = {"key": PathParam({"type": "string", "pattern": rate_limits.KEY_PATTERN},
                          rate_limits.KEY_PATTERN, "rate limit", 422)}  # fmt: skip


class RateLimitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    per_s: float | None = Field(None, gt=0, le=100_000, description="Tokens a second.")
    per_minute: float | None = Field(None, gt=0, le=6_000_000, description="Or a minute.")
    burst: int = Field(1, ge=1, le=100_000, description="Tokens the bucket holds at most.")

    @model_validator(mode="after")
    def _one_rate(self) -> "RateLimitRequest":
        if (self.per_s is None) == (self.per_minute is None):
            raise ValueError("give exactly one of per_s and per_minute")
        return self

    def rate(self) -> float:
        """Tokens a second."""
        return self.per_s if self.per_s is not None else (self.per_minute or 0) / 60


class RateLimit(BaseModel):
    key: str = Field(description="`tool:<name>`, or a task type.")
    per_s: float
    burst: int
    throttled: int = Field(description="Claims put back for want of a token since it was set.")
    updated_at: datetime


class RateLimitList(BaseModel):
    limits: list[RateLimit]


def _db(request: web.Request) -> Db:
    require_admin(request)
    who = principal(request).user_id
    return audited(request.app[KERNEL].pool, who, f"{request.method} {request.path}")


async def list_rate_limits(request: web.Request) -> web.Response:
    """Every fleet-wide rate limit."""
    rows = await rate_limits.list_limits(_db(request))
    answer = RateLimitList(limits=[RateLimit.model_validate(r) for r in rows])
    return json_response(answer.model_dump(mode="json"))


async def put_rate_limit(request: web.Request) -> web.Response:
    """Set the limit of a task type or tool, for every replica at once."""
    db = _db(request)
    body = await parse_body(request, RateLimitRequest)
    row = await rate_limits.set_limit(
        db, request.match_info["key"], per_s=body.rate(), burst=body.burst
    )
    return json_response(RateLimit.model_validate(row).model_dump(mode="json"))


async def delete_rate_limit(request: web.Request) -> web.Response:
    """Remove a limit; 404 if there was none."""
    if not await rate_limits.remove_limit(_db(request), request.match_info["key"]):
        raise not_found("no rate limit on that key")
    return web.Response(status=204)


def add_rate_limit_routes(app: web.Application) -> None:
    """Declare the rate-limit routes."""
    api, tags, path = app[OPENAPI], ("operations",), "/api/admin/rate-limits"
    ops = [
        Operation("GET", path, list_rate_limits, "Fleet-wide rate limits", RateLimitList,
                  errors=(401, 403, 503), tags=tags),
        Operation("PUT", path + "/{key}", put_rate_limit, "Set a fleet-wide rate limit",
                  RateLimit, body=RateLimitRequest, errors=(400, 401, 403, 413, 422, 503),
                  tags=tags, path_params=PATHS),
        Operation("DELETE", path + "/{key}", delete_rate_limit, "Remove a rate limit", None, 204,
                  errors=(401, 403, 404, 422, 503), tags=tags, path_params=PATHS),
    ]  # fmt: skip
    for op in ops:
        api.add(app, op)
