"""Task routes: cancel stops a queued task at once and a running one keeping its partial output,
never retried; retry runs a failed task again to completion."""

import asyncio

from taskfleet.core.errors import RetryableError
from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.runtime.kernel import Kernel
from tests.integration.api_client import api, auth, new_user, submit
from tests.integration.conftest import ConsumerFactory, drain_dlq, wait_status


class TestCancel:
    async def test_queued_task_is_cancelled_at_once_and_never_runs(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        user, ran = new_user(), []

        async def record(ctx: TaskContext) -> TaskResult:
            ran.append(ctx.task_id)
            return TaskResult({})

        async with api(kernel) as client:
            accepted = await submit(client, user)  # nobody consumes yet: it stays queued
            resp = await client.post(f"/api/tasks/{accepted['task_id']}/cancel", headers=auth(user))
            task = await resp.json()
            assert (resp.status, task["status"]) == (202, "cancelled")
            # Its message is still in the queue: a worker acknowledges it without running it
            consumer = await consume(record)
            marker = await submit(client, user, "after")
            await wait_status(kernel, marker["task_id"], "completed")
            again = await client.post(
                f"/api/tasks/{accepted['task_id']}/cancel", headers=auth(user)
            )
            assert again.status == 409
        assert str(accepted["task_id"]) not in {str(t) for t in ran}
        assert not consumer.inflight
        history = await kernel.store.chat_messages(kernel.pool, "c1", user)
        assert [m["status"] for m in history if str(m["task_id"]) == accepted["task_id"]] == [
            "completed", "failed",
        ]  # fmt: skip

    async def test_running_task_is_stopped_keeps_partial_output_and_is_not_retried(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        user, calls = new_user(), []
        started = asyncio.Event()

        async def long_job(ctx: TaskContext) -> TaskResult:
            calls.append(ctx.attempt)
            await ctx.partial({"done": "half"}, reply="half an answer")
            started.set()
            await asyncio.wait_for(ctx.cancelled.wait(), 30)  # a handler that checks the flag
            return TaskResult({"never": True})

        await consume(long_job)
        async with api(kernel) as client:
            accepted = await submit(client, user)
            await asyncio.wait_for(started.wait(), 10)
            resp = await client.post(f"/api/tasks/{accepted['task_id']}/cancel", headers=auth(user))
            body = await resp.json()
            assert resp.status == 202
            assert body["cancel_requested"] is True
        task = await wait_status(kernel, accepted["task_id"], "cancelled", timeout_s=2)
        assert task["partial_output"] == {"done": "half"}
        assert task["attempts"] == 1
        retries = await kernel.pool.fetchval(
            "SELECT count(*) FROM outbox WHERE task_id = $1 AND kind <> 'task'",
            accepted["task_id"],
        )
        assert retries == 0
        assert calls == [1]
        history = await kernel.store.chat_messages(kernel.pool, "c1", user)
        reply = [m for m in history if str(m["task_id"]) == accepted["task_id"]][-1]
        assert (reply["content"], reply["status"]) == ("half an answer", "failed")


class TestRetryRoute:
    async def test_failed_task_runs_again_and_completes(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        user, healthy = new_user(), asyncio.Event()

        async def flaky(ctx: TaskContext) -> TaskResult:
            if not healthy.is_set():
                raise RetryableError("down")
            return TaskResult({"ok": True}, reply="ok")

        await consume(flaky, max_attempts=1)
        async with api(kernel) as client:
            accepted = await submit(client, user)
            await wait_status(kernel, accepted["task_id"], "failed")
            healthy.set()
            resp = await client.post(f"/api/tasks/{accepted['task_id']}/retry", headers=auth(user))
            assert resp.status == 202
            task = await wait_status(kernel, accepted["task_id"], "completed")
            assert task["attempts"] == 1
            again = await client.post(f"/api/tasks/{accepted['task_id']}/retry", headers=auth(user))
            assert again.status == 409
        await drain_dlq(kernel)
