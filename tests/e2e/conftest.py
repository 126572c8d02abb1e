"""Real processes: `taskfleet api` and `taskfleet worker chat` on the session's database."""

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from taskfleet.core.settings import Settings
from taskfleet.store.pool import create_pool
from tests.conftest import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(settings.database_url, size=2)
    yield pool
    await pool.close()


async def wait_task(db: asyncpg.Pool, task_id: Any, *statuses: str, timeout_s: float = 30) -> Any:
    async def probe() -> Any:
        row = await db.fetchrow("SELECT * FROM tasks WHERE id = $1", task_id)
        return row if row is not None and row["status"] in statuses else None

    return await wait_for(probe, timeout_s=timeout_s, what=f"task {task_id} {statuses}")
