"""The operator routes: queues, dead letters and their replay until the task completes, letters
of a message that never became a task and of a queued task included."""

import asyncio
from typing import Any

from taskfleet.core.constants import dlq_name
from taskfleet.core.errors import RetryableError
from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.runtime.kernel import Kernel
from tests.conftest import wait_for
from tests.integration.api_client import api, auth, new_user, submit
from tests.integration.conftest import CHAT, ConsumerFactory, chat_message, drain_dlq, wait_status


class TestOperatorRoutes:
    async def test_queues_dead_letters_and_replay_until_the_task_completes(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        await drain_dlq(kernel)
        user, healthy = new_user(), asyncio.Event()

        async def flaky(ctx: TaskContext) -> TaskResult:
            if not healthy.is_set():
                raise RetryableError("down", code="upstream_down")
            return TaskResult({"ok": True}, reply="fine")

        await consume(flaky, max_attempts=2)
        admin = auth("ops", "admin")
        # The API writes max_attempts into the row; the claim takes the row's.
        two = Kernel(
            kernel.settings.model_copy(update={"max_attempts": 2}),
            kernel.pool,
            kernel.store,
            kernel.broker,
            kernel.supervisor,
        )
        async with api(two) as client:
            accepted = await submit(client, user)
            await wait_status(kernel, accepted["task_id"], "failed")

            async def letters() -> list[dict[str, Any]]:
                resp = await client.get("/api/admin/dlq/chat_tasks", headers=admin)
                body: dict[str, Any] = await resp.json()
                return [m for m in body["messages"] if m["task_id"] == accepted["task_id"]]

            [letter] = await wait_for(letters, what="the dead letter")
            assert letter["reason"].startswith("max_attempts")
            assert letter["error"] == "upstream_down"

            async def dlq_counted() -> dict[str, Any] | None:
                # A quorum queue returns a peeked letter a few ms after the peek's channel
                # closed: until then it counts 0 messages and 1 consumer.
                queues = await (await client.get("/api/admin/queues", headers=admin)).json()
                by_name = {q["name"]: q for q in queues["queues"]}
                return by_name if by_name["chat_tasks.dlq"]["messages"] >= 1 else None

            by_name = await wait_for(dlq_counted, timeout_s=5, what="the letter in the depth")
            assert by_name["chat_tasks"]["consumers"] >= 1
            assert len(by_name) == 24  # 4 queues x 3 priority levels, each with its DLQ
            assert by_name["chat_tasks.low"]["consumers"] >= 1
            healthy.set()
            resp = await client.post("/api/admin/dlq/chat_tasks/replay", headers=admin)
            result = await resp.json()
            assert result["replayed"] >= 1
            task = await wait_status(kernel, accepted["task_id"], "completed")
            assert task["output"] == {"ok": True}
            assert await letters() == []
            unknown = await client.get("/api/admin/dlq/nope", headers=admin)
            assert unknown.status == 404


class TestReplayOfWhatNeverFinished:
    async def test_letters_of_a_message_that_never_became_a_task_and_of_a_queued_task_run(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        """The broker dead-letters by its delivery limit whatever it could not deliver: a chat
        message a backend published straight to the queue (no task yet), or the message of a
        task that is still queued. A replay runs both."""
        await drain_dlq(kernel)
        user = new_user()
        never = chat_message(user_id=user, content="never claimed")
        queued = chat_message(user_id=user, content="queued")
        async with kernel.pool.acquire() as conn:  # a task whose message went to the DLQ
            await conn.execute(
                "INSERT INTO tasks (id, type, user_id, chat_id, input, max_attempts)"
                " VALUES ($1, 'chat_message', $2, $3, $4, 3)",
                queued.task_id,
                user,
                queued.chat_id,
                queued.payload,
            )
        dlq = kernel.settings.queue(dlq_name(CHAT.name))
        for msg in (never, queued):
            await kernel.broker.publish(
                dlq, msg.dumps(), message_id=str(msg.task_id), headers={"x-death": "delivery_limit"}
            )
        await consume(lambda ctx: _said(ctx))
        async with api(kernel) as client:
            resp = await client.post(
                "/api/admin/dlq/chat_tasks/replay", headers=auth("ops", "admin")
            )
            assert await resp.json() == {"queue": "chat_tasks", "replayed": 2, "skipped": 0}
        for msg in (never, queued):
            task = await wait_status(kernel, msg.task_id, "completed")
            assert task["output"] == {"said": msg.payload["content"]}
        assert await drain_dlq(kernel) == []


class TestPurge:
    async def test_purge_deletes_the_letters_and_leaves_their_tasks_as_they_were(
        self, kernel: Kernel
    ) -> None:
        await drain_dlq(kernel)
        user = new_user()
        letters = [chat_message(user_id=user, content=f"dead {i}") for i in range(3)]
        dlq = kernel.settings.queue(dlq_name(CHAT.name))
        for msg in letters:
            await kernel.broker.publish(
                dlq, msg.dumps(), message_id=str(msg.task_id), headers={"x-death": "rejected"}
            )
        async with api(kernel) as client:
            refused = await client.post("/api/admin/dlq/chat_tasks/purge", headers=auth(user))
            assert refused.status == 403
            assert (await refused.json())["error"]["code"] == "forbidden"
            resp = await client.post(
                "/api/admin/dlq/chat_tasks.dlq/purge", headers=auth("ops", "admin")
            )
            assert resp.status == 200
            assert await resp.json() == {"queue": "chat_tasks", "purged": 3}
            left = await client.get("/api/admin/dlq/chat_tasks", headers=auth("ops", "admin"))
            assert (await left.json())["messages"] == []
            unknown = await client.post("/api/admin/dlq/nope/purge", headers=auth("ops", "admin"))
            assert unknown.status == 404
        assert await drain_dlq(kernel) == []


async def _said(ctx: TaskContext) -> TaskResult:
    return TaskResult({"said": ctx.input["content"]}, reply="ok")
