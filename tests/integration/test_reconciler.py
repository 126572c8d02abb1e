"""The reconciler (taskfleet/runtime/reconciler.py): whatever was lost, every accepted task
finishes.

Each test makes the loss directly in the database (a message that never went out, a resume
that was dropped, a holder that vanished, a handler stuck past its deadline), runs one pass
and checks the repair, then lets a real consumer finish the task where there is one."""

from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from taskfleet.core.constants import TaskType
from taskfleet.core.metrics import RECONCILED
from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.runtime import registry
from taskfleet.runtime.kernel import Kernel
from taskfleet.runtime.reconciler import RECONCILE_LOCK, Reconciler
from taskfleet.runtime.registry import Registration
from taskfleet.store.records import ClaimPolicy, NewTask
from tests.integration.conftest import CHAT, ConsumerFactory, chat_message, wait_status

AFTER_S = 30.0


@pytest.fixture
def reconciler(kernel: Kernel) -> Reconciler:
    # No warm-up: this process has seen the database all along.
    settings = kernel.settings.model_copy(
        update={"reconcile_after_s": AFTER_S, "task_grace_s": 10.0, "worker_heartbeat_s": 0.01}
    )
    found = Reconciler(kernel.pool, kernel.broker, settings)
    found._reachable_since = 0.0
    return found


async def queued_task(kernel: Kernel, *, age_s: float, with_outbox: bool = False) -> UUID:
    """A queued chat task last changed `age_s` ago; its message went nowhere."""
    new = NewTask(
        type=TaskType.CHAT,
        user_id=f"r-{uuid4().hex[:6]}",
        chat_id="c",
        input={"content": "lost"},
        max_attempts=3,
    )
    async with kernel.pool.acquire() as conn, conn.transaction():
        await kernel.store.insert_task(conn, new, relay_grace_s=3600)
        if not with_outbox:
            await conn.execute("DELETE FROM outbox WHERE task_id = $1", new.task_id)
        await age(conn, new.task_id, age_s)
    return new.task_id


async def age(conn: Any, task_id: UUID, seconds: float) -> None:
    await conn.execute(
        "UPDATE tasks SET updated_at = now() - $2::interval WHERE id = $1",
        task_id,
        timedelta(seconds=seconds),
    )


def count(reason: str) -> float:
    return RECONCILED.labels(reason)._value.get()  # type: ignore[no-any-return]


async def done(ctx: TaskContext) -> TaskResult:
    return TaskResult({"ok": True}, reply="recovered")


class TestLostMessages:
    async def test_a_queued_task_whose_message_was_lost_is_published_again_and_completes(
        self, kernel: Kernel, reconciler: Reconciler, consume: ConsumerFactory
    ) -> None:
        lost = await queued_task(kernel, age_s=AFTER_S + 5)
        fresh = await queued_task(kernel, age_s=1)  # too young: its message may be on its way
        outboxed = await queued_task(kernel, age_s=AFTER_S + 5, with_outbox=True)
        before = count("lost_message")
        repairs = await reconciler.reconcile_once()
        assert repairs is not None
        assert repairs.get("lost_message", 0) >= 1
        rows = await kernel.pool.fetch(
            "SELECT task_id, attempt, kind FROM outbox WHERE task_id = ANY($1::uuid[])",
            [lost, fresh, outboxed],
        )
        assert {(r["task_id"], r["attempt"], r["kind"]) for r in rows} == {
            (lost, 1, "task"), (outboxed, 1, "task")  # the outboxed one: its own row, unchanged
        }  # fmt: skip
        assert count("lost_message") > before
        # A second pass right after does not publish it again: it changed just now
        await reconciler.reconcile_once()
        assert (
            await kernel.pool.fetchval("SELECT count(*) FROM outbox WHERE task_id = $1", lost) <= 1
        )
        await consume(done)
        assert (await wait_status(kernel, lost, "completed"))["attempts"] == 1

    async def test_a_queue_with_messages_waiting_gives_its_tasks_longer(
        self, kernel: Kernel, reconciler: Reconciler
    ) -> None:
        # Given a queued task whose message may still be among those waiting in chat_tasks
        await kernel.broker.publish(kernel.settings.queue(CHAT.name), chat_message().dumps())
        waiting = await queued_task(kernel, age_s=AFTER_S + 5)
        await reconciler.reconcile_once()
        assert not await kernel.pool.fetchval(
            "SELECT count(*) FROM outbox WHERE task_id = $1", waiting
        )
        # ... but not for ever
        async with kernel.pool.acquire() as conn:
            await age(conn, waiting, AFTER_S * 11)
        await reconciler.reconcile_once()
        assert (
            await kernel.pool.fetchval("SELECT count(*) FROM outbox WHERE task_id = $1", waiting)
            == 1
        )


