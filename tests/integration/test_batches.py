"""Batches through the API (docs/scheduling.md#batches): submitted in one statement, read as
counts and progress, cancelled together, and one `batch.completed` event when the last
member ends, whatever ended it."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import aio_pika
import orjson
import pytest

from taskfleet.core.constants import EVENTS_EXCHANGE
from taskfleet.core.errors import PermanentError
from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.runtime.kernel import Kernel
from tests.conftest import wait_for
from tests.integration.api_client import api, auth, new_user
from tests.integration.conftest import ConsumerFactory, wait_status

Client = Any


@pytest.fixture
async def completions(kernel: Kernel) -> AsyncIterator[list[dict[str, Any]]]:
    """Every `batch.completed` event published on the events exchange while the test runs."""
    seen: list[dict[str, Any]] = []
    connection = await aio_pika.connect(kernel.settings.amqp_url)
    channel = await connection.channel()
    exchange = await channel.get_exchange(kernel.settings.queue(EVENTS_EXCHANGE))
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key="batch.completed")

    async def keep(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        seen.append(orjson.loads(message.body))

    await queue.consume(keep, no_ack=True)
    yield seen
    await connection.close()


async def post_batch(client: Client, user: str, contents: list[str], **more: Any) -> Any:
    tasks = [{"chat_id": "b", "content": c} for c in contents]
    resp = await client.post("/api/batches", json={"tasks": tasks, **more}, headers=auth(user))
    body = await resp.json()
    assert resp.status == 202, body
    return body


async def batch_of(client: Client, user: str, batch_id: str) -> Any:
    resp = await client.get(f"/api/batches/{batch_id}", headers=auth(user))
    body = await resp.json()
    assert resp.status == 200, body
    return body


async def mine(
    kernel: Kernel, completions: list[dict[str, Any]], batch: dict[str, Any]
) -> list[dict[str, Any]]:
    """The batch's completion events, all of them: once the relay sent every event row of its
    members, a marker sent after them through the same publisher arrives after them."""

    async def sent() -> bool:
        left = await kernel.pool.fetchval(
            "SELECT count(*) FROM outbox WHERE kind = 'event' AND task_id = ANY($1::uuid[])",
            batch["task_ids"],
        )
        return bool(left == 0)

    await wait_for(sent, what="the relay to send the batch's events")
    marker = f"marker-{uuid4()}"
    await kernel.broker.publish_event("batch.completed", orjson.dumps({"batch_id": marker}))

    async def arrived() -> bool:
        return any(e["batch_id"] == marker for e in completions)

    await wait_for(arrived, what="the marker event")
    return [e for e in completions if e["batch_id"] == batch["batch_id"]]


class TestBatch:
    async def test_counts_progress_and_one_completion_event(
        self, kernel: Kernel, consume: ConsumerFactory, completions: list[dict[str, Any]]
    ) -> None:
        user, gate = new_user(), asyncio.Event()

        async def handle(ctx: TaskContext) -> TaskResult:
            await gate.wait()
            if ctx.payload.content == "bad":
                raise PermanentError("no")
            return TaskResult({"reply": "ok"}, reply="ok")

        async with api(kernel) as client:
            accepted = await post_batch(client, user, ["one", "bad", "three"])
            assert (len(accepted["task_ids"]), accepted["status"]) == (3, "queued")
            before = await batch_of(client, user, accepted["batch_id"])
            assert (before["status"], before["progress"], before["counts"]) == (
                "active", 0, {"queued": 3},
            )  # fmt: skip
            await consume(handle)
            gate.set()
            for task_id in accepted["task_ids"]:
                await wait_status(kernel, task_id, "completed", "failed")
            after = await batch_of(client, user, accepted["batch_id"])
            resp = await client.get(f"/api/tasks/{accepted['task_ids'][0]}", headers=auth(user))
            member = await resp.json()
        assert (after["status"], after["progress"], after["total"]) == ("completed", 1, 3)
        assert after["counts"] == {"completed": 2, "failed": 1}
        assert member["batch_id"] == accepted["batch_id"]
        events = await mine(kernel, completions, accepted)
        assert len(events) == 1
        assert (events[0]["user_id"], events[0]["total"], events[0]["counts"]) == (
            user, 3, {"completed": 2, "failed": 1},
        )  # fmt: skip
        history = await kernel.store.chat_messages(kernel.pool, "b", user)
        assert [m["content"] for m in history if m["role"] == "user"] == ["one", "bad", "three"]
        assert [m["id"] for m in history if m["role"] == "assistant"] == [
            UUID(i) for i in accepted["message_ids"]
        ]

    async def test_cancel_ends_every_member_and_completes_the_batch(
        self, kernel: Kernel, completions: list[dict[str, Any]]
    ) -> None:
        user = new_user()
        async with api(kernel) as client:
            accepted = await post_batch(client, user, ["a", "b"], delay_s=60)
            assert accepted["status"] == "scheduled"
            resp = await client.post(
                f"/api/batches/{accepted['batch_id']}/cancel", headers=auth(user)
            )
            cancelled = await resp.json()
        assert resp.status == 202, cancelled
        assert (cancelled["status"], cancelled["counts"]) == ("completed", {"cancelled": 2})
        events = await mine(kernel, completions, accepted)
        assert [e["counts"] for e in events] == [{"cancelled": 2}]
        rows = await kernel.pool.fetchval(
            "SELECT count(*) FROM outbox WHERE task_id = ANY($1::uuid[])", accepted["task_ids"]
        )
        assert rows == 0

    async def test_a_member_run_again_reopens_the_batch_until_it_ends_again(
        self, kernel: Kernel, consume: ConsumerFactory, completions: list[dict[str, Any]]
    ) -> None:
        user = new_user()
        async with api(kernel) as client:
            accepted = await post_batch(client, user, ["again"], delay_s=60)
            await client.post(f"/api/batches/{accepted['batch_id']}/cancel", headers=auth(user))
            member = accepted["task_ids"][0]
            resp = await client.post(f"/api/tasks/{member}/retry", headers=auth(user))
            assert resp.status == 202
            reopened = await batch_of(client, user, accepted["batch_id"])
            assert (reopened["status"], reopened["counts"]) == ("active", {"queued": 1})
            await consume(lambda ctx: _ok())
            await wait_status(kernel, member, "completed")
            closed = await batch_of(client, user, accepted["batch_id"])
        assert (closed["status"], closed["counts"]) == ("completed", {"completed": 1})
        events = await mine(kernel, completions, accepted)
        assert [e["counts"] for e in events] == [{"cancelled": 1}, {"completed": 1}]


async def _ok() -> TaskResult:
    return TaskResult({"reply": "ok"}, reply="ok")


class TestRefusals:
    async def test_another_users_batch_is_absent_and_bad_bodies_are_refused(
        self, kernel: Kernel
    ) -> None:
        owner, other = new_user(), new_user()
        async with api(kernel) as client:
            accepted = await post_batch(client, owner, ["x"])
            for method in ("GET", "POST"):
                path = f"/api/batches/{accepted['batch_id']}"
                path += "/cancel" if method == "POST" else ""
                resp = await client.request(method, path, headers=auth(other))
                assert resp.status == 404
            service = await client.get(
                f"/api/batches/{accepted['batch_id']}", headers=auth("svc", "service")
            )
            assert service.status == 200
            for body, status in (
                ({"tasks": []}, 422),
                ({"tasks": [{"chat_id": "b", "content": "x"}] * 501}, 422),
                ({"tasks": [{"type": "tool_execution", "chat_id": "b", "content": "x"}]}, 422),
                ({"tasks": [{"chat_id": "b", "content": "x"}], "delay_s": -1}, 400),
                ({"tasks": [{"chat_id": "b", "content": "x"}], "user_id": owner}, 403),
            ):
                resp = await client.post("/api/batches", json=body, headers=auth(other))
                assert resp.status == status, await resp.text()
            # Nothing left queued for later tests' workers (their queue is purged, not the rows)
            await client.post(f"/api/batches/{accepted['batch_id']}/cancel", headers=auth(owner))

    async def test_a_batch_over_the_waiting_quota_stores_nothing(self, kernel: Kernel) -> None:
        user = new_user()
        settings = kernel.settings.model_copy(update={"max_queued_per_user": 3})
        tuned = Kernel(settings, kernel.pool, kernel.store, kernel.broker, kernel.supervisor)
        async with api(tuned) as client:
            fits = await post_batch(client, user, ["1", "2", "3"])
            resp = await client.post(
                "/api/batches",
                json={"tasks": [{"chat_id": "q", "content": "x"}]},
                headers=auth(user),
            )
            body = await resp.json()
            stored = await kernel.pool.fetch("SELECT id FROM tasks WHERE user_id = $1", user)
            await client.post(f"/api/batches/{fits['batch_id']}/cancel", headers=auth(user))
        assert (resp.status, body["error"]["code"]) == (429, "rate_limited")
        assert {str(r["id"]) for r in stored} == set(fits["task_ids"])
