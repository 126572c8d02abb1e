"""The outbox: a task committed by the API whose publish failed is published by the relay."""

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from fleet_api.app import create_app
from taskfleet.broker.outbox import OutboxRelay
from taskfleet.core.constants import TaskType
from taskfleet.core.errors import PublishFailed
from taskfleet.core.metrics import OUTBOX_PUBLISHED
from taskfleet.core.settings import Settings
from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.runtime.kernel import Kernel, open_kernel
from taskfleet.security.auth import issue_token
from taskfleet.store.records import NewTask
from tests.conftest import JWT_SECRET, wait_for
from tests.integration.conftest import ConsumerFactory, wait_status


class TestOutboxRelay:
    async def test_api_publish_fails_after_commit_and_the_relay_publishes_it(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        async def reply(ctx: TaskContext) -> TaskResult:
            return TaskResult({"reply": "ok"}, reply="ok")

        await consume(reply)
        attempted: list[str] = []

        async def broken_publish(
            queue: str, body: bytes, message_id: str, headers: dict[str, Any]
        ) -> None:
            # What a crash between commit and publish leaves behind: committed, not published.
            attempted.append(message_id)
            raise PublishFailed("simulated: the API died before publishing")

        relayed_before = OUTBOX_PUBLISHED.labels("task")._value.get()
        app = create_app(kernel, publish=broken_publish)
        token = issue_token(JWT_SECRET, "alice")
        async with TestClient(TestServer(app)) as client:
            resp = await client.post(
                "/api/chat/stream",
                json={"chat_id": "relay", "content": "are you there?"},
                headers={"Authorization": f"Bearer {token}"},
            )
            body: dict[str, Any] = await resp.json()
        assert resp.status == 202, body
        task = await wait_status(kernel, body["task_id"], "completed")
        assert attempted == [body["task_id"]]
        assert task["attempts"] == 1
        # Only the relay can have published it (the API's publish failed).
        assert OUTBOX_PUBLISHED.labels("task")._value.get() == relayed_before + 1

        async def outbox_empty() -> bool:
            # The relay deletes its row in the transaction that published it, which can
            # commit after the worker already completed the task.
            count = await kernel.pool.fetchval(
                "SELECT count(*) FROM outbox WHERE task_id = $1", body["task_id"]
            )
            return bool(count == 0)

        await wait_for(outbox_empty, what="the relay to drop its row")


async def test_a_cancel_while_the_relay_publishes_the_tasks_row_neither_waits_nor_deadlocks(
    settings: Settings,
) -> None:
    """The relay holds its due rows while it publishes, then updates their tasks; a cancel
    holds its task while it drops the task's rows. Each waiting on the other deadlocked,
    and the user got a 500."""
    async with open_kernel(settings, name="no-relay", relay=False) as kernel:
        await _cancel_during_a_relay_batch(kernel)


async def _cancel_during_a_relay_batch(kernel: Kernel) -> None:
    new = NewTask(
        type=TaskType.CHAT, user_id="alice", chat_id="c", input={"content": "x"}, max_attempts=3
    )
    async with kernel.pool.acquire() as conn:
        await kernel.store.insert_task(conn, new, relay_grace_s=0)
        await conn.execute("UPDATE tasks SET status = 'retrying' WHERE id = $1", new.task_id)
        await conn.execute("UPDATE outbox SET kind = 'retry' WHERE task_id = $1", new.task_id)
    publishing, published = asyncio.Event(), asyncio.Event()

    class SlowRelay(OutboxRelay):
        async def _publish(self, row: Any) -> None:
            if row["task_id"] == new.task_id:
                publishing.set()
                await published.wait()

    relay = SlowRelay(kernel.pool, kernel.broker, kernel.settings)
    batch = asyncio.ensure_future(relay.relay_once())
    try:
        await asyncio.wait_for(publishing.wait(), 10)  # the relay holds the row, mid-publish
        # A cancel meanwhile completes at once, leaving the relay its row
        row = await asyncio.wait_for(
            kernel.pool.fetchrow("SELECT * FROM tf_request_cancel($1)", new.task_id), 5
        )
        assert row["outcome"] == "cancelled"
    finally:
        published.set()
    # ... and the relay finishes its batch without waiting for anyone
    assert await asyncio.wait_for(batch, 5) >= 1
    task = await kernel.store.get_task(new.task_id)
    assert task is not None
    assert task["status"] == "cancelled"
