"""The one message path against the real RabbitMQ and PostgreSQL (DESIGN.md §5, §6)."""

import asyncio
import time
from uuid import uuid4

import orjson
from aio_pika.abc import AbstractIncomingMessage

from taskfleet.core.constants import REASON_HEADER
from taskfleet.core.errors import PermanentError, RetryableError
from taskfleet.core.metrics import TASKS
from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.runtime.kernel import Kernel
from tests.conftest import wait_for
from tests.integration.conftest import (
    CHAT,
    ConsumerFactory,
    chat_message,
    drain_dlq,
    publish,
    wait_status,
)


def outcome_count(outcome: str) -> float:
    return TASKS.labels(CHAT.name, outcome)._value.get()  # type: ignore[no-any-return]


class TestRetries:
    async def test_retryable_twice_then_success_completes_on_attempt_3_with_growing_delays(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        # Given a handler that fails retryably on its first two attempts
        calls: list[tuple[int, float]] = []

        msg = chat_message()

        async def flaky(ctx: TaskContext) -> TaskResult:
            if ctx.task_id != msg.task_id:  # a message an earlier test left in the queue
                return TaskResult({}, reply="stray")
            calls.append((ctx.attempt, time.monotonic()))
            if ctx.attempt < 3:
                raise RetryableError("upstream 503", code="upstream")
            return TaskResult({"ok": True}, reply="done")

        await consume(flaky, retry_base_s=0.6)
        # When the task is published
        await publish(kernel, msg)
        # Then it completes on the third attempt, after two retries of growing delay
        task = await wait_status(kernel, msg.task_id, "completed")
        assert task["attempts"] == 3
        assert task["output"] == {"ok": True}
        assert [a for a, _ in calls] == [1, 2, 3]
        first_gap, second_gap = calls[1][1] - calls[0][1], calls[2][1] - calls[1][1]
        assert first_gap >= 0.45  # base 0.6 s, jitter shortens by at most a quarter
        assert second_gap > first_gap

    async def test_always_failing_task_fails_after_max_attempts_and_is_dead_lettered(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        attempts: list[int] = []

        async def broken(ctx: TaskContext) -> TaskResult:
            attempts.append(ctx.attempt)
            raise RetryableError("still down")

        await consume(broken, max_attempts=3)
        msg = chat_message()
        await publish(kernel, msg)
        task = await wait_status(kernel, msg.task_id, "failed")
        assert attempts == [1, 2, 3]
        assert task["attempts"] == 3
        assert task["error"] == {"code": "retryable", "message": "still down", "retryable": True}

        async def dead_letter() -> list[AbstractIncomingMessage]:
            return [m for m in await drain_dlq(kernel) if m.message_id == str(msg.task_id)]

        [dead] = await wait_for(dead_letter, what="the dead letter")
        assert str(dead.headers[REASON_HEADER]).startswith("max_attempts")
        assert orjson.loads(dead.body)["task_id"] == str(msg.task_id)

    async def test_permanent_error_fails_at_once_without_retry(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        async def bad_input(ctx: TaskContext) -> TaskResult:
            raise PermanentError("no such tool", code="unknown_tool")

        await consume(bad_input)
        msg = chat_message()
        await publish(kernel, msg)
        task = await wait_status(kernel, msg.task_id, "failed")
        assert task["attempts"] == 1
        assert task["error"]["code"] == "unknown_tool"
        assert task["error"]["retryable"] is False


class TestBadMessages:
    async def test_malformed_messages_are_dead_lettered_with_reason_and_worker_keeps_serving(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        async def echo(ctx: TaskContext) -> TaskResult:
            return TaskResult({"echo": ctx.input["content"]})

        await consume(echo)
        drained_before = await drain_dlq(kernel)
        assert isinstance(drained_before, list)
        # Given a body that is not JSON and one that does not fit the schema
        await publish(kernel, b"this is not json {", message_id="not-json")
        await publish(kernel, orjson.dumps({"v": 1, "task_id": "nope"}), message_id="bad-schema")
        # Then both land in the dead-letter queue with the reason
        reasons: dict[str, str] = {}

        async def both_dead() -> bool:
            for m in await drain_dlq(kernel):
                reasons[str(m.message_id)] = str((m.headers or {}).get(REASON_HEADER))
            return {"not-json", "bad-schema"} <= reasons.keys()

        await wait_for(both_dead, what="both malformed messages in the DLQ")
        assert reasons["not-json"].startswith("body is not JSON")
        assert "task_id" in reasons["bad-schema"]
        # And a good message after them still completes
        msg = chat_message(content="still here")
        await publish(kernel, msg)
        task = await wait_status(kernel, msg.task_id, "completed")
        assert task["output"] == {"echo": "still here"}

    async def test_message_naming_another_users_task_is_dead_lettered_not_run(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        ran: list[str] = []

        async def record(ctx: TaskContext) -> TaskResult:
            ran.append(ctx.user_id)
            return TaskResult({})

        await consume(record)
        msg = chat_message(user_id="alice")
        await publish(kernel, msg)
        await wait_status(kernel, msg.task_id, "completed")
        # A message that claims alice's task for mallory
        forged = chat_message(user_id="mallory", task_id=msg.task_id, attempt=2)
        await publish(kernel, forged)

        async def dead() -> list[AbstractIncomingMessage]:
            return [m for m in await drain_dlq(kernel) if m.message_id == str(msg.task_id)]

        [letter] = await wait_for(dead, what="the forged message in the DLQ")
        assert "another user" in str(letter.headers[REASON_HEADER])
        assert ran == ["alice"]
        task = await wait_status(kernel, msg.task_id, "completed")
        assert task["user_id"] == "alice"


class TestDuplicates:
    async def test_same_message_twice_completes_once_and_counts_a_duplicate(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        runs: list[int] = []

        async def once(ctx: TaskContext) -> TaskResult:
            runs.append(ctx.attempt)
            await asyncio.sleep(0.2)
            return TaskResult({"n": len(runs)}, reply="hi")

        await consume(once, concurrency=2)
        duplicates_before = outcome_count("duplicate")
        msg = chat_message()
        await publish(kernel, msg)
        await publish(kernel, msg)
        task = await wait_status(kernel, msg.task_id, "completed")

        async def counted() -> bool:
            return outcome_count("duplicate") == duplicates_before + 1

        await wait_for(counted, what="the duplicate to be counted")
        assert runs == [1]
        assert task["attempts"] == 1
        messages = await kernel.store.chat_messages(kernel.pool, "chat-1", "alice")
        assert [m["content"] for m in messages if m["task_id"] == msg.task_id] == ["hello", "hi"]


class TestLimits:
    async def test_per_user_concurrency_limit_puts_tasks_back_without_using_attempts(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        running = 0
        peak = 0

        async def slow(ctx: TaskContext) -> TaskResult:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.3)
            running -= 1
            return TaskResult({})

        await consume(slow, concurrency=8, user_concurrency=2)
        user = f"busy-{uuid4().hex[:6]}"
        msgs = [chat_message(user_id=user) for _ in range(6)]
        for m in msgs:
            await publish(kernel, m)
        tasks = [await wait_status(kernel, m.task_id, "completed") for m in msgs]
        assert peak == 2
        assert all(t["attempts"] == 1 for t in tasks)

    async def test_handler_past_its_deadline_is_retried_then_failed(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        async def hang(ctx: TaskContext) -> TaskResult:
            await asyncio.sleep(60)
            return TaskResult({})

        await consume(hang, task_deadline_s=0.3, max_attempts=2)
        msg = chat_message()
        await publish(kernel, msg)
        task = await wait_status(kernel, msg.task_id, "failed")
        assert task["attempts"] == 2
        assert task["error"]["code"] == "deadline_exceeded"


class TestContext:
    async def test_progress_checkpoint_and_a_cancel_flag_seen_in_the_database(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        checkpoints: list[object] = []
        started = asyncio.Event()

        async def long_job(ctx: TaskContext) -> TaskResult:
            checkpoints.append(ctx.last_checkpoint)
            await ctx.progress(0.25, "step-1", "first quarter")
            await ctx.checkpoint({"done": 1})
            await ctx.partial({"pages": [1]})
            started.set()
            for i in range(100):
                await asyncio.sleep(0.3)
                await ctx.progress(0.25 + i / 400, "step-2")
            return TaskResult({})

        await consume(long_job)
        msg = chat_message()
        await publish(kernel, msg)
        await asyncio.wait_for(started.wait(), 10)
        task = await wait_status(kernel, msg.task_id, "processing")
        assert task["stage"] == "step-1"
        # A chat task's checkpoint is sealed at rest, whole (taskfleet.security.fields)
        assert task["checkpoint"]["$sealed"] == 1
        assert kernel.keyring.open(task["checkpoint"], row=msg.task_id, field="checkpoint") == {
            "done": 1
        }
        assert task["progress"] >= 0.25
        # When a cancel is requested in the database, the next progress report stops it
        await kernel.pool.execute(
            "UPDATE tasks SET cancel_requested = true WHERE id = $1", msg.task_id
        )
        task = await wait_status(kernel, msg.task_id, "cancelled", timeout_s=5)
        assert task["partial_output"] == {"pages": [1]}
        assert checkpoints == [None]

    async def test_cancel_through_the_control_exchange_stops_a_running_handler(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        import aio_pika

        from taskfleet.core.constants import CONTROL_EXCHANGE

        started = asyncio.Event()

        async def sleeper(ctx: TaskContext) -> TaskResult:
            await ctx.partial({"so_far": "half"})
            started.set()
            await asyncio.sleep(60)
            return TaskResult({})

        await consume(sleeper)
        msg = chat_message()
        await publish(kernel, msg)
        await asyncio.wait_for(started.wait(), 10)
        assert kernel.broker.connection is not None
        channel = await kernel.broker.connection.channel()
        exchange = await channel.get_exchange(kernel.settings.queue(CONTROL_EXCHANGE))
        await exchange.publish(
            aio_pika.Message(orjson.dumps({"type": "cancel", "task_id": str(msg.task_id)})),
            routing_key="",
        )
        await channel.close()
        task = await wait_status(kernel, msg.task_id, "cancelled", timeout_s=2)
        assert task["partial_output"] == {"so_far": "half"}
