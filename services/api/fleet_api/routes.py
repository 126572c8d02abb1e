"""What every route module shares (the app keys, body and query parsing) and the chat routes."""

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
import orjson
import structlog
from aiohttp import web
from pydantic import BaseModel, ValidationError

from fleet_api.auth import principal
from fleet_api.delays import due_at
from fleet_api.errors import LINK_LOST, ApiError, json_response, not_found, outcome_unknown
from fleet_api.models import (
    ChatHistory,
    ChatHistoryQuery,
    ChatStreamAccepted,
    ChatStreamRequest,
)
from fleet_api.openapi import OpenApi, Operation
from fleet_api.settings import ApiSettings
from fleet_api.submitting import (
    METADATA_PREFIX,
    accepted,
    accepted_body,
    callback_answer,
    callback_digest,
    callback_for,
    check_repeat,
    how_to_check_after_loss,
    idempotency_key,
    priority_of,
    repeat_callback,
    request_digest,
)
from taskfleet.broker.publisher import Publisher, new_task
from taskfleet.core.constants import TaskType
from taskfleet.data import operations
from taskfleet.runtime.kernel import Kernel
from taskfleet.store import quotas
from taskfleet.store.records import OverQuota
from taskfleet.store.tenancy import Db, audited, for_user

log = structlog.get_logger("fleet_api")

KERNEL = web.AppKey("kernel", Kernel)
SETTINGS = web.AppKey("settings", ApiSettings)
PUBLISHER = web.AppKey("publisher", Publisher)
OPENAPI = web.AppKey("openapi", OpenApi)
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


async def parse_body(request: web.Request, model: type[M]) -> M:
    """The JSON body, validated strictly against `model`: 400 if it is not JSON, 422 if it
    does not fit."""
    try:
        raw = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "bad_json", f"body is not valid JSON: {exc}") from None
    try:
        # Strict: a JSON value must have the schema's type (`false` is no number, `"5"` no
        # integer); lax pydantic would turn them into 0.0 and 5, and /openapi.json would lie.
        return model.model_validate(raw, strict=True)
    except ValidationError as exc:
        details = exc.errors(include_url=False, include_context=False, include_input=False)
        raise ApiError(
            422, "invalid_request", "request body does not fit the schema", details
        ) from None


def parse_query(request: web.Request, model: type[M], *, metadata: bool = False) -> M:
    """The query string validated against `model`; 422 if it does not fit. Lax, unlike the
    body: every query value arrives as text. A repeated parameter is a list. With
    `metadata`, the `metadata.<key>` parameters are the route's (submitting.query_metadata)."""
    query: dict[str, str | list[str]] = {}
    for name in request.query:
        if name in query or (metadata and name.startswith(METADATA_PREFIX)):
            continue
        values = request.query.getall(name)
        query[name] = values if len(values) > 1 else values[0]
    try:
        return model.model_validate(query)
    except ValidationError as exc:
        details = exc.errors(include_url=False, include_context=False, include_input=False)
        raise ApiError(
            422, "invalid_query", "query parameters do not fit the schema", details
        ) from None


def task_id_param(request: web.Request) -> UUID:
    """The task id in the path; 404 for one that is no UUID, as if absent."""
    try:
        return UUID(request.match_info["task_id"])
    except ValueError:
        raise not_found("task not found") from None


async def enforce_quota(request: web.Request, user_id: str) -> None:
    """429 with Retry-After when the user is over a submission quota (taskfleet/store/quotas.py)."""
    kernel = request.app[KERNEL]
    over = await quotas.check(kernel.pool, user_id, quotas.Limits.from_settings(kernel.settings))
    if over is not None:
        raise rate_limited(over)


def rate_limited(over: quotas.OverQuota) -> ApiError:
    """The 429 for a user over a quota, with Retry-After in whole seconds."""
    return ApiError(
        429, "rate_limited", over.reason, headers={"Retry-After": str(over.retry_after_s)}
    )


