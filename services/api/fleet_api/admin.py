"""Operator routes (admin scope): queue depths, dead letters, replay."""

import re

import structlog
from aiohttp import web

from fleet_api.auth import principal
from fleet_api.errors import ApiError, json_response, not_found
from fleet_api.models import (
    DeadLetterList,
    DeadLetterQuery,
    PurgeResult,
    QueueList,
    ReplayResult,
    WorkerList,
    WorkerQuery,
)
from fleet_api.openapi import Operation, PathParam
from fleet_api.routes import KERNEL, OPENAPI, parse_query
from taskfleet.broker.topology import work_queue_names
from taskfleet.core.constants import dlq_name
from taskfleet.data import queues
from taskfleet.runtime import registry

log = structlog.get_logger("fleet_api.admin")

# A work queue or its dead-letter queue, by name: the only values the `{queue}` path takes.
# `chat_tasks` means every priority level; `chat_tasks.high` that level alone.
QUEUE_NAMES = sorted([*work_queue_names(), *map(dlq_name, work_queue_names())])
QUEUE_PARAM = PathParam(
    {"type": "string", "enum": QUEUE_NAMES},
    "^(?:" + "|".join(map(re.escape, QUEUE_NAMES)) + ")$",
    "queue",
)


def require_admin(request: web.Request) -> None:
    """403 unless the caller's token has the admin scope."""
    if principal(request).scope != "admin":
        raise ApiError(403, "forbidden", "operator routes need an admin token")


def queue_param(request: web.Request) -> str:
    """The work queue the path names (a `.dlq` name gives its work queue); 404 for others."""
    try:
        return queues.work_queue(request.match_info["queue"])
    except queues.UnknownQueue as exc:
        raise not_found(str(exc)) from None


async def list_queues(request: web.Request) -> web.Response:
    """Every work queue and dead-letter queue: ready messages, consumers, and how many tasks
    of each work queue ended in the last minute."""
    require_admin(request)
    found = await queues.depths(request.app[KERNEL])
    rates = await queues.finished_last_minute(request.app[KERNEL])
    listed = [
        {
            "name": d.name,
            "messages": d.messages,
            "consumers": d.consumers,
            "dead_letter": d.dead_letter,
            "finished_last_min": rates.get(d.name),
        }
        for d in found
    ]
    return json_response({"queues": listed})


async def list_dead_letters(request: web.Request) -> web.Response:
    """A queue's dead letters with their reasons; they stay in the dead-letter queue."""
    require_admin(request)
    queue = queue_param(request)
    query = parse_query(request, DeadLetterQuery)
    letters = await queues.peek_dead_letters(request.app[KERNEL], queue, query.limit)
    return json_response({"queue": queue, "messages": letters})


async def replay_dead_letters(request: web.Request) -> web.Response:
    """Put a queue's dead letters back: each failed task runs again with fresh attempts."""
    require_admin(request)
    queue = queue_param(request)
    replayed, skipped = await queues.replay_dead_letters(
        request.app[KERNEL], queue, actor=principal(request).user_id
    )
    return json_response({"queue": queue, "replayed": replayed, "skipped": skipped})


async def purge_dead_letters(request: web.Request) -> web.Response:
    """Delete a queue's dead letters for good (the console asks for a confirmation first).
    Their tasks stay as they are (failed): Retry, Resume or Restart still run them."""
    require_admin(request)
    queue = queue_param(request)
    purged = await queues.purge_dead_letters(request.app[KERNEL], queue)
    log.info("dead_letters_purged", queue=queue, purged=purged, actor=principal(request).user_id)
    return json_response({"queue": queue, "purged": purged})


async def list_workers(request: web.Request) -> web.Response:
    """Worker processes from their heartbeats: live, lost (with tasks at risk), stopped."""
    require_admin(request)
    query = parse_query(request, WorkerQuery)
    found = await registry.list_workers(
        request.app[KERNEL].pool, include_gone=query.include_stopped
    )
    return json_response({"workers": found})


def add_admin_routes(app: web.Application) -> None:
    """Declare the operator routes; each answers 403 to a token without admin scope."""
    api, tags, errors = app[OPENAPI], ("admin",), (401, 403, 404, 422, 503)
    api.add(
        app,
        Operation(
            "GET",
            "/api/admin/queues",
            list_queues,
            "Queue depths",
            QueueList,
            errors=errors,
            tags=tags,
        ),
    )
    api.add(
        app,
        Operation(
            "GET",
            "/api/admin/workers",
            list_workers,
            "Worker processes",
            WorkerList,
            query=WorkerQuery,
            errors=errors,
            tags=tags,
        ),
    )
    api.add(
        app,
        Operation(
            "GET",
            "/api/admin/dlq/{queue}",
            list_dead_letters,
            "A queue's dead letters",
            DeadLetterList,
            query=DeadLetterQuery,
            errors=errors,
            tags=tags,
            path_params={"queue": QUEUE_PARAM},
        ),
    )
    api.add(
        app,
        Operation(
            "POST",
            "/api/admin/dlq/{queue}/replay",
            replay_dead_letters,
            "Replay a queue's dead letters",
            ReplayResult,
            errors=errors,
            tags=tags,
            path_params={"queue": QUEUE_PARAM},
        ),
    )
    api.add(
        app,
        Operation(
            "POST",
            "/api/admin/dlq/{queue}/purge",
            purge_dead_letters,
            "Delete a queue's dead letters",
            PurgeResult,
            errors=errors,
            tags=tags,
            path_params={"queue": QUEUE_PARAM},
        ),
    )
