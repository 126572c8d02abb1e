"""The outbox forgets exactly the rows it published: a later row of the same task is kept, and a
tool-using chat through the API completes."""

from uuid import UUID

import pytest

from taskfleet.core.constants import TaskType
from taskfleet.core.settings import Settings
from taskfleet.path.consumer import Consumer
from taskfleet.runtime.kernel import Kernel, open_kernel
from taskfleet.store import submissions as store_module
from taskfleet.store.records import NewTask
from tests.conftest import wait_for
from tests.integration.agent_helpers import chat_handler, tool_handler
from tests.integration.api_client import api, new_user, submit
from tests.integration.conftest import (
    CHAT,
    wait_status,
)
from tests.integration.copy_helpers import TOOL


class TestOutboxForgetsByRow:
    async def test_forgetting_a_published_row_keeps_a_later_row_of_the_same_task(
        self, kernel: Kernel
    ) -> None:
        # Given a task whose first message's row and a later row (a resume) are both there
        new = NewTask(
            type=TaskType.CHAT,
            user_id="alice",
            input={"content": "x"},
            max_attempts=3,
            chat_id="c1",
        )
        async with kernel.pool.acquire() as conn, conn.transaction():
            first = await kernel.store.insert_task(conn, new, relay_grace_s=60)
            later = await conn.fetchval(
                "INSERT INTO outbox (task_id, queue, attempt, kind, available_at)"
                " VALUES ($1, 'chat_tasks', 2, 'task', now() + interval '60 s') RETURNING id",
                new.task_id,
            )
        assert first is not None
        # When the first publish is confirmed and its row forgotten (batched, as the API does)
        await kernel.store.forget_outbox(first.outbox_id)
        ids = await wait_for(
            lambda: _rows(kernel, new.task_id, only=[later]), what="the first row to go"
        )
        # Then the later row, the resume's, is still there for the relay
        assert ids == [later]

    async def test_a_tool_using_chat_through_the_api_completes(
        self, settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The parent's resume row (the relay's to publish) is committed while its first
        message's row is being forgotten: the forget by task id took the resume row too. A
        forget every 0.5 s and a relay every 3 s make that window one the tool round hits."""
        monkeypatch.setattr(store_module, "FORGET_EVERY_S", 0.5)
        slow = settings.model_copy(update={"outbox_poll_s": 3.0})
        async with open_kernel(slow, name="slow-relay") as kernel:
            consumers = [
                Consumer(
                    settings=slow,
                    spec=spec,
                    handler=handler,
                    store=kernel.store,
                    broker=kernel.broker,
                    supervisor=kernel.supervisor,
                    concurrency=8,
                )
                for spec, handler in ((CHAT, chat_handler(kernel)), (TOOL, tool_handler(kernel)))
            ]
            for consumer in consumers:
                await consumer.start()
            try:
                async with api(kernel) as client:
                    accepted = [await submit(client, new_user(), f"calc: {i}*2") for i in range(5)]
                for i, body in enumerate(accepted):
                    task = await wait_status(kernel, UUID(body["task_id"]), "completed")
                    assert str(2 * i) in task["output"]["reply"]
            finally:
                for consumer in consumers:
                    await consumer.stop(grace_s=2)


async def _rows(kernel: Kernel, task_id: UUID, only: list[int]) -> list[int] | None:
    ids = [
        r["id"]
        for r in await kernel.pool.fetch(
            "SELECT id FROM outbox WHERE task_id = $1 ORDER BY id", task_id
        )
    ]
    return ids if ids == only else None
