"""Batch routes (docs/scheduling.md#batches): submit many chat messages as one group, read
its counts and progress, cancel it (taskfleet.data.batches)."""

from typing import Any
from uuid import UUID

from aiohttp import web

from fleet_api.auth import acting_for, principal
from fleet_api.delays import due_at
from fleet_api.errors import LINK_LOST, ApiError, json_response, not_found, outcome_unknown
from fleet_api.openapi import Operation
from fleet_api.routes import (
    KERNEL,
    OPENAPI,
    PUBLISHER,
    SETTINGS,
    parse_body,
    rate_limited,
    user_db,
)
from fleet_api.submitting import (
    accepted_body,
    accepted_headers,
    callback_answer,
    callback_digest,
    callback_for,
    check_repeat,
    idempotency_key,
    priority_of,
    repeat_callback,
    request_digest,
)
from taskfleet.client.models import Batch, BatchAccepted, BatchRequest
from taskfleet.core.constants import QUEUES, Status, TaskType
from taskfleet.data import batches
from taskfleet.store import quotas
from taskfleet.store.records import OverQuota
from taskfleet.store.tenancy import Db


async def submit_batch(request: web.Request) -> web.Response:
    """Accept a batch: 202 with its id and its members' task ids, all stored in one statement."""
    kernel = request.app[KERNEL]
    body = await parse_body(request, BatchRequest)
    user_id = acting_for(request, body.user_id, reading=False, what="batch")
    max_chars = request.app[SETTINGS].max_content_chars
    if any(len(m.content) > max_chars for m in [*body.tasks, *([body.then] if body.then else [])]):
        raise ApiError(422, "content_too_long", f"content is longer than {max_chars} characters")
    run_at = due_at(body, request.app[SETTINGS].max_delay_s)
    key = idempotency_key(request)
    digest = request_digest(
        "POST /api/batches", **body.model_dump(mode="json", exclude={"user_id", "callback_url"}),
        user_id=user_id, **callback_digest(body.callback_url),
    )  # fmt: skip
    db = user_db(request, user_id)
    if key is not None and (found := await batches.keyed(db, user_id, key)):
        return await _repeat(request, db, found, digest)
    callback = await callback_for(request.app[SETTINGS], kernel.keyring, body.callback_url)
    members = [batches.Member(m.chat_id, m.content) for m in body.tasks]
    then = batches.Member(body.then.chat_id, body.then.content) if body.then else None
    try:
        submitted = await batches.submit_batch(
            kernel.pool,
            db,
            user_id=user_id,
            members=members,
            max_attempts=kernel.settings.max_attempts or QUEUES[TaskType.CHAT].max_attempts,
            relay_grace_s=kernel.settings.outbox_grace_s,
            run_at=run_at,
            limits=quotas.Limits.from_settings(kernel.settings),
            priority=priority_of(request.app[SETTINGS], principal(request), body.priority),
            then=then,
            key=(key, digest) if key is not None else None,
            callback=callback[0] if callback else None,
        )
    except batches.KeyTaken:  # a request with the same key won the race: its batch
        found = await batches.keyed(db, user_id, str(key))
        assert found is not None
        return await _repeat(request, db, found, digest)
    except OverQuota as exc:
        raise rate_limited(exc.over) from None
    except LINK_LOST as exc:
        raise outcome_unknown(
            exc, "look for it in GET /api/tasks before sending it again"
        ) from None
    if run_at is None:
        for outgoing in submitted.outgoing:
            await request.app[PUBLISHER].send(outgoing)
    accepted = BatchAccepted(
        batch_id=submitted.batch_id,
        then_task_id=submitted.then_task_id,
        task_ids=submitted.task_ids,
        message_ids=submitted.message_ids,
        status=Status.QUEUED if run_at is None else Status.SCHEDULED,
        **callback_answer(callback),
    )
    return _accepted(accepted)


async def _repeat(request: web.Request, db: Db, found: dict[str, Any], digest: str) -> web.Response:
    """The answer to a key sent again: the batch it made (409 if it came with another
    request)."""
    check_repeat(found["request_digest"], digest)
    hook = await repeat_callback(db, request.app[KERNEL].keyring, batch_id=found["id"])
    accepted = BatchAccepted(
        batch_id=found["id"], then_task_id=found["then_task_id"], task_ids=found["members"],
        message_ids=found["message_ids"] or [],
        status=Status.SCHEDULED if found["scheduled"] else Status.QUEUED, **hook,
    )  # fmt: skip
    return _accepted(accepted)


def _accepted(accepted: BatchAccepted) -> web.Response:
    body = accepted_body(accepted)
    headers = accepted_headers(body, f"/api/batches/{accepted.batch_id}")
    return json_response(body, status=202, headers=headers)


async def _batch_db(request: web.Request) -> tuple[Db, UUID]:
    """The statements that may see the batch in the path: its owner's; 404 otherwise."""
    batch_id = UUID(request.match_info["batch_id"])  # checked by its PathParam (openapi)
    who = principal(request)
    owner = who.user_id
    if who.scope != "user":
        owner = await batches.batch_owner(request.app[KERNEL].pool, batch_id) or who.user_id
    return user_db(request, owner), batch_id


async def _answer(db: Db, batch_id: UUID, status: int = 200) -> web.Response:
    batch = await batches.get_batch(db, batch_id)
    if batch is None:
        raise not_found("batch not found")
    headers = {"Location": f"/api/batches/{batch_id}"} if status == 202 else None
    body = Batch.model_validate(batch).model_dump(mode="json")
    return json_response(body, status=status, headers=headers)


async def get_batch(request: web.Request) -> web.Response:
    """The batch: counts per status, progress; 404 if absent or another user's."""
    db, batch_id = await _batch_db(request)
    return await _answer(db, batch_id)


async def cancel_batch(request: web.Request) -> web.Response:
    """Cancel every unfinished member (as each task's cancel); 202 with the batch."""
    db, batch_id = await _batch_db(request)
    if await batches.get_batch(db, batch_id) is None:
        raise not_found("batch not found")
    await batches.cancel_batch(request.app[KERNEL], db, batch_id)
    return await _answer(db, batch_id, status=202)


def add_batch_routes(app: web.Application) -> None:
    """Declare the batch routes."""
    api, tags = app[OPENAPI], ("batches",)
    api.add(
        app,
        Operation(
            "POST",
            "/api/batches",
            submit_batch,
            "Submit many chat messages as one batch",
            BatchAccepted,
            202,
            body=BatchRequest,
            errors=(400, 401, 403, 409, 413, 422, 429, 503),
            tags=tags,
            idempotent=True,
        ),
    )
    api.add(
        app, Operation("GET", "/api/batches/{batch_id}", get_batch, "A batch", Batch, tags=tags)
    )
    api.add(
        app,
        Operation(
            "POST",
            "/api/batches/{batch_id}/cancel",
            cancel_batch,
            "Cancel a batch's unfinished members",
            Batch,
            202,
            errors=(401, 404, 503),
            tags=tags,
        ),
    )