class TestWaitingParents:
    async def test_a_parent_whose_children_all_ended_is_resumed(
        self, kernel: Kernel, reconciler: Reconciler
    ) -> None:
        # Given a waiting parent whose only child completed, and whose resume was lost
        parent = chat_message(user_id=f"w-{uuid4().hex[:6]}")
        policy = ClaimPolicy(max_attempts=3, user_limit=0, throttle_s=0.1)
        claim = await kernel.store.claim(parent, redelivered=False, queue=CHAT.name, policy=policy)
        child_id = uuid4()
        child = {"id": str(child_id), "type": "tool_execution", "input": {}, "max_attempts": 1}
        await kernel.store.wait(parent.task_id, claim.fence, {"s": 1}, [child], 3600)
        async with kernel.pool.acquire() as conn, conn.transaction():
            await conn.execute("UPDATE tasks SET status = 'completed' WHERE id = $1", child_id)
            await conn.execute(
                "DELETE FROM outbox WHERE task_id = ANY($1::uuid[])", [parent.task_id, child_id]
            )
            await conn.execute(
                "UPDATE tasks SET status = 'waiting' WHERE id = $1", parent.task_id
            )  # the trigger's resume, lost
            await age(conn, parent.task_id, AFTER_S + 5)
        # When the reconciler passes
        repairs = await reconciler.reconcile_once()
        # Then the parent is queued with its next attempt's message
        assert repairs is not None
        assert repairs.get("children_done", 0) >= 1
        task = await kernel.store.get_task(parent.task_id)
        assert task is not None
        assert task["status"] == "queued"
        assert (
            await kernel.pool.fetchval(
                "SELECT attempt FROM outbox WHERE task_id = $1", parent.task_id
            )
            == task["attempts"] + 1
        )


