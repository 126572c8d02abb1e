"""A parent waiting for its children (docs/agent.md): tf_wait is fenced like every outcome, and
a parent whose last children end together is requeued once."""

import asyncio
from typing import Any

import asyncpg
import pytest

from taskfleet.core.errors import StaleClaim
from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.path.waiting import Waiting
from taskfleet.runtime.kernel import Kernel
from taskfleet.store.records import NewTask
from tests.conftest import wait_for
from tests.integration.agent_helpers import (
    TOOL,
    children,
    waiting_parent,
)
from tests.integration.api_client import new_user
from tests.integration.conftest import (
    ConsumerFactory,
    chat_message,
    publish,
    task_row,
    wait_status,
)


async def test_an_attempt_that_lost_its_claim_cannot_go_waiting(
    kernel: Kernel, consume: ConsumerFactory
) -> None:
    """tf_wait is fenced like every outcome: no children for a task another attempt holds or
    that is already over."""
    fences: list[int] = []  # the attempt's, as it ran

    async def done(ctx: TaskContext) -> TaskResult:
        fence = await kernel.pool.fetchval("SELECT fence FROM tasks WHERE id = $1", ctx.task_id)
        fences.append(fence)
        return TaskResult({"ok": True})

    await consume(done)
    msg = chat_message(user_id=new_user())
    await publish(kernel, msg)
    await wait_status(kernel, msg.task_id, "completed")
    child = NewTask(type=TOOL.task_type, user_id=msg.user_id, input={}, max_attempts=1)
    waiting = Waiting([child], {"v": 1})
    with pytest.raises(StaleClaim):
        await kernel.store.wait(msg.task_id, fences[0], waiting.state, waiting.rows(), 0)
    assert await children(kernel, msg.task_id) == []


async def test_the_parent_is_requeued_once_when_its_last_children_end_together(
    kernel: Kernel,
) -> None:
    """Two children ending in concurrent transactions: the second sees the first's commit."""
    user = new_user()
    parent = chat_message(user_id=user)
    kids = await waiting_parent(kernel, user, parent.task_id, 2)
    a, b = await kernel.pool.acquire(), await kernel.pool.acquire()
    try:
        ta, tb = a.transaction(), b.transaction()
        await ta.start()
        await tb.start()
        end = "UPDATE tasks SET status = 'completed' WHERE id = $1"
        await a.execute(end, kids[0].task_id)  # holds the parent's lock until it commits
        second = asyncio.create_task(b.execute(end, kids[1].task_id))
        await wait_for(lambda: _blocked(kernel, b), what="the second child to wait for the lock")
        await ta.commit()
        await second
        await tb.commit()
    finally:
        await kernel.pool.release(a)
        await kernel.pool.release(b)
    row = await task_row(kernel, parent.task_id)
    assert row is not None
    assert row["status"] == "queued"
    rows = await kernel.pool.fetch(
        "SELECT queue, attempt, kind FROM outbox WHERE task_id = $1", parent.task_id
    )
    assert [tuple(r) for r in rows] == [("chat_tasks", 2, "task")]


async def _blocked(kernel: Kernel, conn: Any) -> bool:
    # As the login role: the kernel's role may not read other sessions' wait events.
    watcher = await asyncpg.connect(kernel.settings.database_url)
    try:
        return bool(
            await watcher.fetchval(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1",
                conn.get_server_pid(),
            )
        )
    finally:
        await watcher.close()