async def chat_stream(request: web.Request) -> web.Response:
    """Accept a chat message: 202 with the task id at once; the work goes on in a worker."""
    kernel, who = request.app[KERNEL], principal(request)
    body = await parse_body(request, ChatStreamRequest)
    user_id = body.user_id or who.user_id
    if not who.may_act_for(user_id):
        raise ApiError(403, "forbidden", "a user token may only act for its own user_id")
    max_chars = request.app[SETTINGS].max_content_chars
    if len(body.content) > max_chars:
        raise ApiError(
            422,
            "content_too_long",
            f"content is longer than {max_chars} characters",
        )
    key = idempotency_key(request, body.idempotency_key)
    metadata = body.metadata or {}
    # What a key is checked against: without a key there is nothing to check (a repeat
    # needs its key), so none is made.
    digest = None if key is None else request_digest(
        "chat", chat_id=body.chat_id, content=body.content, metadata=metadata,
        run_at=body.run_at, delay_s=body.delay_s, **callback_digest(body.callback_url),
    )  # fmt: skip
    callback = await callback_for(request.app[SETTINGS], kernel.keyring, body.callback_url)
    new = new_task(
        kernel.settings,
        type=TaskType.CHAT,
        user_id=user_id,
        chat_id=body.chat_id,
        input={"content": body.content},
        idempotency_key=key,
        metadata=metadata,
        request_digest=digest,
        run_at=due_at(body, request.app[SETTINGS].max_delay_s),
        priority=priority_of(request.app[SETTINGS], who, body.priority),
        callback=callback[0] if callback else None,
    )
    db = user_db(request, user_id)
    try:  # the quotas are counted in the submission's own statement
        submission = await kernel.store.submit_chat(
            db,
            new,
            content=body.content,
            relay_grace_s=kernel.settings.outbox_grace_s,
            limits=quotas.Limits.from_settings(kernel.settings),
        )
    except OverQuota as exc:
        raise rate_limited(exc.over) from None
    except LINK_LOST as exc:
        raise outcome_unknown(
            exc, how_to_check_after_loss(key, f"GET /api/chats/{body.chat_id}/messages")
        ) from None
    if submission.created and submission.outbox_id is not None and new.run_at is None:
        await request.app[PUBLISHER].send(new.outgoing(submission.outbox_id))
    status = new.status.value  # what was accepted; a worker may have taken it already
    hook = callback_answer(callback)
    if not submission.created:  # an idempotent repeat answers where the task is now
        if digest is not None:
            check_repeat(submission.request_digest, digest)
        task = await operations.get_task(db, submission.task_id)
        status = task["status"] if task else status
        hook = await repeat_callback(db, kernel.keyring, task_id=submission.task_id)
    answer = ChatStreamAccepted(
        task_id=submission.task_id, message_id=submission.message_id, status=status, **hook
    )
    return accepted(accepted_body(answer), submission.task_id)


async def create_in(
    db: Db, write: Callable[[asyncpg.Connection], Awaitable[T]], how_to_check: str
) -> T:
    """Run `write` in one transaction of `db`. A link that breaks while writing is a plain
    503 (nothing can have been committed); one that breaks during the commit is
    `outcome_unknown`: the commit may have happened."""
    written = False
    try:
        async with db.acquire() as conn:
            result = await write(conn)
            written = True
    except LINK_LOST as exc:
        if written:
            raise outcome_unknown(exc, how_to_check) from None
        raise
    return result


async def chat_messages(request: web.Request) -> web.Response:
    """The chat's history, oldest first: user and assistant messages with their status."""
    kernel, who = request.app[KERNEL], principal(request)
    query = parse_query(request, ChatHistoryQuery)
    user_id = query.user_id or who.user_id
    if not who.may_act_for(user_id):
        raise not_found("chat not found")
    chat_id = request.match_info["chat_id"]
    messages: list[dict[str, Any]] = await kernel.store.chat_messages(
        user_db(request, user_id), chat_id, user_id
    )
    return json_response({"chat_id": chat_id, "messages": messages})


def user_db(request: web.Request, user_id: str) -> Db:
    """Statements for `user_id`: row security shows them that user's rows only.

    An admin acting for another user reads across users instead, audited (admin_audit).
    """
    who, pool = principal(request), request.app[KERNEL].pool
    if who.scope == "admin" and user_id != who.user_id:
        return audited(pool, who.user_id, f"{request.method} {request.path}", user_id=user_id)
    return for_user(pool, user_id)


async def task_db(request: web.Request, task_id: UUID) -> Db:
    """The statements that may see this task: its owner's. 404 when the caller may not."""
    kernel, who = request.app[KERNEL], principal(request)
    # A user token reads as its user, so another user's task is simply not there. A service
    # or admin token acts for whichever user owns the task.
    owner = who.user_id if who.scope == "user" else await kernel.store.task_owner(task_id)
    if owner is None or not who.may_act_for(owner):
        raise not_found("task not found")
    return user_db(request, owner)


async def visible_task(request: web.Request) -> dict[str, Any]:
    """The task named in the path, if the caller may see it; else 404 as if absent."""
    task_id = task_id_param(request)
    task = await operations.task_with_message(await task_db(request, task_id), task_id)
    if task is None:
        raise not_found("task not found")
    return operations.reveal_task(task, request.app[KERNEL].keyring)


def add_routes(app: web.Application) -> None:
    """Declare the chat routes (each other route module declares its own)."""
    api = app[OPENAPI]
    api.add(
        app,
        Operation(
            "POST",
            "/api/chat/stream",
            chat_stream,
            "Submit a chat message",
            ChatStreamAccepted,
            202,
            body=ChatStreamRequest,
            errors=(400, 401, 403, 409, 413, 422, 429, 503),
            tags=("chat",),
            idempotent=True,
        ),
    )
    api.add(
        app,
        Operation(
            "GET",
            "/api/chats/{chat_id}/messages",
            chat_messages,
            "A chat's messages",
            ChatHistory,
            query=ChatHistoryQuery,
            tags=("chat",),
        ),
    )
