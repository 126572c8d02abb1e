"""Batches (docs/scheduling.md#batches): many chat messages submitted as one group in one
statement (store/sql/tf_submit_batch.sql), read as counts per status and progress, and
cancelled together. The batch's completion and its `batch.completed` event are written by
the trigger on its members (store/sql/tf_batch_member_ended.sql), whatever ends them."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from taskfleet.core import events, jsonx, tracing
from taskfleet.core.constants import QUEUES, Priority, Status, TaskType
from taskfleet.core.ids import uuid7
from taskfleet.core.messages import TaskMessage
from taskfleet.data.webhooks import add_batch_callback
from taskfleet.runtime.kernel import Kernel
from taskfleet.store import quotas
from taskfleet.store.records import Callback, Outgoing, OverQuota
from taskfleet.store.tenancy import Db, UserDb

_SUBMIT = "SELECT * FROM tf_submit_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"

# The batch's `then` task: a chat message like any other, due at no time ('infinity', in its
# row and its outbox row) until the batch completes; no idempotency key, no grace.
_THEN = """
SELECT * FROM tf_submit_chat($1, 'chat_message', $2, $3, NULL, $4, $5, NULL, $6, 0, $7, $8,
    $9, $10, '{}'::jsonb, NULL, 'infinity'::timestamptz, $11, $12, NULL, NULL, NULL)
"""

_KEYED = "UPDATE batches SET idempotency_key = $2, request_digest = $3, members = $4 WHERE id = $1"
# The batch a key made, with its members' assistant messages in the members' order.
_EXISTING = """
SELECT b.id, b.request_digest, b.members, b.then_task_id,
       (SELECT array_agg(m.id ORDER BY array_position(b.members, m.task_id)) FROM messages m
        WHERE m.task_id = ANY (b.members) AND m.role = 'assistant') AS message_ids,
       (SELECT bool_or(t.status = 'scheduled') FROM tasks t WHERE t.id = ANY (b.members))
           AS scheduled
FROM batches b WHERE b.user_id = $1 AND b.idempotency_key = $2
"""

_READ = """
SELECT b.id, b.user_id, b.total, b.created_at, b.completed_at, b.then_task_id,
       coalesce((SELECT jsonb_object_agg(c.status, c.n) FROM (
           SELECT t.status, count(*) AS n FROM tasks t WHERE t.batch_id = b.id
           GROUP BY t.status) c), '{}') AS counts,
       (SELECT coalesce(sum(CASE WHEN t.status IN ('completed', 'failed', 'cancelled')
                                 THEN 1 ELSE t.progress END), 0)
        FROM tasks t WHERE t.batch_id = b.id) AS done
FROM batches b WHERE b.id = $1
"""

# Every unfinished member cancelled as a user's cancel would (tf_request_cancel), in id order:
# two cancels of one batch lock its members in the same order.
_CANCEL = """
SELECT t.id, t.type, t.user_id, t.chat_id, c.outcome, c.event_seq
FROM (SELECT id, type, user_id, chat_id FROM tasks
      WHERE (batch_id = $1 OR id = (SELECT then_task_id FROM batches WHERE id = $1))
        AND status NOT IN ('completed', 'failed', 'cancelled')
      ORDER BY id) t
CROSS JOIN LATERAL tf_request_cancel(t.id) c
"""


class KeyTaken(Exception):
    """Another request made a batch with this idempotency key first (nothing was kept)."""


@dataclass(frozen=True, slots=True)
class Member:
    """A chat message of a batch."""

    chat_id: str
    content: str
    task_id: UUID = field(default_factory=uuid7)


@dataclass(frozen=True, slots=True)
class Submitted:
    batch_id: UUID
    task_ids: list[UUID]
    message_ids: list[UUID]
    outgoing: list[Outgoing]  # the members' first messages, for the caller to publish
    then_task_id: UUID | None = None


async def submit_batch(
    pool: asyncpg.Pool,
    db: Db,
    *,
    user_id: str,
    members: list[Member],
    max_attempts: int,
    relay_grace_s: float,
    run_at: datetime | None,
    limits: quotas.Limits,
    priority: Priority = Priority.NORMAL,
    then: Member | None = None,
    key: tuple[str, str] | None = None,
    callback: Callback | None = None,
) -> Submitted:
    """Store the batch and its members, all or nothing (OverQuota: nothing was stored).

    A user's `db` goes through the pool: the function takes the user's role and user itself
    (as tf_submit_chat does); an operator's goes through its own audited transaction."""
    batch_id = uuid7()
    args = (
        batch_id, user_id, [m.task_id for m in members], [m.chat_id for m in members],
        [m.content for m in members], max_attempts, QUEUES[TaskType.CHAT].name,
        relay_grace_s, run_at, limits.per_minute, limits.max_waiting, priority.value,
        tracing.traceparent(),  # the request's, kept by every member and the `then` task
    )  # fmt: skip
    if then is not None or key is not None or callback is not None:
        rows = await _in_one_transaction(pool, args, then, limits, key, callback)
    else:
        rows = await (
            pool.fetch(_SUBMIT, *args) if isinstance(db, UserDb) else db.fetch(_SUBMIT, *args)
        )
    over = limits.over(rows[0], added=len(members))
    if over is not None or rows[0]["task_id"] is None:
        raise OverQuota(over or quotas.OverQuota("over a quota", 5))
    by_task = {r["task_id"]: r for r in rows}
    outgoing = [
        Outgoing(_message(user_id, m), by_task[m.task_id]["outbox_id"], priority) for m in members
    ]
    return Submitted(
        batch_id,
        [m.task_id for m in members],
        [by_task[m.task_id]["message_id"] for m in members],
        outgoing,
        then.task_id if then is not None else None,
    )


