"""Reads of tasks and chats: one statement each, no transition."""

from typing import Any
from uuid import UUID

import asyncpg

from taskfleet.store.records import TASK_COLUMNS
from taskfleet.store.tenancy import Db


class Reads:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def task_owner(self, task_id: UUID) -> str | None:
        """Whose task this is: what a service token needs to act for that user."""
        owner: str | None = await self.pool.fetchval(
            "SELECT user_id FROM tasks WHERE id = $1", task_id
        )
        return owner

    async def get_task(self, task_id: UUID) -> dict[str, Any] | None:
        """The task's row (TASK_COLUMNS), None if there is no such task; not scoped to a user."""
        row = await self.pool.fetchrow(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1", task_id)
        return dict(row) if row is not None else None

    async def chat_messages(self, db: Db, chat_id: str, user_id: str) -> list[dict[str, Any]]:
        """A chat's messages, oldest first; `db` is the reader's scope, so row security applies."""
        rows = await db.fetch(
            "SELECT id, role, content, status, task_id, created_at FROM messages"
            " WHERE chat_id = $1 AND user_id = $2 ORDER BY seq",
            chat_id,
            user_id,
        )
        return [dict(r) for r in rows]
