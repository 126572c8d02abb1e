"""Schedules (docs/scheduling.md#schedules): what a user asked to run again and again, read and
changed under row security like their tasks (migrations/0019_schedules.sql). The runs
themselves are made by taskfleet.data.schedule_runner; the ticks by taskfleet.data.recurrence.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from taskfleet.data.recurrence import Missed, Recurrence
from taskfleet.store.tenancy import Db

COLUMNS = (
    "id, user_id, cron, interval_s, timezone, task, missed, enabled, next_run_at, last_run_at,"
    " last_task_id, last_error, created_at, updated_at"
)

_INSERT = f"""
INSERT INTO schedules (id, user_id, cron, interval_s, timezone, task, missed, enabled,
                       next_run_at, idempotency_key, request_digest)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING {COLUMNS}, request_digest
"""
_BY_KEY = f"""
SELECT {COLUMNS}, request_digest FROM schedules WHERE user_id = $1 AND idempotency_key = $2
"""
_UPDATE = f"""
UPDATE schedules SET cron = $2, interval_s = $3, timezone = $4, task = $5, missed = $6,
                     enabled = $7, next_run_at = $8, updated_at = now()
WHERE id = $1 RETURNING {COLUMNS}
"""


@dataclass(frozen=True, slots=True)
class Spec:
    """A schedule as its owner sets it: when, what, and what to do with missed ticks."""

    recurrence: Recurrence
    task: dict[str, Any]
    missed: Missed = "skip"
    enabled: bool = True


def public(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    """A schedule as clients see it: a paused one has no next run."""
    schedule = dict(row)
    if not schedule["enabled"]:
        schedule["next_run_at"] = None
    return schedule


@dataclass(frozen=True, slots=True)
class Created:
    schedule: dict[str, Any]
    created: bool  # False: the idempotency key named one of the user's schedules already
    request_digest: str | None  # what the key was first sent with


async def create(
    conn: asyncpg.Connection,
    user_id: str,
    spec: Spec,
    *,
    key: str | None = None,
    digest: str | None = None,
) -> Created:
    """Store a new schedule of `user_id` in the caller's transaction (of that user), its
    first tick the first one after now; or, when `key` names one of the user's schedules,
    answer that one."""
    now: datetime = await conn.fetchval("SELECT now()")
    row = await conn.fetchrow(
        _INSERT, uuid4(), user_id, spec.recurrence.cron, spec.recurrence.interval_s,
        spec.recurrence.timezone, spec.task, spec.missed, spec.enabled,
        spec.recurrence.first(now), key, digest,
    )  # fmt: skip
    created = row is not None
    if row is None:  # the unique index made us wait for that schedule's commit
        row = await conn.fetchrow(_BY_KEY, user_id, key)
    schedule = dict(row)
    stored = schedule.pop("request_digest")
    return Created(public(schedule), created, stored)


async def get(db: Db, schedule_id: UUID) -> dict[str, Any] | None:
    """The schedule, None if `db` shows no such schedule."""
    row = await db.fetchrow(f"SELECT {COLUMNS} FROM schedules WHERE id = $1", schedule_id)
    return None if row is None else public(row)


async def listing(db: Db, *, user_id: str | None, limit: int) -> list[dict[str, Any]]:
    """The schedules `db` shows (one user's, or every user's for None), newest first."""
    where, args = ("WHERE user_id = $2", [user_id]) if user_id is not None else ("", [])
    rows = await db.fetch(
        f"SELECT {COLUMNS} FROM schedules {where} ORDER BY created_at DESC, id LIMIT $1",
        limit,
        *args,
    )
    return [public(r) for r in rows]


def current_spec(row: asyncpg.Record | dict[str, Any]) -> Spec:
    """The spec a stored schedule has (for a change of some of its fields)."""
    recurrence = Recurrence(row["cron"], row["interval_s"], row["timezone"])
    return Spec(recurrence, row["task"], row["missed"], row["enabled"])


async def change(db: Db, schedule_id: UUID, apply: Callable[[Spec], Spec]) -> dict[str, Any] | None:
    """Change a schedule: `apply(its spec)` gives its new spec (and may raise, changing nothing).
    A new recurrence, or a resume, starts from the first tick after now; otherwise the next
    tick stays. None if `db` shows no such schedule."""
    async with db.acquire() as conn:
        row = await conn.fetchrow(
            f"SELECT {COLUMNS}, now() AS now FROM schedules WHERE id = $1 FOR UPDATE", schedule_id
        )
        if row is None:
            return None
        old = current_spec(row)
        new = apply(old)
        next_run_at: datetime = row["next_run_at"]
        if new.recurrence != old.recurrence or (new.enabled and not old.enabled):
            next_run_at = new.recurrence.first(row["now"])
        updated = await conn.fetchrow(
            _UPDATE, schedule_id, new.recurrence.cron, new.recurrence.interval_s,
            new.recurrence.timezone, new.task, new.missed, new.enabled, next_run_at,
        )  # fmt: skip
    return public(updated)


async def delete(db: Db, schedule_id: UUID) -> bool:
    """Delete the schedule (its runs stay, with its id); whether `db` showed it."""
    status = await db.execute("DELETE FROM schedules WHERE id = $1", schedule_id)
    return status.split()[-1] != "0"


async def schedule_owner(pool: asyncpg.Pool, schedule_id: UUID) -> str | None:
    """Whose schedule it is (the kernel's read, for a service or admin token), None if none."""
    owner: str | None = await pool.fetchval(
        "SELECT user_id FROM schedules WHERE id = $1", schedule_id
    )
    return owner
