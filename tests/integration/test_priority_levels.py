"""Every message of a task keeps its level (docs/priorities.md): its children, a retry, a
cancel, the reconciler's republish, its dead letter and their replay."""

import asyncio
from functools import partial
from typing import Any
from uuid import UUID

from taskfleet.core.constants import QUEUES, Priority, TaskType, level_queue
from taskfleet.core.errors import PermanentError, RetryableError
from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.path.waiting import Waiting
from taskfleet.runtime.kernel import Kernel
from taskfleet.runtime.reconciler import Reconciler
from taskfleet.store.records import NewTask
from tests.conftest import wait_for
from tests.integration.api_client import api, auth, new_user
from tests.integration.conftest import CHAT, ConsumerFactory, drain_dlq, wait_status
from tests.integration.priority_helpers import (
    chat,
    drain,
    message_ids,
    one_ready,
    ready_to_be,
    recorder,
)


class TestLevelKept:
    async def test_the_children_of_a_task_run_at_its_level(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        user, tool = new_user(), QUEUES[TaskType.TOOL]

        async def fan_out(ctx: TaskContext) -> Waiting:
            child = NewTask(type=TaskType.TOOL, user_id=ctx.user_id, input={}, max_attempts=1)
            return Waiting([child], {"v": 1})

        await consume(fan_out, concurrency=1)
        async with api(kernel) as client:
            parent = await chat(client, auth(user), priority="high")
        await wait_status(kernel, parent["task_id"], "waiting")
        [child] = await kernel.pool.fetch(
            "SELECT priority FROM tasks WHERE parent_id = $1", UUID(parent["task_id"])
        )
        assert child["priority"] == "high"
        high_tools = kernel.settings.queue(level_queue(tool.name, Priority.HIGH))
        await wait_for(partial(one_ready, kernel, high_tools), what="the child in the high queue")

    async def test_a_retry_goes_back_to_its_level(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        user, attempts = new_user(), list[int]()
        failed_once = asyncio.Event()

        async def flaky(ctx: TaskContext) -> TaskResult:
            attempts.append(ctx.attempt)
            if ctx.attempt == 1:
                failed_once.set()
                raise RetryableError("again", delay_s=1.0)
            return TaskResult({"reply": "ok"}, reply="ok")

        consumer = await consume(flaky, concurrency=1)
        async with api(kernel) as client:
            accepted = await chat(client, auth(user), priority="low")
        await wait_status(kernel, accepted["task_id"], "retrying")
        await consumer.pause("test: see where the retry goes")
        # The relay publishes the retry to the low queue, not to chat_tasks.
        await ready_to_be(kernel, {Priority.LOW: 1, Priority.NORMAL: 0, Priority.HIGH: 0})
        await consumer.resume()
        await wait_status(kernel, accepted["task_id"], "completed")
        assert attempts == [1, 2]

    async def test_a_cancelled_task_of_any_level_never_runs(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        user, ran = new_user(), list[UUID]()
        async with api(kernel) as client:
            accepted = [await chat(client, auth(user), priority=p) for p in ("high", "low")]
            await ready_to_be(kernel, {Priority.HIGH: 1, Priority.LOW: 1})
            for task in accepted:
                resp = await client.post(f"/api/tasks/{task['task_id']}/cancel", headers=auth(user))
                assert resp.status == 202
            await consume(recorder(ran), concurrency=1)
            # Their messages are taken and settled without running; a normal task after them
            # runs once the single slot has been through them.
            await ready_to_be(kernel, {Priority.HIGH: 0, Priority.LOW: 0})
            marker = await chat(client, auth(user))
            await wait_status(kernel, marker["task_id"], "completed")
        for task in accepted:
            assert (await wait_status(kernel, task["task_id"], "cancelled"))["attempts"] == 0
        assert ran == [UUID(marker["task_id"])]

    async def test_the_reconciler_republishes_a_lost_message_to_its_level(
        self, kernel: Kernel
    ) -> None:
        settings = kernel.settings.model_copy(update={"reconcile_after_s": 30.0})
        reconciler = Reconciler(kernel.pool, kernel.broker, settings)
        reconciler._reachable_since = 0.0  # no warm-up: this process saw the database all along
        new = NewTask(
            type=TaskType.CHAT, user_id=new_user(), chat_id="c", input={"content": "lost"},
            max_attempts=3, priority=Priority.LOW,
        )  # fmt: skip
        async with kernel.pool.acquire() as conn, conn.transaction():
            await kernel.store.insert_task(conn, new, relay_grace_s=3600)
            await conn.execute("DELETE FROM outbox WHERE task_id = $1", new.task_id)
            await conn.execute(
                "UPDATE tasks SET updated_at = now() - interval '1 minute' WHERE id = $1",
                new.task_id,
            )
        # A message ready at any level of chat_tasks gives its tasks longer...
        high = kernel.settings.queue(level_queue(CHAT.name, Priority.HIGH))
        await kernel.broker.publish(high, b"{}", message_id="m")
        touched = "SELECT updated_at FROM tasks WHERE id = $1"  # a repair sets it to now()
        before = await kernel.pool.fetchval(touched, new.task_id)
        await reconciler.reconcile_once()
        # (This task's row only: a task another test left in the shared database, in a queue
        # with nothing ready, may be repaired in the same pass.)
        assert await kernel.pool.fetchval(touched, new.task_id) == before
        await drain(kernel, high)
        # ... and once none waits, the lost one goes out again, to its own level's queue.
        assert (await reconciler.reconcile_once() or {}).get("lost_message", 0) >= 1
        low = kernel.settings.queue(level_queue(CHAT.name, Priority.LOW))

        async def republished() -> bool:
            return str(new.task_id) in await message_ids(kernel, low)

        await wait_for(republished, timeout_s=10, what="its message in the low queue")

    async def test_dead_letters_go_to_the_dlq_of_their_level_and_are_replayed(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        user, admin, seen = new_user(), auth("ops", "admin"), set[UUID]()

        async def refuse(ctx: TaskContext) -> TaskResult:
            if ctx.task_id not in seen:  # the first run fails; the replay's succeeds
                seen.add(ctx.task_id)
                raise PermanentError("no")
            return TaskResult({"reply": "ok"}, reply="ok")

        await consume(refuse, concurrency=2)
        async with api(kernel) as client:
            high = await chat(client, auth(user), priority="high")
            low = await chat(client, auth(user), priority="low")
            for accepted in (high, low):
                await wait_status(kernel, accepted["task_id"], "failed")

            async def both_dead() -> bool:
                resp = await client.get("/api/admin/queues", headers=admin)
                depth = {q["name"]: q["messages"] for q in (await resp.json())["queues"]}
                return bool(depth["chat_tasks.high.dlq"] == depth["chat_tasks.low.dlq"] == 1)

            await wait_for(both_dead, timeout_s=10, what="a dead letter in each level's DLQ")
            resp = await client.get("/api/admin/dlq/chat_tasks.high", headers=admin)
            letters = (await resp.json())["messages"]
            assert [m["task_id"] for m in letters] == [high["task_id"]]
            resp = await client.post("/api/admin/dlq/chat_tasks/replay", headers=admin)
            assert (await resp.json())["replayed"] == 2
            for accepted in (high, low):
                await wait_status(kernel, accepted["task_id"], "completed")
        assert await drain_dlq(kernel, level_queue(CHAT.name, Priority.HIGH)) == []

    async def test_a_message_the_worker_refuses_goes_to_its_levels_dlq(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        await consume(recorder([]), concurrency=1)
        high = level_queue(CHAT.name, Priority.HIGH)
        await kernel.broker.publish(kernel.settings.queue(high), b"not json", message_id="x")

        async def letters() -> list[Any]:
            return await drain_dlq(kernel, high)

        [letter] = await wait_for(letters, timeout_s=10, what="the letter in the high DLQ")
        assert letter.body == b"not json"
        assert await drain_dlq(kernel) == []
