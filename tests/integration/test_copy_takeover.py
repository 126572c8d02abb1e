"""Copies of a task's message (DESIGN.md §6, docs/design-notes.md): every copy we publish has
an identity, and a copy takes over a running task only when its holder has really lost it."""

import asyncio
from typing import Any
from uuid import UUID

from taskfleet.broker.publisher import Publisher, new_task
from taskfleet.core.constants import TaskType
from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.runtime import registry
from taskfleet.runtime.kernel import Kernel
from taskfleet.runtime.registry import Registration
from taskfleet.store import quotas
from taskfleet.store.records import ClaimPolicy, Outgoing
from tests.conftest import wait_for
from tests.integration.api_client import new_user
from tests.integration.conftest import (
    CHAT,
    ConsumerFactory,
    chat_message,
    wait_status,
)


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
