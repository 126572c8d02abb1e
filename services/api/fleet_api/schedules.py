"""Schedule routes (docs/scheduling.md#schedules): recurring chat tasks, a cron expression in a
time zone or an interval, each run an ordinary task with `schedule_id`. The runs are made by
the schedule runner (taskfleet.data.schedule_runner), one per fleet; these routes only keep
the schedules (taskfleet.data.schedules), each user's under row security."""

from dataclasses import replace
from typing import Any
from uuid import UUID

from aiohttp import web

from fleet_api.auth import acting_for, principal
from fleet_api.errors import ApiError, json_response, not_found
from fleet_api.openapi import Operation
from fleet_api.routes import KERNEL, OPENAPI, create_in, parse_body, parse_query, user_db
from fleet_api.submitting import check_repeat, idempotency_key, request_digest
from taskfleet.client.schedule_models import (
    Schedule,
    ScheduleFields,
    ScheduleList,
    SchedulePatch,
    ScheduleQuery,
    ScheduleRequest,
)
from taskfleet.data import schedules
from taskfleet.data.recurrence import BadRecurrence, Recurrence
from taskfleet.store.tenancy import Db, audited


def _invalid(exc: BadRecurrence) -> ApiError:
    where = [{"loc": ["body", exc.field], "msg": str(exc)}]
    return ApiError(422, "invalid_schedule", str(exc), where)


def _recurrence(fields: ScheduleFields, old: Recurrence | None = None) -> Recurrence:
    """The recurrence `fields` give, over `old` for a change (a new cron drops the interval
    and the other way round); 422 when it cannot make ticks."""
    if fields.cron is not None and fields.interval_s is not None:
        raise _invalid(BadRecurrence("cron", "give exactly one of cron and interval_s"))
    cron, interval_s = (old.cron, old.interval_s) if old is not None else (None, None)
    if fields.cron is not None or fields.interval_s is not None:
        cron, interval_s = fields.cron, fields.interval_s
    timezone = fields.timezone or (old.timezone if old is not None else "UTC")
    try:
        return Recurrence(cron, interval_s, timezone)
    except BadRecurrence as exc:
        raise _invalid(exc) from None


def _answer(schedule: dict[str, Any], status: int = 200) -> web.Response:
    body = Schedule.model_validate(schedule).model_dump(mode="json")
    headers = {"Location": f"/api/schedules/{schedule['id']}"} if status == 201 else None
    return json_response(body, status=status, headers=headers)


async def create_schedule(request: web.Request) -> web.Response:
    """Store a schedule: 201 with it (the same one again for a repeated Idempotency-Key)."""
    body = await parse_body(request, ScheduleRequest)
    user_id = acting_for(request, body.user_id, reading=False, what="schedule")
    spec = schedules.Spec(
        _recurrence(body),
        body.task.model_dump(exclude_none=True),
        body.missed or "skip",
        True if body.enabled is None else body.enabled,
    )
    key = idempotency_key(request)
    digest = request_digest("schedule", **body.model_dump(mode="json", exclude={"user_id"}))
    db = user_db(request, user_id)
    made = await create_in(
        db,
        lambda conn: schedules.create(conn, user_id, spec, key=key, digest=digest),
        "send it again with the same Idempotency-Key, or look in GET /api/schedules first",
    )
    if not made.created:
        check_repeat(made.request_digest, digest)
    return _answer(made.schedule, 201)


async def list_schedules(request: web.Request) -> web.Response:
    """The caller's schedules (a service's or admin's: `user_id`'s; an admin's: everyone's)."""
    query = parse_query(request, ScheduleQuery)
    who = principal(request)
    db: Db
    if who.scope == "admin" and query.user_id is None:
        db = audited(request.app[KERNEL].pool, who.user_id, "GET /api/schedules")
        user_id = None
    else:
        user_id = acting_for(request, query.user_id, reading=True, what="user")
        db = user_db(request, user_id)
    found = await schedules.listing(db, user_id=user_id, limit=query.limit)
    answer = ScheduleList.model_validate({"schedules": found})
    return json_response(answer.model_dump(mode="json"))


async def _schedule_db(request: web.Request) -> tuple[Db, UUID]:
    """The statements that may see the schedule in the path: its owner's; 404 otherwise."""
    schedule_id = UUID(request.match_info["schedule_id"])  # checked by its PathParam
    who = principal(request)
    owner = who.user_id
    if who.scope != "user":
        found = await schedules.schedule_owner(request.app[KERNEL].pool, schedule_id)
        owner = found or who.user_id
    return user_db(request, owner), schedule_id


async def get_schedule(request: web.Request) -> web.Response:
    """The schedule with its next and last runs; 404 if absent or another user's."""
    db, schedule_id = await _schedule_db(request)
    schedule = await schedules.get(db, schedule_id)
    if schedule is None:
        raise not_found("schedule not found")
    return _answer(schedule)


async def patch_schedule(request: web.Request) -> web.Response:
    """Change some of its fields: pause (`enabled: false`), resume, another time or task."""
    body = await parse_body(request, SchedulePatch)
    db, schedule_id = await _schedule_db(request)

    def apply(old: schedules.Spec) -> schedules.Spec:
        task = body.task.model_dump(exclude_none=True) if body.task is not None else old.task
        new = replace(old, recurrence=_recurrence(body, old.recurrence), task=task)
        if body.missed is not None:
            new = replace(new, missed=body.missed)
        return new if body.enabled is None else replace(new, enabled=body.enabled)

    schedule = await schedules.change(db, schedule_id, apply)
    if schedule is None:
        raise not_found("schedule not found")
    return _answer(schedule)


async def delete_schedule(request: web.Request) -> web.Response:
    """Delete it: no more runs; the runs it made stay, with its id. 204."""
    db, schedule_id = await _schedule_db(request)
    if not await schedules.delete(db, schedule_id):
        raise not_found("schedule not found")
    return web.Response(status=204)


def add_schedule_routes(app: web.Application) -> None:
    """Declare the schedule routes."""
    api, tags = app[OPENAPI], ("schedules",)
    one = "/api/schedules/{schedule_id}"
    for op in (
        Operation(
            "POST", "/api/schedules", create_schedule, "Create a recurring task", Schedule, 201,
            body=ScheduleRequest, errors=(400, 401, 403, 409, 413, 422, 503), tags=tags,
            idempotent=True,
        ),
        Operation(
            "GET", "/api/schedules", list_schedules, "Schedules, newest first", ScheduleList,
            query=ScheduleQuery, tags=tags,
        ),
        Operation("GET", one, get_schedule, "A schedule", Schedule, tags=tags),
        Operation(
            "PATCH", one, patch_schedule, "Change, pause or resume a schedule", Schedule,
            body=SchedulePatch, tags=tags,
        ),
        Operation(
            "DELETE", one, delete_schedule, "Delete a schedule (its runs stay)", None, 204,
            errors=(401, 404, 503), tags=tags,
        ),
    ):  # fmt: skip
        api.add(app, op)
