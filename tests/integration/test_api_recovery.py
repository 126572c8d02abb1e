"""The recovery routes: resume runs a failed or cancelled task again from its checkpoint,
restart from scratch (checkpoint and partial output cleared), delete removes a finished task.
Only the owner or an admin; a task in another state is a 409 with its error body."""

import asyncio
from typing import Any
from uuid import uuid4

from taskfleet.core.errors import PermanentError
from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.runtime.kernel import Kernel
from tests.integration.api_client import api, auth, new_user, submit
from tests.integration.conftest import ConsumerFactory, drain_dlq, task_row, wait_status


class Resumable:
    """A handler that checkpoints how far it got, then fails until it is healthy; it records
    the checkpoint each attempt started from."""

    def __init__(self) -> None:
        self.healthy = asyncio.Event()
        self.started_from: list[Any] = []

    async def __call__(self, ctx: TaskContext) -> TaskResult:
        self.started_from.append(ctx.last_checkpoint)
        done = (ctx.last_checkpoint or {}).get("done", 0)
        await ctx.partial({"done": done + 1})
        await ctx.checkpoint({"done": done + 1})
        if not self.healthy.is_set():
            raise PermanentError("the upstream broke", code="upstream_broke")
        return TaskResult({"done": done + 1}, reply="ok")


async def _error(resp: Any) -> dict[str, Any]:
    body: dict[str, Any] = await resp.json()
    return body["error"]  # type: ignore[no-any-return]


