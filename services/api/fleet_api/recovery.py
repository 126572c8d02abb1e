"""The recovery routes: resume a failed or cancelled task from its checkpoint, restart it
from scratch, or delete a finished one (docs/contract.md, "Recovery"); and a task's history
of transitions. The owner or an admin (or service) token acting for the owner; another
user's task is a 404."""

from aiohttp import web

from fleet_api.errors import ApiError, json_response, not_found
from fleet_api.models import Task, TransitionList
from fleet_api.openapi import Operation
from fleet_api.routes import KERNEL, OPENAPI, task_db, task_id_param, visible_task
from fleet_api.submitting import accepted
from taskfleet.client.models import TaskDeleted
from taskfleet.core.constants import Status, TaskType
from taskfleet.data import history, operations

_REFUSED = {
    "conflict": "only failed or cancelled tasks run again, not {status}",
    "no_checkpoint": "the task has no checkpoint to resume from: restart it instead",
}


async def _recover(request: web.Request, mode: str) -> web.Response:
    task = await visible_task(request)
    db = await task_db(request, task["id"])
    kernel = request.app[KERNEL]
    outcome = await operations.rerun(kernel, db, task["id"], TaskType(task["type"]), mode)
    if outcome == "missing":
        raise not_found("task not found")
    if outcome in _REFUSED:
        raise ApiError(409, outcome, _REFUSED[outcome].format(status=task["status"]))
    return accepted(await visible_task(request), task["id"])


async def resume_task(request: web.Request) -> web.Response:
    """Run a failed or cancelled task again from its checkpoint (409 without one)."""
    return await _recover(request, "resume")


async def restart_task(request: web.Request) -> web.Response:
    """Run a failed or cancelled task again from scratch: checkpoint and partial output go."""
    return await _recover(request, "restart")


async def delete_task(request: web.Request) -> web.Response:
    """Delete a finished task (its messages and children go with it); 409 while it runs."""
    task_id = task_id_param(request)
    db = await task_db(request, task_id)
    outcome, status = await operations.delete_task(db, task_id)
    if outcome == "missing":
        raise not_found("task not found")
    if outcome == "conflict":
        raise ApiError(409, "conflict", f"only a finished task can be deleted, not a {status} one")
    if outcome == "children_running":
        raise ApiError(409, "children_running", "the task has children still running")
    deleted = TaskDeleted(id=task_id, deleted=True, status=Status(str(status)))
    return json_response(deleted.model_dump(mode="json"))


async def task_transitions(request: web.Request) -> web.Response:
    """Every change of the task's status, oldest first."""
    task_id = task_id_param(request)
    db = await task_db(request, task_id)
    if await operations.get_task(db, task_id) is None:
        raise not_found("task not found")
    found = await history.transitions(db, task_id)
    return json_response({"task_id": task_id, "transitions": found})


def add_recovery_routes(app: web.Application) -> None:
    """Declare POST /api/tasks/{id}/resume, /restart, DELETE /api/tasks/{id} and
    GET /api/tasks/{id}/transitions."""
    api, tags, errors = app[OPENAPI], ("tasks",), (401, 404, 409, 503)
    for verb, handler, summary in (
        ("resume", resume_task, "Run a failed or cancelled task again from its checkpoint"),
        ("restart", restart_task, "Run a failed or cancelled task again from scratch"),
    ):
        api.add(
            app,
            Operation(
                "POST",
                f"/api/tasks/{{task_id}}/{verb}",
                handler,
                summary,
                Task,
                202,
                errors=errors,
                tags=tags,
            ),
        )
    api.add(
        app,
        Operation(
            "DELETE",
            "/api/tasks/{task_id}",
            delete_task,
            "Delete a finished task",
            TaskDeleted,
            errors=errors,
            tags=tags,
        ),
    )
    api.add(
        app,
        Operation(
            "GET",
            "/api/tasks/{task_id}/transitions",
            task_transitions,
            "A task's transitions, oldest first",
            TransitionList,
            tags=tags,
        ),
    )
