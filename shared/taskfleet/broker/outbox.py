"""The outbox relay: publishes every outbox row that is due and that no one else published.

Rows are written in the same transaction as the decision they carry (a new task, a retry, a
put-back, a dead letter, a delayed task's first message due at its time, a batch's
`batch.completed` event), so a crash anywhere loses nothing: the relay publishes what is
left. Every process runs one; `FOR UPDATE SKIP LOCKED` lets them share the work.

A task message goes out with the `traceparent` its task kept (migrations/0029: the request
that submitted it, with tracing on), so that its worker's spans join that trace: a deferred
first message, a retry, a put-back, a resume and a repair alike, whichever process relays it.
"""

import asyncio
from typing import Any
from uuid import UUID

import asyncpg
import structlog

from taskfleet.broker.connection import Broker
from taskfleet.core import events, jsonx, tracing
from taskfleet.core.constants import Status, TaskType, level_queue
from taskfleet.core.errors import PublishFailed
from taskfleet.core.messages import TaskMessage, copy_headers
from taskfleet.core.metrics import OUTBOX_PUBLISHED
from taskfleet.core.settings import Settings

log = structlog.get_logger("taskfleet.outbox")

_DUE = """
WITH due AS (
    SELECT id FROM outbox WHERE available_at <= now()
    ORDER BY available_at LIMIT $1 FOR UPDATE SKIP LOCKED
)
SELECT o.id, o.queue, o.attempt, o.kind, o.headers,
       t.id AS task_id, t.type, t.user_id, t.chat_id, t.input, t.status, t.priority,
       t.traceparent
FROM outbox o JOIN due USING (id) JOIN tasks t ON t.id = o.task_id
"""

# Delayed tasks that are due: queued before their message goes out, so that a claim (which
# waits for this row lock) never sees one still `scheduled`. SKIP LOCKED, as for retries: a
# cancel holds its task while it drops the task's rows (we hold one of them). A task it
# skips keeps its row for the next pass; one that is no longer scheduled answers its status,
# and one whose time has not come (a row that is not its own: migrations/0012 lets a user's
# transaction write outbox rows) answers `early`.
_START = """
WITH task AS (
    SELECT id, CASE WHEN status = 'scheduled' AND run_at > now() THEN 'early' ELSE status END
           AS status
    FROM tasks WHERE id = ANY($1::uuid[]) FOR UPDATE SKIP LOCKED
), queued AS (
    UPDATE tasks t SET status = 'queued', updated_at = now(), event_seq = t.event_seq + 1
    FROM task WHERE t.id = task.id AND task.status = 'scheduled'
    RETURNING t.id, t.event_seq
)
SELECT task.id, task.status, queued.event_seq FROM task LEFT JOIN queued USING (id)
"""

# A message for these would only be settled without running: the relay drops it instead.
_DROP_FOR = frozenset({"cancelled", "early"})
# The kinds of rows that carry a task's message to its queue (not a dead letter, not an
# `event`: a batch's completion, store/sql/tf_batch_member_ended.sql).
_MESSAGES = frozenset({"task", "retry", "throttle"})


def task_message(row: asyncpg.Record | dict[str, Any], attempt: int) -> TaskMessage:
    """The queue message for a task row (the relay and the API build it the same way)."""
    return TaskMessage(
        task_id=row["task_id"] if "task_id" in row else row["id"],
        type=TaskType(row["type"]),
        user_id=row["user_id"],
        chat_id=row["chat_id"],
        attempt=attempt,
        payload=row["input"],
    )


