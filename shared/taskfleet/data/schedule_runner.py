"""The schedule runner: one per fleet makes the runs of every due schedule (docs/scheduling.md).

Every API replica runs it; only the holder of the advisory lock works, on the lock's own
connection (taskfleet.runtime.leader). Each due schedule is one transaction on it:

1. the schedule row, locked (`FOR UPDATE SKIP LOCKED`) and read again: still enabled, still due;
2. its plan (taskfleet.data.recurrence): the tick to run, if any, and the next tick;
3. the run, by the chat submission itself (store/sql/tf_submit_chat.sql): as its user, under
   row security and the user's quotas, with its outbox row, keyed `schedule:<id>:<tick>`;
   then the task is marked with its `schedule_id`;
4. the schedule's `next_run_at`, `last_run_at`, `last_task_id` moved on.

So a tick makes one task whoever runs it: the lock keeps a second runner out, the row lock
and the re-read keep a second transaction from running a tick already moved past, and the
idempotency key would refuse a second task of the same tick even then. A new leader carries
on from the last committed `next_run_at`. The message is published right after commit; if
that fails, or the runner dies first, the outbox relay publishes it.
"""

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import structlog

from taskfleet.broker.publisher import new_task, publish_after_commit
from taskfleet.core.constants import QUEUES, TaskType
from taskfleet.core.ids import uuid7
from taskfleet.core.settings import Settings
from taskfleet.data.recurrence import BadRecurrence, Recurrence, plan
from taskfleet.runtime.kernel import Kernel
from taskfleet.runtime.leader import lead
from taskfleet.store import quotas
from taskfleet.store.records import NewTask, Outgoing

log = structlog.get_logger("taskfleet.schedules")

# Any constant will do; it only has to differ from the other advisory locks of the schema.
SCHEDULE_LOCK = 0x7A5F5C4E
BATCH = 100

_DUE = (
    "SELECT id FROM schedules WHERE enabled AND next_run_at <= now() ORDER BY next_run_at LIMIT $1"
)
_LOCK = """
SELECT *, now() AS now FROM schedules
WHERE id = $1 AND enabled AND next_run_at <= now()
FOR UPDATE SKIP LOCKED
"""
_PAUSE = "UPDATE schedules SET enabled = false, last_error = $2 WHERE id = $1"
_SUBMIT = "SELECT * FROM tf_submit_chat(" + ", ".join(f"${i}" for i in range(1, 18)) + ")"
_MOVE_ON = """
UPDATE schedules SET next_run_at = $2, last_run_at = coalesce($3, last_run_at),
                     last_task_id = coalesce($4, last_task_id), last_error = $5
WHERE id = $1
"""


@dataclass(frozen=True, slots=True)
class Run:
    """What a due schedule made: its task (None: none) and the message to publish."""

    task_id: UUID | None
    outgoing: Outgoing | None = None
    error: str | None = None