class TestResumeAndRestart:
    async def test_resume_goes_on_from_the_checkpoint_and_restart_from_scratch(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        user, handler = new_user(), Resumable()
        await consume(handler, max_attempts=1)
        async with api(kernel) as client:
            accepted = await submit(client, user)
            task_id = accepted["task_id"]
            failed = await wait_status(kernel, task_id, "failed")
            assert failed["checkpoint"] is not None
            # Resume: the next attempt starts from {"done": 1}, and fails again
            resp = await client.post(f"/api/tasks/{task_id}/resume", headers=auth(user))
            assert resp.status == 202, await resp.text()
            assert (await resp.json())["status"] in ("queued", "processing", "failed")
            await wait_for_attempts(handler, 2)
            await wait_status(kernel, task_id, "failed")
            assert handler.started_from == [None, {"done": 1}]
            # Restart: from nothing, checkpoint and partial output cleared first
            handler.healthy.set()
            resp = await client.post(f"/api/tasks/{task_id}/restart", headers=auth(user))
            assert resp.status == 202, await resp.text()
            done = await wait_status(kernel, task_id, "completed")
            assert handler.started_from == [None, {"done": 1}, None]
            assert done["output"] == {"done": 1}
            assert done["attempts"] == 1
            # A completed task neither resumes nor restarts: 409 with the error body
            for verb in ("resume", "restart"):
                again = await client.post(f"/api/tasks/{task_id}/{verb}", headers=auth(user))
                assert again.status == 409
                assert (await _error(again))["code"] == "conflict"
        await drain_dlq(kernel)

    async def test_resume_without_a_checkpoint_is_refused_but_restart_runs(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        user, healthy = new_user(), asyncio.Event()

        async def no_checkpoint(ctx: TaskContext) -> TaskResult:
            if not healthy.is_set():
                raise PermanentError("no", code="nope")
            return TaskResult({"ok": True}, reply="ok")

        await consume(no_checkpoint, max_attempts=1)
        async with api(kernel) as client:
            task_id = (await submit(client, user))["task_id"]
            await wait_status(kernel, task_id, "failed")
            resp = await client.post(f"/api/tasks/{task_id}/resume", headers=auth(user))
            assert resp.status == 409
            error = await _error(resp)
            assert error["code"] == "no_checkpoint"
            assert "restart" in error["message"]
            healthy.set()
            resp = await client.post(f"/api/tasks/{task_id}/restart", headers=auth(user))
            assert resp.status == 202
            await wait_status(kernel, task_id, "completed")
        await drain_dlq(kernel)

    async def test_only_the_owner_or_an_admin_may_resume(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        owner, other, handler = new_user(), new_user(), Resumable()
        await consume(handler, max_attempts=1)
        async with api(kernel) as client:
            task_id = (await submit(client, owner))["task_id"]
            await wait_status(kernel, task_id, "failed")
            for verb in ("resume", "restart"):
                resp = await client.post(f"/api/tasks/{task_id}/{verb}", headers=auth(other))
                assert resp.status == 404  # as if absent
                assert (await _error(resp))["code"] == "not_found"
            gone = await client.delete(f"/api/tasks/{task_id}", headers=auth(other))
            assert gone.status == 404
            row = await task_row(kernel, task_id)
            assert row is not None
            assert row["status"] == "failed"
            handler.healthy.set()
            resp = await client.post(f"/api/tasks/{task_id}/resume", headers=auth("ops", "admin"))
            assert resp.status == 202, await resp.text()
            await wait_status(kernel, task_id, "completed")
            assert handler.started_from == [None, {"done": 1}]
        await drain_dlq(kernel)


async def wait_for_attempts(handler: Resumable, n: int) -> None:
    from tests.conftest import wait_for

    async def probe() -> bool:
        return len(handler.started_from) >= n

    await wait_for(probe, what=f"{n} attempts")


class TestDelete:
    async def test_a_finished_task_goes_a_running_one_stays(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        user, release = new_user(), asyncio.Event()

        async def slow(ctx: TaskContext) -> TaskResult:
            if ctx.input["content"] == "slow":
                await asyncio.wait_for(release.wait(), 30)
            return TaskResult({"ok": True}, reply="ok")

        await consume(slow)
        async with api(kernel) as client:
            running = (await submit(client, user, "slow"))["task_id"]
            await wait_status(kernel, running, "processing")
            resp = await client.delete(f"/api/tasks/{running}", headers=auth(user))
            assert resp.status == 409
            error = await _error(resp)
            assert (error["code"], error["message"]) == (
                "conflict",
                "only a finished task can be deleted, not a processing one",
            )
            release.set()
            await wait_status(kernel, running, "completed")
            resp = await client.delete(f"/api/tasks/{running}", headers=auth(user))
            assert resp.status == 200
            assert await resp.json() == {"id": running, "deleted": True, "status": "completed"}
            assert await task_row(kernel, running) is None
            assert (await client.get(f"/api/tasks/{running}", headers=auth(user))).status == 404
            again = await client.delete(f"/api/tasks/{running}", headers=auth(user))
            assert again.status == 404
            # Its chat messages went with it
            history = await kernel.store.chat_messages(kernel.pool, "c1", user)
            assert [m for m in history if str(m["task_id"]) == running] == []
            # An admin deletes any user's finished task
            other = (await submit(client, user, "quick"))["task_id"]
            await wait_status(kernel, other, "completed")
            resp = await client.delete(f"/api/tasks/{other}", headers=auth("ops", "admin"))
            assert resp.status == 200
            assert await task_row(kernel, other) is None

    async def test_a_parent_whose_child_still_runs_stays(self, kernel: Kernel) -> None:
        user, parent = new_user(), uuid4()
        async with kernel.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO tasks (id, type, user_id, status, max_attempts)"
                " VALUES ($2, 'chat_message', $1, 'failed', 1)",
                user,
                parent,
            )
            await conn.execute(
                "INSERT INTO tasks (id, type, user_id, status, max_attempts, parent_id)"
                " VALUES ($3, 'tool_execution', $1, 'waiting', 1, $2)",
                user,
                parent,
                uuid4(),
            )
        async with api(kernel) as client:
            resp = await client.delete(f"/api/tasks/{parent}", headers=auth(user))
            assert resp.status == 409
            assert (await _error(resp))["code"] == "children_running"
            await kernel.pool.execute(
                "UPDATE tasks SET status = 'cancelled' WHERE parent_id = $1", parent
            )
            resp = await client.delete(f"/api/tasks/{parent}", headers=auth(user))
            assert resp.status == 200
        assert (
            await kernel.pool.fetchval(
                "SELECT count(*) FROM tasks WHERE id = $1 OR parent_id = $1", parent
            )
            == 0
        )