def message_headers(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    """A task row's message headers: the row's own (a dead letter's reason), its task's kept
    trace context, and a fresh copy id unless it is a dead letter (no copy of it claims)."""
    headers = {**(row["headers"] or {}), **tracing.stored(row["traceparent"])}
    if row["kind"] != "dead_letter":  # a copy that may claim (taskfleet.broker.publisher)
        headers = copy_headers(headers)
    return headers


class OutboxRelay:
    def __init__(self, pool: asyncpg.Pool, broker: Broker, settings: Settings, batch: int = 200):
        self.pool = pool
        self.broker = broker
        self.settings = settings
        self.batch = batch

    async def run(self) -> None:
        """Forever: publish what is due, then sleep until the next row is due (or poll_s)."""
        while True:
            if not await self.broker.wait_ready(self.settings.outbox_poll_s):
                continue
            published = await self.relay_once()
            if published < self.batch:
                await asyncio.sleep(await self._until_next_due())

    async def relay_once(self) -> int:
        """Publish one batch of due rows; returns how many rows were due."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_DUE, self.batch)
            if not rows:
                return 0
            rows, dropped, started = await self._start_scheduled(conn, rows)
            results = await asyncio.gather(
                *(self._publish(r) for r in rows), return_exceptions=True
            )
            done = [r for r, res in zip(rows, results, strict=True) if res is None]
            for row, res in zip(rows, results, strict=True):
                if isinstance(res, BaseException):
                    log.warning(
                        "outbox_publish_failed", task_id=str(row["task_id"]), error=repr(res)
                    )
            await conn.execute(
                "DELETE FROM outbox WHERE id = ANY($1::bigint[])",
                [r["id"] for r in [*done, *dropped]],
            )
            requeued = [r["task_id"] for r in done if r["kind"] == "retry"]
            if requeued:
                # SKIP LOCKED: we hold outbox rows, and a cancel holds its task while it
                # deletes that task's rows; waiting here would deadlock with it. A task left
                # `retrying` is claimed all the same (its message is out).
                await conn.execute(
                    "UPDATE tasks SET status = 'queued', updated_at = now() WHERE id IN"
                    " (SELECT id FROM tasks WHERE id = ANY($1::uuid[]) AND status = 'retrying'"
                    " FOR UPDATE SKIP LOCKED)",
                    requeued,
                )
        for row in done:
            OUTBOX_PUBLISHED.labels(row["kind"]).inc()
        self._announce_queued([r for r in rows if r["task_id"] in started], started)
        return len(rows) + len(dropped)

    async def _start_scheduled(
        self, conn: asyncpg.Connection, rows: list[asyncpg.Record]
    ) -> tuple[list[asyncpg.Record], list[asyncpg.Record], dict[UUID, int]]:
        """(rows to publish, rows to drop unpublished, {task queued now: its event_seq}).

        The statement runs only when a delayed task is among the rows: the rows of tasks
        submitted to run at once cost nothing more here."""
        delayed = {r["task_id"] for r in rows if r["status"] == "scheduled" and r["kind"] == "task"}
        seen: dict[UUID, tuple[str, int | None]] = {}
        if delayed:
            answered = await conn.fetch(_START, list(delayed))
            seen = {a["id"]: (a["status"], a["event_seq"]) for a in answered}
        publish, drop, started = [], [], {}
        for row in rows:
            status = seen[row["task_id"]][0] if row["task_id"] in seen else row["status"]
            if row["task_id"] in delayed and row["task_id"] not in seen:
                continue  # its task is locked (a cancel?): the next pass decides
            if status in _DROP_FOR and row["kind"] in _MESSAGES:
                drop.append(row)
                continue
            seq = seen.get(row["task_id"], (status, None))[1]
            if seq is not None:
                started[row["task_id"]] = seq
            publish.append(row)
        return publish, drop, started

    def _announce_queued(self, rows: list[asyncpg.Record], started: dict[UUID, int]) -> None:
        """`task.updated` (queued) for the delayed tasks whose time came (best effort)."""
        for row in rows:
            key, body = events.task_updated(
                task_id=row["task_id"],
                task_type=row["type"],
                user_id=row["user_id"],
                chat_id=row["chat_id"],
                status=Status.QUEUED,
                seq=events.event_seq(started[row["task_id"]]),
            )
            self.broker.send_event(key, jsonx.dumps(body))

    async def _publish(self, row: asyncpg.Record) -> None:
        if row["kind"] == "event":  # to taskfleet.events: `queue` is its routing key
            await self.broker.publish_event(row["queue"], jsonx.dumps(row["headers"]))
            return
        body = task_message(row, row["attempt"]).dumps()
        headers = message_headers(row)
        # The row names the queue (or its DLQ); the task's priority names the level, so
        # that every message of a task (a retry, a put-back, its dead letter) keeps it.
        await self.broker.publish(
            self.settings.queue(level_queue(row["queue"], row["priority"])),
            body,
            message_id=str(row["task_id"]),
            headers=headers or None,
        )

    async def _until_next_due(self) -> float:
        seconds = await self.pool.fetchval(
            "SELECT extract(epoch FROM min(available_at) - now()) FROM outbox"
        )
        if seconds is None:
            return self.settings.outbox_poll_s
        return min(self.settings.outbox_poll_s, max(0.01, float(seconds)))


__all__ = ["OutboxRelay", "PublishFailed", "message_headers", "task_message"]
