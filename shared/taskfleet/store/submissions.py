"""New tasks: inserted with their outbox rows, chat submissions under quotas, idempotency keys,
and the outbox rows their writers published themselves (forgotten in batches)."""

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from taskfleet.core.constants import QUEUES, Status
from taskfleet.core.ids import uuid7
from taskfleet.store import quotas
from taskfleet.store.coalesce import Coalescer
from taskfleet.store.records import ChatSubmission, Existing, NewTask, Outgoing, OverQuota
from taskfleet.store.tenancy import Db, UserDb

FORGET_EVERY_S = 0.05
# What a task's own webhook endpoint takes: its end (as tf_submit_chat's).
CALLBACK_EVENTS = ("task.completed", "task.failed", "task.cancelled")

# Chat submissions, one or many in one statement (taskfleet.store.coalesce): each counted against
# its user's quotas and, within them, the chat task with its outbox row and its two messages.
# tf_submit_chat scopes itself to its own user (store/sql/tf_submit_chat.sql), so the submissions of
# several users share a statement and a commit, each still under its user's row security.
# Each call's traceparent (NULL with tracing off) is one more array, element for element.
_SUBMIT_MANY = (
    "SELECT x.n, s.* FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::uuid[],"
    " $6::jsonb[], $7::integer[], $8::text[], $9::text[], $10::float8[], $11::text[],"
    " $12::uuid[], $13::integer[], $14::integer[], $15::jsonb[], $16::text[], $17::timestamptz[],"
    " $18::text[], $19::text[], $20::uuid[], $21::text[], $22::jsonb[])"
    " WITH ORDINALITY AS x(id, type, user_id, chat_id, parent_id, input, max_attempts,"
    " idempotency_key, queue, grace_s, content, message_id, per_minute, max_waiting, metadata,"
    " request_digest, run_at, priority, traceparent, callback_id, callback_url, callback_secret,"
    " n)"
    " CROSS JOIN LATERAL tf_submit_chat(x.id, x.type, x.user_id, x.chat_id, x.parent_id,"
    " x.input, x.max_attempts, x.idempotency_key, x.queue, x.grace_s, x.content, x.message_id,"
    " x.per_minute, x.max_waiting, x.metadata, x.request_digest, x.run_at, x.priority,"
    " x.traceparent, x.callback_id, x.callback_url, x.callback_secret) s"
)


@dataclass(frozen=True, slots=True)
class _SubmitCall:
    new: NewTask
    content: str
    message_id: UUID
    relay_grace_s: float
    limits: quotas.Limits


def _submission_arrays(calls: Sequence[_SubmitCall]) -> list[list[Any]]:
    """_SUBMIT_MANY's arguments: one array per column, one element per call."""
    return [
        [c.new.task_id for c in calls], [c.new.type.value for c in calls],
        [c.new.user_id for c in calls], [c.new.chat_id for c in calls],
        [c.new.parent_id for c in calls], [c.new.input for c in calls],
        [c.new.max_attempts for c in calls], [c.new.idempotency_key for c in calls],
        [QUEUES[c.new.type].name for c in calls], [c.relay_grace_s for c in calls],
        [c.content for c in calls], [c.message_id for c in calls],
        [c.limits.per_minute for c in calls], [c.limits.max_waiting for c in calls],
        [c.new.metadata for c in calls], [c.new.request_digest for c in calls],
        [c.new.run_at for c in calls], [c.new.priority.value for c in calls],
        [c.new.traceparent for c in calls],
        [c.new.callback.id if c.new.callback else None for c in calls],
        [c.new.callback.url if c.new.callback else None for c in calls],
        [c.new.callback.sealed_secret if c.new.callback else None for c in calls],
    ]  # fmt: skip