@dataclass
class ScheduleRunner:
    """`run` is the supervised loop; `fire_due` one pass (tests call it on a connection)."""

    kernel: Kernel
    tick_s: float = 0.25
    lock_retry_s: float = 1.0
    grace_s: float = 60.0

    async def run(self) -> None:
        """Forever: lead when this replica holds the lock, stand by otherwise."""
        settings = self.kernel.settings
        await lead(
            "schedules", SCHEDULE_LOCK, self._lead, database_url=settings.direct_database_url,
            retry_s=self.lock_retry_s, timeout_s=settings.db_timeout_s,
        )  # fmt: skip

    async def _lead(self, conn: asyncpg.Connection) -> None:
        while True:
            made = await self.fire_due(conn)
            if made >= BATCH:
                continue
            until_due = await conn.fetchval(
                "SELECT extract(epoch FROM min(next_run_at) - now()) FROM schedules WHERE enabled"
            )
            wait_s = self.tick_s if until_due is None else min(self.tick_s, float(until_due))
            await asyncio.sleep(max(0.01, wait_s))

    async def fire_due(self, conn: asyncpg.Connection) -> int:
        """Run every schedule due now, one transaction each; returns how many were due."""
        due = [r["id"] for r in await conn.fetch(_DUE, BATCH)]
        messages: list[Outgoing] = []
        for schedule_id in due:
            async with conn.transaction():
                run = await self._fire(conn, schedule_id)
            if run is not None and run.outgoing is not None:
                messages.append(run.outgoing)
        # After the commits, all at once: one confirm round trip rather than one per run. With
        # the broker away they are left to the relay, rather than each waiting out a timeout.
        if messages and self.kernel.broker.ready:
            await asyncio.gather(*(publish_after_commit(self.kernel, m) for m in messages))
        return len(due)

    async def _fire(self, conn: asyncpg.Connection, schedule_id: UUID) -> Run | None:
        row = await conn.fetchrow(_LOCK, schedule_id)
        if row is None:  # another transaction has it, or it changed: not due any more
            return None
        now: datetime = row["now"]
        try:
            recurrence = Recurrence(row["cron"], row["interval_s"], row["timezone"])
            todo = plan(
                recurrence, row["next_run_at"], now, grace_s=self.grace_s, missed=row["missed"]
            )
        except BadRecurrence as exc:  # e.g. a time zone this machine's tzdata lacks
            log.error("schedule_paused", schedule_id=str(schedule_id), error=str(exc))
            await conn.execute(_PAUSE, schedule_id, f"invalid_schedule: {exc}")
            return None
        if todo.missed_from is not None:
            log.warning(
                "schedule_ticks_missed", schedule_id=str(schedule_id), user_id=row["user_id"],
                missed_from=todo.missed_from.isoformat(), ran=todo.run is not None,
            )  # fmt: skip
        run = Run(None) if todo.run is None else await self._submit(conn, row, todo.run)
        await conn.execute(
            _MOVE_ON, schedule_id, todo.next_run_at, todo.run if run.task_id else None,
            run.task_id, run.error,
        )  # fmt: skip
        return run

    async def _submit(self, conn: asyncpg.Connection, row: asyncpg.Record, tick: datetime) -> Run:
        """The run of `tick`, as its user's chat submission; or why there is none."""
        settings, task = self.kernel.settings, row["task"]
        new = new_task(
            settings, type=TaskType.CHAT, user_id=row["user_id"], chat_id=task["chat_id"],
            input={"content": task["content"]}, metadata=task.get("metadata") or {},
            idempotency_key=f"schedule:{row['id']}:{tick.isoformat()}",
        )  # fmt: skip
        limits = quotas.Limits.from_settings(settings)
        answer = await conn.fetchrow(_SUBMIT, *_arguments(new, task["content"], settings, limits))
        over = limits.over(answer)
        if over is not None:
            log.warning("schedule_run_refused", schedule_id=str(row["id"]), reason=over.reason)
            return Run(None, error=f"rate_limited: {over.reason}")
        if answer["task_id"] is None:  # this tick's task exists already: nothing more to do
            existing: UUID = await conn.fetchval(
                "SELECT id FROM tasks WHERE user_id = $1 AND idempotency_key = $2",
                new.user_id,
                new.idempotency_key,
            )
            return Run(existing)
        # Still as the schedule's user (the submission took its role): their own task.
        await conn.execute(
            "UPDATE tasks SET schedule_id = $1 WHERE id = $2", row["id"], new.task_id
        )
        log.info("schedule_run", schedule_id=str(row["id"]), task_id=str(new.task_id),
                 tick=tick.isoformat())  # fmt: skip
        return Run(new.task_id, Outgoing(new.message(), answer["outbox_id"]))


def _arguments(new: NewTask, content: str, settings: Settings, limits: quotas.Limits) -> list[Any]:
    """tf_submit_chat's arguments for `new` (as taskfleet.store.submissions sends them)."""
    return [
        new.task_id, new.type.value, new.user_id, new.chat_id, None, new.input,
        new.max_attempts, new.idempotency_key, QUEUES[new.type].name, settings.outbox_grace_s,
        content, uuid7(), limits.per_minute, limits.max_waiting, new.metadata, None, None,
    ]  # fmt: skip
