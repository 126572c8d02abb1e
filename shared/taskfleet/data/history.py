"""A task's history: every change of its status, oldest first (migrations/0022: the rows are
written by a trigger on tasks, so every path leaves them)."""

from typing import Any
from uuid import UUID

from taskfleet.store.tenancy import Db


async def transitions(db: Db, task_id: UUID) -> list[dict[str, Any]]:
    """The task's transitions as `db`'s scope shows them (another user's: none)."""
    rows = await db.fetch(
        "SELECT from_status, to_status, attempts, error_code, next_attempt_at, at"
        " FROM task_transitions WHERE task_id = $1 ORDER BY id",
        task_id,
    )
    return [dict(r) for r in rows]
