"""Task routes: cancel, retry, listings, scopes, operator routes and DLQ replay."""

import asyncio
import re
from typing import Any
from uuid import uuid4

import pytest

from fleet_api.app import create_app
from fleet_api.routes import OPENAPI
from taskfleet.core.constants import dlq_name
from taskfleet.core.errors import RetryableError
from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.runtime.kernel import Kernel
from tests.conftest import wait_for
from tests.integration.api_client import api, auth, new_user, submit
from tests.integration.conftest import CHAT, ConsumerFactory, chat_message, drain_dlq, wait_status


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


class TestListings:
    async def test_pagination_returns_every_task_exactly_once_while_tasks_are_added(
        self, kernel: Kernel
    ) -> None:
        user = new_user()
        async with api(kernel) as client:
            original = {(await submit(client, user, f"m{i}"))["task_id"] for i in range(23)}
            seen: list[str] = []
            cursor, added = None, 0
            while True:
                url = "/api/tasks?limit=5" + (f"&cursor={cursor}" if cursor else "")
                page = await (await client.get(url, headers=auth(user))).json()
                seen += [t["id"] for t in page["tasks"]]
                await submit(client, user, f"new{added}")  # a task added between pages
                added += 1
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            assert len(seen) == len(set(seen))
            assert original <= set(seen)
            first = await (
                await client.get(f"/api/tasks/user/{user}?limit=200", headers=auth(user))
            ).json()
            assert len(first["tasks"]) == 23 + added

    async def test_filters_and_bad_queries(self, kernel: Kernel) -> None:
        user = new_user()
        async with api(kernel) as client:
            accepted = await submit(client, user)
            await client.post(f"/api/tasks/{accepted['task_id']}/cancel", headers=auth(user))
            await submit(client, user)
            cancelled = await (
                await client.get("/api/tasks?status=cancelled", headers=auth(user))
            ).json()
            assert [t["id"] for t in cancelled["tasks"]] == [accepted["task_id"]]
            chats = await (
                await client.get("/api/tasks?type=chat_message", headers=auth(user))
            ).json()
            assert len(chats["tasks"]) == 2
            for bad in ("status=nope", "limit=0", "limit=x", "type=pdf", "extra=1"):
                resp = await client.get(f"/api/tasks?{bad}", headers=auth(user))
                assert resp.status == 422, bad
            resp = await client.get("/api/tasks?cursor=not-ours", headers=auth(user))
            assert resp.status == 400


class TestScopes:
    async def test_every_route_wants_a_token_and_hides_other_users_tasks_with_404(
        self, kernel: Kernel
    ) -> None:
        owner, stranger = new_user("owner"), new_user("stranger")
        async with api(kernel) as client:
            accepted = await submit(client, owner, chat="private")
            operations = client.app[OPENAPI].operations
            user_routes = [op for op in operations if not op.path.startswith("/api/admin")]
            for op in user_routes:
                path = _fill(op.path, task_id=accepted["task_id"], user_id=owner, chat_id="private")
                body = {"chat_id": "x", "content": "y"} if op.body else None
                for headers in ({}, {"Authorization": "Bearer junk"}):
                    resp = await client.request(op.method, path, json=body, headers=headers)
                    assert resp.status == 401, (op.method, path)
                # The owner's objects we can name here: tasks and the user itself. (Documents
                # and cameras have their own isolation tests.)
                if not re.search(r"{(task_id|user_id)}", op.path):
                    continue
                resp = await client.request(op.method, path, json=body, headers=auth(stranger))
                assert resp.status == 404, (op.method, path, resp.status)
                assert (await resp.json())["error"]["code"] == "not_found"
            # The chat route answers an empty history for a stranger, never the owner's
            history = await (
                await client.get("/api/chats/private/messages", headers=auth(stranger))
            ).json()
            assert history["messages"] == []
            # The service scope acts for any user; the admin routes want an admin
            service = await client.get(
                f"/api/tasks/{accepted['task_id']}", headers=auth("backend", "service")
            )
            assert service.status == 200
            assert (await client.get("/api/admin/queues", headers=auth(owner))).status == 403


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
            assert len(by_name) == 8
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


async def _said(ctx: TaskContext) -> TaskResult:
    return TaskResult({"said": ctx.input["content"]}, reply="ok")


def _fill(path: str, **values: str) -> str:
    return re.sub(r"{(\w+)}", lambda m: values.get(m.group(1), str(uuid4())), path)


@pytest.mark.parametrize("path", ["/openapi.json"])
async def test_openapi_is_public_and_lists_every_route(kernel: Kernel, path: str) -> None:
    async with api(kernel) as client:
        spec = await (await client.get(path)).json()
    assert spec["openapi"].startswith("3.1")
    app = create_app(kernel)
    routes = {(op.method.lower(), op.path) for op in app[OPENAPI].operations}
    documented = {(m, p) for p, ops in spec["paths"].items() for m in ops}
    assert routes == documented
    assert "Task" in spec["components"]["schemas"]
