"""What users and operators do to tasks beyond the message path: list, cancel, rerun.

Shared by the API and the command line, so both answer the same way.
"""

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from taskfleet.core import events, jsonx, tracing
from taskfleet.core.constants import QUEUES, TaskType
from taskfleet.runtime.kernel import Kernel
from taskfleet.security.crypto import Keyring, Unsealable
from taskfleet.store.records import TASK_COLUMNS
from taskfleet.store.tenancy import Db

# A task with its assistant message (a chat task's reply so far), for snapshots.
_WITH_MESSAGE = (
    "SELECT " + ", ".join(f"t.{c.strip()}" for c in TASK_COLUMNS.split(",")) + ", t.event_seq,"
    " m.id AS message_id, m.content AS message_content, m.status AS message_status"
    " FROM tasks t LEFT JOIN messages m ON m.task_id = t.id AND m.role = 'assistant'"
)


class BadCursor(ValueError):
    """A pagination cursor that we did not hand out."""


@dataclass(frozen=True, slots=True)
class Page:
    tasks: list[dict[str, Any]]
    next_cursor: str | None


def encode_cursor(created_at: datetime, task_id: UUID) -> str:
    """The opaque list cursor after this task (url-safe base64, no padding)."""
    raw = f"{created_at.isoformat()}|{task_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """The (created_at, id) of a cursor from encode_cursor; BadCursor for anything else,
    including a well-formed one whose time could not be a task's (no zone, or one that
    overflows when turned to UTC, as asyncpg does: `9999-12-31T23:59:59-01:00`)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, tid = raw.partition("|")
        created_at = datetime.fromisoformat(at)
        if created_at.tzinfo is None:
            raise ValueError("a cursor's time has no zone")
        return created_at.astimezone(UTC), UUID(tid)
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise BadCursor(f"invalid cursor {cursor[:40]!r}") from None


# The columns a listing may filter on by equality besides its own arguments.
LINKS = frozenset({"chat_id", "parent_id", "batch_id", "schedule_id"})


