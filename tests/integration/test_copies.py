"""Copies of a task's message (DESIGN.md §6, docs/design-notes.md): every copy we publish has
an identity, and a copy takes over a running task only when its holder has really lost it.
The outbox forgets exactly the rows it published. A message must fit its queue."""

import asyncio
from typing import Any
from uuid import UUID, uuid4

import pytest

from taskfleet.broker.publisher import Publisher, new_task
from taskfleet.core.constants import QUEUES, TaskType
from taskfleet.core.messages import TaskMessage
from taskfleet.core.settings import Settings
from taskfleet.path.consumer import Consumer
from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.runtime import registry
from taskfleet.runtime.kernel import Kernel, open_kernel
from taskfleet.runtime.registry import Registration
from taskfleet.store import quotas
from taskfleet.store import submissions as store_module
from taskfleet.store.records import ClaimPolicy, NewTask, Outgoing
from tests.conftest import wait_for
from tests.integration.agent_helpers import chat_handler, tool_handler
from tests.integration.api_client import api, new_user, submit
from tests.integration.conftest import (
    CHAT,
    ConsumerFactory,
    chat_message,
    drain_dlq,
    publish,
    wait_status,
)

TOOL = QUEUES[TaskType.TOOL]


async def live_holder(kernel: Kernel) -> Registration:
    """A row in the worker registry that reads as alive (it just beat)."""
    me = Registration(worker="chat", queue=CHAT.name, concurrency=1, heartbeat_s=60)
    await registry.beat(kernel.pool, me, [], {})
    return me


def policy(holder: Registration | None, max_attempts: int = 5) -> ClaimPolicy:
    return ClaimPolicy(
        max_attempts=max_attempts,
        user_limit=0,
        throttle_s=0.1,
        holder=holder.id if holder else None,
        deadline_s=60,
    )


