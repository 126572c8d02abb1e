"""Priorities through the API (docs/priorities.md): a task's level from its `priority` or its
token's `tier`, one queue per level, a worker that takes the higher levels first without
starving the lower, and retries and dead letters that keep their task's level."""

import argparse
import asyncio
from functools import partial
from typing import Any
from uuid import UUID

import pytest

from taskfleet.client import Taskfleet
from taskfleet.core.constants import QUEUES, Priority, TaskType, level_queue
from taskfleet.core.errors import PermanentError, RetryableError
from taskfleet.core.settings import Settings
from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.path.levels import PASS_LIMIT
from taskfleet.path.waiting import Waiting
from taskfleet.runtime.kernel import Kernel
from taskfleet.runtime.reconciler import Reconciler
from taskfleet.security.auth import issue_token
from taskfleet.store.records import NewTask
from taskfleet_cli.submit import submit as cli_submit
from tests.camera_images import frame
from tests.conftest import JWT_SECRET, wait_for
from tests.integration.api_client import api, auth, new_user, token
from tests.integration.conftest import CHAT, ConsumerFactory, drain_dlq, wait_status

Client = Any


async def chat(client: Client, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    resp = await client.post(
        "/api/chat/stream", json={"chat_id": "p", "content": "hi", **fields}, headers=headers
    )
    body: dict[str, Any] = await resp.json()
    assert resp.status == 202, body
    return body


async def ready(kernel: Kernel, level: Priority) -> int:
    name = kernel.settings.queue(level_queue(CHAT.name, level))
    return int((await kernel.broker.inspect([name]))[name][0])


async def ready_to_be(kernel: Kernel, counts: dict[Priority, int]) -> None:
    """At least these many ready at each level (none where 0 is asked): the session's
    reconciler may republish another test's leftover task meanwhile."""

    async def probe() -> bool:
        found = {level: await ready(kernel, level) for level in counts}
        return all(found[level] >= n if n else found[level] == 0 for level, n in counts.items())

    await wait_for(probe, timeout_s=10, what=f"ready messages {counts}")


def recorder(ran: list[UUID]) -> Any:
    async def record(ctx: TaskContext) -> TaskResult:
        ran.append(ctx.task_id)
        return TaskResult({"reply": "ok"}, reply="ok")

    return record


class TestOrder:
    async def test_a_high_task_overtakes_a_backlog_of_normal_ones(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        user, ran = new_user(), list[UUID]()
        async with api(kernel) as client:
            backlog = [await chat(client, auth(user)) for _ in range(30)]
            await ready_to_be(kernel, {Priority.NORMAL: 30})
            high = await chat(client, auth(user), priority="high")
            await ready_to_be(kernel, {Priority.HIGH: 1})
        await consume(recorder(ran), concurrency=1)
        await wait_status(kernel, backlog[-1]["task_id"], "completed")
        mine = {UUID(t["task_id"]) for t in [*backlog, high]}
        order = [t for t in ran if t in mine]
        # Without levels it would run last, behind the 30; a slot or two may have gone to
        # normal tasks that reached the worker first.
        assert order.index(UUID(high["task_id"])) <= 2
        assert len(order) == 31

    async def test_a_low_task_still_runs_while_high_ones_keep_arriving(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        user, ran = new_user(), list[UUID]()
        async with api(kernel) as client:
            low = await chat(client, auth(user), priority="low")
            highs = [await chat(client, auth(user), priority="high") for _ in range(20)]
            await ready_to_be(kernel, {Priority.HIGH: 20, Priority.LOW: 1})
            await consume(recorder(ran), concurrency=1)
            # And more high tasks keep arriving while the worker drains them.
            highs += [await chat(client, auth(user), priority="high") for _ in range(10)]
            await wait_status(kernel, low["task_id"], "completed")
            high_left = await ready(kernel, Priority.HIGH)
        for accepted in highs:
            await wait_status(kernel, accepted["task_id"], "completed")
        mine = {UUID(t["task_id"]) for t in [*highs, low]}
        order = [t for t in ran if t in mine]
        # Strict priority would run it last; it is passed over at most PASS_LIMIT times.
        assert order.index(UUID(low["task_id"])) <= PASS_LIMIT + 1
        assert high_left > 0  # it ran while high tasks still waited


class TestDefaultAndOverride:
    async def test_the_tier_claim_gives_the_default_and_priority_overrides_it(
        self, kernel: Kernel, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PRIORITY_TIERS", "paid:high, free:low")
        user = new_user()

        def tiered(tier: str | None) -> dict[str, str]:
            return {"Authorization": f"Bearer {issue_token(JWT_SECRET, user, tier=tier)}"}

        async with api(kernel) as client:
            paid = await chat(client, tiered("paid"))
            free = await chat(client, tiered("free"))
            other = await chat(client, tiered("trial"))
            none = await chat(client, auth(user))
            chosen = await chat(client, tiered("paid"), priority="low")
            levels = []
            for accepted in (paid, free, other, none, chosen):
                resp = await client.get(f"/api/tasks/{accepted['task_id']}", headers=auth(user))
                levels.append((await resp.json())["priority"])
        assert levels == ["high", "low", "normal", "normal", "low"]
        # Each message went to its level's queue.
        await ready_to_be(kernel, {Priority.HIGH: 1, Priority.NORMAL: 2, Priority.LOW: 2})

    async def test_a_minted_token_carries_the_tier_it_was_asked_for(
        self, kernel: Kernel, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PRIORITY_TIERS", "paid:high")
        user = new_user()
        async with api(kernel) as client:
            resp = await client.post(
                "/api/tokens",
                json={"user_id": user, "tier": "paid"},
                headers=auth("backend", "service"),
            )
            minted = (await resp.json())["token"]
            accepted = await chat(client, {"Authorization": f"Bearer {minted}"})
            resp = await client.get(f"/api/tasks/{accepted['task_id']}", headers=auth(user))
            assert (await resp.json())["priority"] == "high"

    async def test_a_bad_priority_is_refused_with_its_reason(self, kernel: Kernel) -> None:
        user = new_user()
        async with api(kernel) as client:
            resp = await client.post(
                "/api/chat/stream",
                json={"chat_id": "p", "content": "hi", "priority": "urgent"},
                headers=auth(user),
            )
            body = await resp.json()
            assert resp.status == 422, body
            assert "priority" in str(body["error"])
            frame = await client.post(
                "/api/cameras/cam/frames?priority=urgent", data=b"x", headers=auth(user)
            )
            assert frame.status == 422, await frame.text()
            assert "priority" in str((await frame.json())["error"])
        assert await ready(kernel, Priority.NORMAL) == 0


class TestListingAndCli:
    async def test_listings_filter_by_priority_and_the_cli_submits_one(
        self, kernel: Kernel
    ) -> None:
        user = new_user()
        async with api(kernel) as client:
            high = await chat(client, auth(user), priority="high")
            await chat(client, auth(user))
            args = argparse.Namespace(
                url=str(client.make_url("")), token=token(user), text="from the cli",
                chat="cli", wait=False, timeout=30.0, priority="low",
            )  # fmt: skip
            assert await cli_submit(Settings(), args) == 0
            by_level = {}
            for level in ("high", "low"):
                resp = await client.get(f"/api/tasks?priority={level}", headers=auth(user))
                by_level[level] = (await resp.json())["tasks"]
            bad = await client.get("/api/tasks?priority=urgent", headers=auth(user))
            assert bad.status == 422
        assert [t["id"] for t in by_level["high"]] == [high["task_id"]]
        assert [t["input"]["content"] for t in by_level["low"]] == ["from the cli"]


class TestEveryRoute:
    async def test_documents_frames_batches_and_the_client_take_a_priority(
        self, kernel: Kernel
    ) -> None:
        user = new_user()
        async with api(kernel) as client, Taskfleet(str(client.make_url("")), token(user)) as tf:
            chat_task = await tf.submit_chat("p", "hi", priority="high")
            doc = await tf.upload_document(b"# notes", filename="a.md", priority="low")
            shot = await tf.submit_frame("cam", frame(), priority="high")
            batch = await tf.submit_batch([("p", "one"), ("p", "two")], priority="low")
            ids = [chat_task.task_id, doc.task_id, shot.task_id, *batch.task_ids]
            levels = [(await tf.get(i)).priority for i in ids]
        assert levels == ["high", "low", "high", "low", "low"]
        doc_queue, frame_queue = (QUEUES[t] for t in (TaskType.DOCUMENT, TaskType.CAMERA))
        for spec, level in ((doc_queue, Priority.LOW), (frame_queue, Priority.HIGH)):
            name = kernel.settings.queue(level_queue(spec.name, level))
            await wait_for(partial(_ready_in, kernel, name), what=f"a message in {name}")
        await ready_to_be(kernel, {Priority.HIGH: 1, Priority.LOW: 2})


async def message_ids(kernel: Kernel, name: str) -> list[str | None]:
    """The ids of the messages in a queue now, left there (taken unacked, then returned)."""
    assert kernel.broker.connection is not None
    channel = await kernel.broker.connection.channel()
    found: list[str | None] = []
    try:
        queue = await channel.get_queue(name, ensure=False)
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            found.append(message.message_id)
    finally:
        await channel.close()
    return found


async def drain(kernel: Kernel, name: str) -> None:
    assert kernel.broker.connection is not None
    channel = await kernel.broker.connection.channel()
    try:
        await (await channel.get_queue(name, ensure=False)).purge()
    finally:
        await channel.close()


async def _ready_in(kernel: Kernel, name: str) -> bool:
    return bool((await kernel.broker.inspect([name]))[name][0] == 1)


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
        await wait_for(partial(_ready_in, kernel, high_tools), what="the child in the high queue")

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
        assert (await reconciler.reconcile_once() or {}).get("lost_message") is None
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