async def _in_one_transaction(
    pool: asyncpg.Pool,
    args: tuple[Any, ...],
    then: Member | None,
    limits: quotas.Limits,
    key: tuple[str, str] | None,
    callback: Callback | None,
) -> list[asyncpg.Record]:
    """The batch with its idempotency key (and digest), its `then` task and its callback
    endpoint, all or nothing: a key taken meanwhile by a racing request raises KeyTaken
    (nothing kept)."""
    async with pool.acquire() as conn, conn.transaction():
        rows: list[asyncpg.Record] = await conn.fetch(_SUBMIT, *args)
        if rows[0]["task_id"] is None:
            return rows
        if key is not None:
            try:
                await conn.execute(_KEYED, args[0], key[0], key[1], args[2])
            except asyncpg.UniqueViolationError:
                raise KeyTaken(key[0]) from None
        if callback is not None:  # as the batch's user (tf_submit_batch took the role)
            await add_batch_callback(conn, args[1], args[0], callback)
        if then is not None:
            await _add_then(conn, args, then, limits)
    return rows


async def _add_then(
    conn: asyncpg.Connection, args: tuple[Any, ...], then: Member, limits: quotas.Limits
) -> None:
    """The batch's `then` task, in the batch's transaction: submitted as any chat message
    (tf_submit_chat: its chat's messages, its quota), due at no time until the batch's last
    member ends (store/sql/tf_batch_member_ended.sql). Over a quota, nothing is kept."""
    batch_id, user_id, max_attempts, queue = args[0], args[1], args[5], args[6]
    priority, traceparent = args[11], args[12]
    # tf_submit_batch left the transaction in the user's role; tf_submit_chat is the
    # kernel's to call (it takes the user's role itself).
    await conn.execute("SELECT set_config('role', 'taskfleet_service', true)")
    made = await conn.fetchrow(
        _THEN, then.task_id, user_id, then.chat_id,
        {"content": then.content, "after_batch": str(batch_id),
         "members": [str(i) for i in args[2]]}, max_attempts, queue,
        then.content, uuid7(), limits.per_minute, limits.max_waiting, priority, traceparent,
    )  # fmt: skip
    if made is None or made["task_id"] is None:
        over = limits.over(made, added=1) if made is not None else None
        raise OverQuota(over or quotas.OverQuota("over a quota", 5))
    await conn.execute("UPDATE batches SET then_task_id = $1 WHERE id = $2",
                       then.task_id, batch_id)  # fmt: skip


def _message(user_id: str, member: Member) -> TaskMessage:
    return TaskMessage(
        task_id=member.task_id,
        type=TaskType.CHAT,
        user_id=user_id,
        chat_id=member.chat_id,
        payload={"content": member.content},
    )


async def keyed(db: Db, user_id: str, key: str) -> dict[str, Any] | None:
    """The batch `user_id`'s idempotency key made, None if none: its id, digest, members (in
    their order), their assistant messages, `then` task, and whether its members wait for
    their time."""
    row = await db.fetchrow(_EXISTING, user_id, key)
    return dict(row) if row else None


async def batch_owner(pool: asyncpg.Pool, batch_id: UUID) -> str | None:
    """Whose batch it is (the kernel's read, for a service or admin token), None if none."""
    owner: str | None = await pool.fetchval("SELECT user_id FROM batches WHERE id = $1", batch_id)
    return owner


async def get_batch(db: Db, batch_id: UUID) -> dict[str, Any] | None:
    """The batch as clients see it: `active` until every member ended, then `completed`;
    `progress` the mean of its members' (an ended member counts whole). None if `db` shows
    no such batch."""
    row = await db.fetchrow(_READ, batch_id)
    if row is None:
        return None
    batch = dict(row)
    batch["progress"] = round(float(batch.pop("done")) / batch["total"], 6)
    batch["status"] = "completed" if batch["completed_at"] is not None else "active"
    return batch


async def cancel_batch(kernel: Kernel, db: Db, batch_id: UUID) -> int:
    """Cancel every unfinished member: the queued and scheduled at once, the running through
    their workers (as POST /api/tasks/{id}/cancel). Returns how many were unfinished."""
    rows = await db.fetch(_CANCEL, batch_id)
    for row in rows:
        if row["outcome"] == "requested":
            body = jsonx.dumps({"type": "cancel", "task_id": str(row["id"])})
            await kernel.broker.publish_control(body)
        elif row["outcome"] == "cancelled":
            key, event = events.task_updated(
                task_id=row["id"],
                task_type=row["type"],
                user_id=row["user_id"],
                chat_id=row["chat_id"],
                status=Status.CANCELLED,
                seq=events.event_seq(row["event_seq"]),
            )
            await kernel.broker.publish_event(key, jsonx.dumps(event))
    return len(rows)
