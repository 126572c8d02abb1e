"""Task routes: read (and wait for the end: a long poll), list (cursor pagination, filters),
cancel and run again."""

import asyncio
from typing import Any

from aiohttp import web

from fleet_api.auth import principal
from fleet_api.errors import ApiError, json_response, not_found
from fleet_api.models import AdminTaskListQuery, Task, TaskListQuery, TaskPage, TaskQuery
from fleet_api.openapi import Operation
from fleet_api.routes import (
    KERNEL,
    OPENAPI,
    parse_query,
    task_db,
    task_id_param,
    user_db,
    visible_task,
)
from fleet_api.submitting import accepted, query_metadata
from fleet_api.ws import HUB
from taskfleet.core.constants import TERMINAL, TaskType, statuses
from taskfleet.data import operations
from taskfleet.data.operations import LINKS
from taskfleet.store.tenancy import Db, audited


async def get_task(request: web.Request) -> web.Response:
    """A task; a chat task also carries its assistant message (the reply so far). With
    `?wait=N`, answered once the task is terminal or after N seconds, whichever is first."""
    query = parse_query(request, TaskQuery)
    if not query.wait:
        return json_response(await visible_task(request))
    return json_response(await _wait_for_end(request, query.wait))


async def _wait_for_end(request: web.Request, wait_s: float) -> dict[str, Any]:
    """The task once terminal, or as it is when `wait_s` is up.

    Woken by the replica's event hub (fleet_api.hub), never by polling the database: the
    watch is in place (and the hub's queue bound) before the task is read, so an end that
    comes after the read wakes it. The hub also wakes it when its events may have a gap (a
    reconnect to RabbitMQ) and when the API stops: each wake reads the task once."""
    hub, task_id = request.app[HUB], task_id_param(request)
    deadline = asyncio.get_running_loop().time() + wait_s
    async with hub.watch(str(task_id)) as woken:
        while True:
            woken.clear()
            task = await visible_task(request)
            left = deadline - asyncio.get_running_loop().time()
            if task["status"] in TERMINAL or left <= 0 or hub.stopping:
                return task
            try:
                async with asyncio.timeout(left):
                    await woken.wait()
            except TimeoutError:
                pass


async def list_user_tasks(request: web.Request) -> web.Response:
    """A user's tasks, newest first (a user token: only its own user)."""
    who = principal(request)
    user_id = request.match_info["user_id"]
    if not who.may_act_for(user_id):
        raise not_found("user not found")
    return await _page(request, user_id)


async def list_my_tasks(request: web.Request) -> web.Response:
    """The caller's own tasks, newest first."""
    return await _page(request, principal(request).user_id)


async def list_every_users_tasks(request: web.Request) -> web.Response:
    """Every user's tasks (or `?user_id=`'s), newest first: admin scope, audited."""
    if principal(request).scope != "admin":
        raise ApiError(403, "forbidden", "every user's tasks need an admin token")
    query = parse_query(request, AdminTaskListQuery, metadata=True)
    db = audited(request.app[KERNEL].pool, principal(request).user_id, "GET /api/admin/tasks",
                 user_id=query.user_id)  # fmt: skip
    return await _page(request, query.user_id, query, db)


async def _page(
    request: web.Request,
    user_id: str | None,
    query: TaskListQuery | None = None,
    db: Db | None = None,
) -> web.Response:
    query = query or parse_query(request, TaskListQuery, metadata=True)
    links = {k: v for k in LINKS if (v := getattr(query, k)) is not None}
    try:
        page = await operations.list_tasks(
            db or user_db(request, str(user_id)),
            user_id=user_id,
            links=links,
            limit=query.limit,
            cursor=query.cursor,
            status=statuses(",".join(query.status)) if query.status else None,
            task_type=query.type.value if query.type else None,
            metadata=query_metadata(request),
            priority=query.priority,
        )
    except operations.BadCursor as exc:
        raise ApiError(400, "bad_cursor", str(exc)) from None
    keyring = request.app[KERNEL].keyring
    tasks = [operations.reveal_task(t, keyring) for t in page.tasks]
    return json_response({"tasks": tasks, "next_cursor": page.next_cursor})


async def cancel_task(request: web.Request) -> web.Response:
    """Queued: cancelled at once. Running: stopped by its worker within seconds. 409 if over."""
    task = await visible_task(request)
    task_id = task_id_param(request)
    db = await task_db(request, task_id)
    outcome = await operations.request_cancel(request.app[KERNEL], db, task_id)
    if outcome == "terminal":
        raise ApiError(409, "conflict", f"task is already {task['status']}")
    if outcome == "missing":
        raise not_found("task not found")
    return accepted(await visible_task(request), task_id)


async def retry_task(request: web.Request) -> web.Response:
    """Run a failed or cancelled task again, with a fresh budget of attempts. 409 otherwise."""
    task = await visible_task(request)
    db = await task_db(request, task["id"])
    outcome = await operations.rerun(request.app[KERNEL], db, task["id"], TaskType(task["type"]))
    if outcome == "conflict":
        raise ApiError(
            409, "conflict", f"only failed or cancelled tasks run again, not {task['status']}"
        )
    if outcome == "missing":
        raise not_found("task not found")
    return accepted(await visible_task(request), task["id"])


def add_task_routes(app: web.Application) -> None:
    """Declare the task routes."""
    api, tags = app[OPENAPI], ("tasks",)
    api.add(
        app,
        Operation("GET", "/api/admin/tasks", list_every_users_tasks,
                  "Every user's tasks (admin scope)", TaskPage, query=AdminTaskListQuery,
                  errors=(400, 401, 403, 422, 503), tags=("admin",)),
    )  # fmt: skip
    api.add(
        app,
        Operation(
            "GET",
            "/api/tasks",
            list_my_tasks,
            "The caller's tasks",
            TaskPage,
            query=TaskListQuery,
            tags=tags,
        ),
    )
    api.add(
        app,
        Operation(
            "GET",
            "/api/tasks/user/{user_id}",
            list_user_tasks,
            "A user's tasks",
            TaskPage,
            query=TaskListQuery,
            tags=tags,
        ),
    )
    api.add(
        app,
        Operation(
            "GET",
            "/api/tasks/{task_id}",
            get_task,
            "A task (with `wait`: once it ends, or when the time is up)",
            Task,
            query=TaskQuery,
            tags=tags,
        ),
    )
    api.add(
        app,
        Operation(
            "POST",
            "/api/tasks/{task_id}/cancel",
            cancel_task,
            "Cancel a task",
            Task,
            202,
            errors=(401, 404, 409, 503),
            tags=tags,
        ),
    )
    api.add(
        app,
        Operation(
            "POST",
            "/api/tasks/{task_id}/retry",
            retry_task,
            "Run a failed or cancelled task again",
            Task,
            202,
            errors=(401, 404, 409, 503),
            tags=tags,
        ),
    )