async def list_tasks(
    db: Db,
    *,
    user_id: str | None,
    status: str | Sequence[str] | None = None,
    task_type: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
    metadata: dict[str, str] | None = None,
    priority: str | None = None,
    links: Mapping[str, object] | None = None,
) -> Page:
    """Newest first. The cursor is the (created_at, id) of the last task of the previous
    page, so pages stay stable while tasks are added: new ones sort before the first page.
    `status`: one status or any of several; `metadata`: every pair must be in the task's;
    `links`: columns among LINKS and the value each must have (a chat, a parent...)."""
    if links and not set(links) <= LINKS:
        raise ValueError(f"not a link column: {sorted(set(links) - LINKS)}")
    where: list[str] = ["TRUE"]
    args: list[Any] = []
    statuses = [status] if isinstance(status, str) else status
    filters = (
        ("user_id = $%d", user_id),
        ("status = ANY($%d::text[])", list(statuses) if statuses is not None else None),
        ("type = $%d", task_type),
        ("priority = $%d", priority),
        # The tasks_metadata index holds only tasks that have metadata: the predicate is
        # repeated so that the planner may use it (a non-empty filter never matches '{}').
        ("metadata @> $%d::jsonb AND metadata <> '{}'::jsonb", metadata or None),
        *((f"{column} = $%d", value) for column, value in (links or {}).items()),
    )
    for condition, value in filters:
        if value is not None:
            args.append(value)
            where.append(condition % len(args))
    if cursor is not None:
        at, tid = decode_cursor(cursor)
        args += [at, tid]
        where.append(f"(created_at, id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit + 1)
    rows = await db.fetch(
        f"SELECT {TASK_COLUMNS}, event_seq FROM tasks WHERE {' AND '.join(where)}"
        f" ORDER BY created_at DESC, id DESC LIMIT ${len(args)}",
        *args,
    )
    tasks = [public_task(r) for r in rows[:limit]]
    more = len(rows) > limit
    last = rows[limit - 1] if more else None
    return Page(tasks, encode_cursor(last["created_at"], last["id"]) if last else None)


def public_task(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    """A task as clients see it: the row, with `seq` in place of the raw event_seq."""
    task = dict(row)
    task["seq"] = events.event_seq(task.pop("event_seq", 0) or 0)
    return task


def reveal_task(task: dict[str, Any], keyring: Keyring) -> dict[str, Any]:
    """The task as its owner sees it: every sealed value in it opened (docs/security.md).

    A value that does not open (its key was removed before `taskfleet rotate-key` re-sealed
    it) is shown as `{"$unsealable": reason}` rather than failing the whole answer.
    """
    shown = dict(task)
    for name in ("input", "output", "partial_output", "checkpoint", "error"):
        if shown.get(name) is not None:
            try:
                shown[name] = keyring.reveal(shown[name], row=task["id"])
            except Unsealable as exc:
                shown[name] = {"$unsealable": str(exc)}
    return shown


async def get_task(db: Db, task_id: UUID) -> dict[str, Any] | None:
    """The task as clients see it, or None when `db`'s scope shows no such task."""
    row = await db.fetchrow(f"SELECT {TASK_COLUMNS}, event_seq FROM tasks WHERE id = $1", task_id)
    return public_task(row) if row is not None else None


async def unfinished_tasks(db: Db, user_id: str | None, limit: int = 200) -> list[dict[str, Any]]:
    """The caller's tasks not yet terminal, with a chat task's reply so far (the WS snapshot)."""
    rows = await db.fetch(
        f"{_WITH_MESSAGE} WHERE ($1::text IS NULL OR t.user_id = $1)"
        " AND t.status NOT IN ('completed', 'failed', 'cancelled')"
        " ORDER BY t.created_at DESC LIMIT $2",
        user_id,
        limit,
    )
    return [with_message(r) for r in rows]


async def task_with_message(db: Db, task_id: UUID) -> dict[str, Any] | None:
    """The task with its assistant message (a chat reply so far); None when `db` shows none."""
    row = await db.fetchrow(
        f"{_WITH_MESSAGE} WHERE t.id = $1",
        task_id,
    )
    return with_message(row) if row is not None else None


def with_message(row: asyncpg.Record) -> dict[str, Any]:
    """A task row joined with its assistant message, as clients see it (`message` if any)."""
    task = dict(row)
    message_id = task.pop("message_id")
    content, status = task.pop("message_content"), task.pop("message_status")
    task = public_task(task)
    if message_id is not None:
        task["message"] = {"id": message_id, "content": content, "status": status}
    return task


async def request_cancel(kernel: Kernel, db: Db, task_id: UUID) -> str:
    """Cancel a task. Returns missing, terminal, cancelled (at once) or requested (running)."""
    row = await db.fetchrow("SELECT * FROM tf_request_cancel($1)", task_id)
    outcome = str(row["outcome"])
    if outcome == "requested":
        body = jsonx.dumps({"type": "cancel", "task_id": str(task_id)})
        await kernel.broker.publish_control(body)
    if outcome == "cancelled":
        await _announce(kernel, db, task_id, "cancelled", row["event_seq"])
    return outcome


async def rerun(
    kernel: Kernel, db: Db, task_id: UUID, task_type: TaskType, mode: str | None = None
) -> str:
    """Run a failed or cancelled task again. Returns missing, conflict or queued.

    `mode`: None (retry: as it is, its checkpoint if any kept), `resume` (from its checkpoint;
    no_checkpoint when it has none) or `restart` (checkpoint and partial output cleared)."""
    from taskfleet.broker.outbox import task_message
    from taskfleet.broker.publisher import publish_after_commit
    from taskfleet.store.records import Outgoing

    queue, grace = QUEUES[task_type].name, kernel.settings.outbox_grace_s
    if mode is None:
        row = await db.fetchrow("SELECT * FROM tf_rerun($1, $2, $3)", task_id, queue, grace)
    else:
        row = await db.fetchrow(
            "SELECT * FROM tf_recover($1, $2, $3, $4)", task_id, queue, grace, mode
        )
    if row["outcome"] != "queued":
        return str(row["outcome"])
    task = await db.fetchrow(
        "SELECT id, type, user_id, chat_id, input, priority, traceparent FROM tasks WHERE id = $1",
        task_id,
    )
    outgoing = Outgoing(
        task_message(task, attempt=1), row["outbox_id"], task["priority"], _trace_of(task)
    )
    await publish_after_commit(kernel, outgoing)
    await _announce(kernel, db, task_id, "queued", row["event_seq"])
    return "queued"


async def delete_task(db: Db, task_id: UUID) -> tuple[str, str | None]:
    """Delete a terminal task whose children ended too (their rows go with it). Returns the
    outcome (missing, conflict, children_running, deleted) and the status it had."""
    row = await db.fetchrow("SELECT * FROM tf_delete_task($1)", task_id)
    return str(row["outcome"]), row["status"]


async def republish(kernel: Kernel, db: Db, task_id: UUID) -> bool:
    """Send the next message of a queued or retrying task now (its last one was lost).

    The claim settles any older copy that turns up after all as a duplicate. Returns whether
    the task was queued or retrying."""
    from taskfleet.broker.outbox import task_message
    from taskfleet.broker.publisher import publish_after_commit
    from taskfleet.store.records import Outgoing

    async with db.acquire() as conn:  # one transaction: the task and its next message
        task = await conn.fetchrow(
            "UPDATE tasks SET status = 'queued', updated_at = now()"
            " WHERE id = $1 AND status IN ('queued', 'retrying')"
            " RETURNING id, type, user_id, chat_id, input, attempts, priority, traceparent",
            task_id,
        )
        if task is None:
            return False
        attempt = task["attempts"] + 1
        outbox_id = await conn.fetchval(
            "INSERT INTO outbox (task_id, queue, attempt, kind, available_at)"
            " VALUES ($1, tf_queue_of($2), $3, 'task', now() + make_interval(secs => $4))"
            " RETURNING id",
            task_id,
            task["type"],
            attempt,
            kernel.settings.outbox_grace_s,
        )
    outgoing = Outgoing(task_message(task, attempt), outbox_id, task["priority"], _trace_of(task))
    await publish_after_commit(kernel, outgoing)
    return True


def _trace_of(task: asyncpg.Record) -> dict[str, str]:
    """The trace a task's message published now joins: the one it kept (as the relay's copy
    would), else the current request's."""
    return tracing.stored(task["traceparent"]) or tracing.headers()


async def _announce(kernel: Kernel, db: Db, task_id: UUID, status: str, row_seq: int) -> None:
    task = await db.fetchrow("SELECT type, user_id, chat_id FROM tasks WHERE id = $1", task_id)
    if task is None:
        return
    key, body = events.task_updated(
        task_id=task_id,
        task_type=task["type"],
        user_id=task["user_id"],
        chat_id=task["chat_id"],
        status=status,
        seq=events.event_seq(row_seq),
    )
    await kernel.broker.publish_event(key, jsonx.dumps(body))