class Submissions:
    """Creates tasks; forgets the outbox rows of the messages their writers published."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._forgotten: list[int] = []
        self._forget_batching = False
        # Every kernel runs its loop (batched_submissions).
        self._submissions = Coalescer("submit", self._submit_many, self._submit_one)

    async def batched_submissions(self) -> None:
        """The loop that sends chat submissions made at once as one statement (run supervised)."""
        await self._submissions.run()

    async def insert_task(
        self,
        conn: asyncpg.Connection,
        new: NewTask,
        *,
        relay_grace_s: float,
    ) -> Outgoing | None:
        """Insert a task and its outbox row inside the caller's transaction.

        Returns its message and outbox row, or None when `idempotency_key` names an existing
        task of the user. The outbox row is due only after `relay_grace_s`: the caller
        publishes the message itself right after commit (`taskfleet.broker.publisher`) and
        deletes the row; the relay takes over if the caller dies or the publish fails. A
        delayed task's row (`new.run_at`) is due at its time, and only the relay publishes it.
        """
        inserted: UUID | None = await conn.fetchval(
            "INSERT INTO tasks (id, type, user_id, chat_id, parent_id, input, max_attempts,"
            " idempotency_key, metadata, request_digest, status, run_at, priority, traceparent)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            " ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL"
            " DO NOTHING RETURNING id",
            new.task_id,
            new.type.value,
            new.user_id,
            new.chat_id,
            new.parent_id,
            new.input,
            new.max_attempts,
            new.idempotency_key,
            new.metadata,
            new.request_digest,
            new.status.value,
            new.run_at,
            new.priority.value,
            new.traceparent,
        )
        if inserted is None:
            return None
        if new.callback is not None:  # the task's own webhook endpoint (migrations/0028)
            await conn.execute(
                "INSERT INTO webhook_endpoints (id, user_id, url, events, secret, task_id)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                new.callback.id,
                new.user_id,
                new.callback.url,
                list(CALLBACK_EVENTS),
                new.callback.sealed_secret,
                new.task_id,
            )
        outbox_id: int = await conn.fetchval(
            "INSERT INTO outbox (task_id, queue, attempt, kind, available_at) VALUES ($1, $2, 1,"
            " 'task', coalesce($4::timestamptz, now() + make_interval(secs => $3))) RETURNING id",
            new.task_id,
            QUEUES[new.type].name,
            relay_grace_s,
            new.run_at,
        )
        return new.outgoing(outbox_id)

    @staticmethod
    async def existing(conn: asyncpg.Connection, user_id: str, key: str) -> Existing:
        """The task of the user's that `key` made, after insert_task answered None for it (in
        the same transaction: the unique index made it wait for that task's commit)."""
        row = await conn.fetchrow(
            "SELECT id, input, request_digest, status FROM tasks"
            " WHERE user_id = $1 AND idempotency_key = $2",
            user_id,
            key,
        )
        return Existing(row["id"], row["input"], row["request_digest"], Status(row["status"]))

    async def submit_chat(
        self,
        db: Db,
        new: NewTask,
        *,
        content: str,
        relay_grace_s: float,
        limits: quotas.Limits,
    ) -> ChatSubmission:
        """A chat task with its user message and assistant placeholder, in one transaction,
        if the user is within `limits` (else OverQuota)."""
        assert new.chat_id is not None
        call = _SubmitCall(new, content, uuid7(), relay_grace_s, limits)
        if isinstance(db, UserDb):
            if db.user_id != new.user_id:
                raise ValueError(f"a submission of {new.user_id} in a transaction of {db.user_id}")
            # The function takes its user's role and user itself: a user's Db would only add
            # the two round trips of its own SET LOCAL transaction. So the user's submission
            # goes with whatever others are being sent (taskfleet.store.coalesce).
            row = await self._submissions(call)
        else:  # an operator's: its own transaction, with its audit row
            row = (await db.fetch(_SUBMIT_MANY, *_submission_arrays([call])))[0]
        over = limits.over(row)
        if over is not None:
            raise OverQuota(over)
        task_id: UUID | None = row["task_id"]
        if task_id is None:
            row = await db.fetchrow(
                "SELECT t.id, m.id AS message_id, t.request_digest FROM tasks t"
                " LEFT JOIN messages m ON m.task_id = t.id AND m.role = 'assistant'"
                " WHERE t.user_id = $1 AND t.idempotency_key = $2",
                new.user_id,
                new.idempotency_key,
            )
            return ChatSubmission(
                row["id"], row["message_id"], created=False, request_digest=row["request_digest"]
            )
        return ChatSubmission(task_id, call.message_id, created=True, outbox_id=row["outbox_id"])

    async def _submit_one(self, call: _SubmitCall) -> asyncpg.Record:
        return (await self._submit_many([call]))[0]

    async def _submit_many(self, calls: Sequence[_SubmitCall]) -> list[asyncpg.Record]:
        # In user order: two batches (two API replicas) lock their users' quota rows in the
        # same order, which makes a deadlock between them rare (and retried call by call).
        order = sorted(range(len(calls)), key=lambda i: calls[i].new.user_id)
        rows = await self.pool.fetch(_SUBMIT_MANY, *_submission_arrays([calls[i] for i in order]))
        answers = {order[r["n"] - 1]: r for r in rows}
        return [answers[i] for i in range(len(calls))]

    async def forget_outbox(self, outbox_id: int) -> None:
        """The writer published this outbox row's message itself: the relay need not.

        While `forget_in_batches` runs (every kernel runs it), the row goes with the next
        batch instead of in a transaction of its own.
        """
        if self._forget_batching:
            self._forgotten.append(outbox_id)
            return
        await self._delete_outbox_rows([outbox_id])

    async def forget_in_batches(self) -> None:
        """A kernel's loop: delete the outbox rows of published tasks, many per statement.

        A row that a crash leaves behind is published again by the relay after its grace; the
        claim settles the second copy as a duplicate. Nothing is lost either way.
        """
        self._forget_batching = True
        try:
            while True:
                await asyncio.sleep(FORGET_EVERY_S)
                await self._flush_forgotten()
        finally:
            self._forget_batching = False
            with contextlib.suppress(Exception):  # best effort: the relay covers the rest
                await asyncio.shield(self._flush_forgotten())

    async def _flush_forgotten(self) -> None:
        batch, self._forgotten = self._forgotten, []
        if batch:
            await self._delete_outbox_rows(batch)

    async def _delete_outbox_rows(self, ids: list[int]) -> None:
        # By row id: the rows of these messages, never a later row of the same task. SKIP
        # LOCKED: a row the relay holds is being published by it, and it deletes it itself.
        await self.pool.execute(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE id = ANY($1::bigint[])"
            " FOR UPDATE SKIP LOCKED)",
            ids,
        )