class TestRunningTasks:
    async def claimed(
        self,
        kernel: Kernel,
        holder: Registration | None,
        max_attempts: int = 3,
        deadline_s: float = 300,
    ) -> tuple[UUID, int]:
        msg = chat_message(user_id=f"h-{uuid4().hex[:6]}")
        policy = ClaimPolicy(
            max_attempts=max_attempts,
            user_limit=0,
            throttle_s=0.1,
            holder=holder.id if holder else None,
            deadline_s=deadline_s,
        )
        claim = await kernel.store.claim(
            msg, redelivered=False, queue=CHAT.name, policy=policy, copy="c1"
        )
        assert claim.verdict == "claimed"
        return msg.task_id, claim.fence

    async def test_a_task_whose_holder_is_gone_is_handed_over_and_completes(
        self, kernel: Kernel, reconciler: Reconciler, consume: ConsumerFactory
    ) -> None:
        gone = Registration(worker="chat", queue=CHAT.name, concurrency=1, heartbeat_s=60)
        await registry.beat(kernel.pool, gone, [], {})
        task_id, fence = await self.claimed(kernel, gone)
        live = Registration(worker="chat", queue=CHAT.name, concurrency=1, heartbeat_s=60)
        await registry.beat(kernel.pool, live, [], {})
        healthy, _ = await self.claimed(kernel, live)
        await registry.mark_stopped(kernel.pool, gone)  # died without the broker noticing
        repairs = await reconciler.reconcile_once()
        assert repairs is not None
        assert repairs.get("holder_gone", 0) >= 1
        task = await kernel.store.get_task(task_id)
        assert task is not None
        assert (task["status"], task["error"]["code"]) == ("queued", "worker_lost")
        # The lost holder can no longer write: the fence moved on
        assert await kernel.pool.fetchval("SELECT fence FROM tasks WHERE id = $1", task_id) > fence
        still = await kernel.store.get_task(healthy)
        assert still is not None
        assert still["status"] == "processing"  # its holder lives: left alone
        await consume(done)
        finished = await wait_status(kernel, task_id, "completed")
        assert finished["attempts"] == 2

    async def test_a_task_past_its_deadline_and_out_of_attempts_fails_with_a_clear_code(
        self, kernel: Kernel, reconciler: Reconciler
    ) -> None:
        live = Registration(worker="chat", queue=CHAT.name, concurrency=1, heartbeat_s=60)
        await registry.beat(kernel.pool, live, [], {})
        task_id, _ = await self.claimed(kernel, live, max_attempts=1, deadline_s=0.0)
        await kernel.pool.execute(
            "UPDATE tasks SET deadline_at = now() - interval '11 s' WHERE id = $1", task_id
        )
        repairs = await reconciler.reconcile_once()
        assert repairs is not None
        assert repairs.get("past_deadline", 0) >= 1
        task = await kernel.store.get_task(task_id)
        assert task is not None
        assert task["status"] == "failed"
        assert task["error"]["code"] == "deadline_exceeded"
        letter = await kernel.pool.fetchrow(
            "SELECT kind, headers FROM outbox WHERE task_id = $1", task_id
        )
        assert letter["kind"] == "dead_letter"
        assert letter["headers"]["x-taskfleet-error"] == "deadline_exceeded"

    async def test_a_task_its_live_holder_no_longer_lists_is_handed_over(
        self, kernel: Kernel, reconciler: Reconciler
    ) -> None:
        holder = Registration(worker="chat", queue=CHAT.name, concurrency=2, heartbeat_s=5)
        await registry.beat(kernel.pool, holder, [], {})
        dropped, _ = await self.claimed(kernel, holder)  # the holder lost track of it
        held, _ = await self.claimed(kernel, holder)
        fresh, _ = await self.claimed(kernel, holder)  # too recent for the next beat to tell
        async with kernel.pool.acquire() as conn:
            for task_id in (dropped, held):
                await age(conn, task_id, 10)  # more than an interval before the last beat
        await registry.beat(kernel.pool, holder, [held], {})  # alive, and holds `held` only
        repairs = await reconciler.reconcile_once()
        assert repairs is not None
        assert repairs.get("not_held", 0) >= 1
        statuses = {}
        for task_id in (dropped, held, fresh):
            task = await kernel.store.get_task(task_id)
            assert task is not None
            statuses[task_id] = task["status"]
        assert statuses == {dropped: "queued", held: "processing", fresh: "processing"}

    async def test_right_after_its_own_outage_it_does_not_trust_stale_heartbeats(
        self, kernel: Kernel, reconciler: Reconciler
    ) -> None:
        gone = Registration(worker="chat", queue=CHAT.name, concurrency=1, heartbeat_s=60)
        await registry.beat(kernel.pool, gone, [], {})
        task_id, _ = await self.claimed(kernel, gone)
        await registry.mark_stopped(kernel.pool, gone)
        reconciler._reachable_since = None  # as after a pass that could not reach PostgreSQL
        await reconciler.reconcile_once()
        task = await kernel.store.get_task(task_id)
        assert task is not None
        assert task["status"] == "processing"


async def test_one_pass_at_a_time_in_the_whole_fleet(
    kernel: Kernel, reconciler: Reconciler
) -> None:
    async with kernel.pool.acquire() as conn, conn.transaction():
        assert await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", RECONCILE_LOCK)
        assert await reconciler.reconcile_once() is None  # another process is in a pass
    assert await reconciler.reconcile_once() is not None