class TestTakeover:
    async def test_only_the_holders_own_copy_redelivered_takes_over(self, kernel: Kernel) -> None:
        store, holder = kernel.store, await live_holder(kernel)
        msg = chat_message()
        first = await store.claim(
            msg, redelivered=False, queue=CHAT.name, policy=policy(holder), copy="copy-a"
        )
        assert first.verdict == "claimed"
        # Another copy (the relay's re-publish of a slow confirm), even redelivered (another
        # worker handed it back), is a duplicate while the holder lives
        other = await store.claim(
            msg, redelivered=True, queue=CHAT.name, policy=policy(holder), copy="copy-b"
        )
        assert other.verdict == "duplicate"
        # The holder's own copy redelivered means the holder lost it: a takeover
        again = await store.claim(
            msg, redelivered=True, queue=CHAT.name, policy=policy(holder), copy="copy-a"
        )
        assert (again.verdict, again.attempts) == ("claimed", 2)
        assert again.fence > first.fence

    async def test_any_copy_takes_over_once_the_holder_is_gone_from_the_registry(
        self, kernel: Kernel
    ) -> None:
        store, holder = kernel.store, await live_holder(kernel)
        msg = chat_message()
        await store.claim(
            msg, redelivered=False, queue=CHAT.name, policy=policy(holder), copy="copy-a"
        )
        await registry.mark_stopped(kernel.pool, holder)
        copy = await store.claim(
            msg, redelivered=False, queue=CHAT.name, policy=policy(None), copy="copy-b"
        )
        assert (copy.verdict, copy.attempts) == ("claimed", 2)

    async def test_a_stray_copy_never_fails_a_healthy_last_attempt(self, kernel: Kernel) -> None:
        store, holder = kernel.store, await live_holder(kernel)
        msg = chat_message()
        last = await store.claim(
            msg,
            redelivered=False,
            queue=CHAT.name,
            policy=policy(holder, max_attempts=1),
            copy="copy-a",
        )
        assert (last.verdict, last.attempts, last.max_attempts) == ("claimed", 1, 1)
        stray = await store.claim(
            msg,
            redelivered=True,
            queue=CHAT.name,
            policy=policy(holder, max_attempts=1),
            copy="copy-b",
        )
        assert stray.verdict == "duplicate"  # before: `exhausted`, the task failed worker_lost
        await store.complete(msg.task_id, last.fence, {"ok": True}, "fine")
        task = await store.get_task(msg.task_id)
        assert task is not None
        assert task["status"] == "completed"

    async def test_a_slow_first_publish_and_the_relays_copy_run_the_task_once(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        # Given an API whose first publish is confirmed only after the relay's grace, so the
        # relay publishes a second copy of the same message meanwhile
        runs: list[UUID] = []
        release = asyncio.Event()

        async def slow(ctx: TaskContext) -> TaskResult:
            runs.append(ctx.task_id)
            await release.wait()
            return TaskResult({"ok": True}, reply="once")

        await consume(slow, concurrency=4)
        grace = kernel.settings.outbox_grace_s

        async def late(queue: str, body: bytes, message_id: str, headers: dict[str, Any]) -> None:
            await asyncio.sleep(grace * 3)
            await kernel.broker.publish(queue, body, message_id=message_id, headers=headers)

        publisher = Publisher(kernel, late)
        new = new_task(
            kernel.settings,
            type=TaskType.CHAT,
            user_id=new_user(),
            chat_id="c1",
            input={"content": "hi"},
        )
        submission = await kernel.store.submit_chat(
            kernel.pool,
            new,
            content="hi",
            relay_grace_s=grace,
            limits=quotas.Limits(per_minute=1000, max_waiting=1000),
        )
        assert submission.outbox_id is not None
        sent = asyncio.ensure_future(publisher.send(Outgoing(new.message(), submission.outbox_id)))
        await wait_for(lambda: _true(bool(runs)), what="the first copy to run")
        await sent  # the late copy arrives while the first runs
        await asyncio.sleep(0)
        release.set()
        task = await wait_status(kernel, new.task_id, "completed")
        assert (runs, task["attempts"]) == ([new.task_id], 1)


async def _true(value: bool) -> bool:
    return value


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


FORGED_TOOL_CALL = TaskMessage(
    task_id=uuid4(),
    type=TaskType.TOOL,
    user_id="mallory",
    payload={"call_id": "1", "name": "send_email", "arguments": {"to": "x@example.com"}},
)


@pytest.mark.parametrize(
    ("message", "reason"),
    [(FORGED_TOOL_CALL, "no task"), (chat_message(), "its queue is chat_tasks")],
    ids=["a tool call for no task", "a chat message on tool_executions"],
)
async def test_a_message_that_does_not_fit_its_queue_is_dead_lettered_and_never_runs(
    kernel: Kernel, consume: ConsumerFactory, message: TaskMessage, reason: str
) -> None:
    ran: list[UUID] = []

    async def tool(ctx: TaskContext) -> TaskResult:
        ran.append(ctx.task_id)
        return TaskResult({})

    await drain_dlq(kernel, TOOL.name)
    await consume(tool, spec=TOOL)
    await kernel.broker.publish(
        kernel.settings.queue(TOOL.name), message.dumps(), message_id=str(message.task_id)
    )
    [letter] = await wait_for(lambda: _letters(kernel, TOOL.name), what="the dead letter")
    assert reason in str(letter.headers["x-taskfleet-reason"])
    assert ran == []
    assert await kernel.store.get_task(message.task_id) is None


async def _letters(kernel: Kernel, queue: str) -> list[Any] | None:
    return (await drain_dlq(kernel, queue)) or None


class TestTheTasksOwnErrors:
    async def test_an_output_the_database_cannot_store_fails_the_task_with_that_error(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        async def nul(ctx: TaskContext) -> TaskResult:
            return TaskResult({"text": "a\x00b"}, reply="fine")

        await consume(nul)
        msg = chat_message()
        await publish(kernel, msg)
        task = await wait_status(kernel, msg.task_id, "failed")
        assert (task["error"]["code"], task["attempts"]) == ("unstorable_output", 1)
        assert task["error"]["retryable"] is False


async def test_workers_of_the_previous_version_still_claim_and_wait(kernel: Kernel) -> None:
    """A rolling upgrade: the statements of the previous version's workers still work."""
    msg = chat_message()
    row = await kernel.pool.fetchrow(
        "SELECT * FROM tf_claim($1, 'chat_message', $2, $3, $4, 1, false, 'chat_tasks', 3, 0, 1)",
        msg.task_id,
        msg.user_id,
        msg.chat_id,
        msg.payload,
    )
    assert (row["verdict"], row["attempts"]) == ("claimed", 1)
    child = {"id": str(uuid4()), "type": "tool_execution", "input": {}, "max_attempts": 1}
    seq = await kernel.pool.fetchval(
        "SELECT tf_wait($1, $2, '{}', $3, 60)", msg.task_id, row["fence"], [child]
    )
    assert seq == row["event_seq"] + 1
