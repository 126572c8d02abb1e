"""The memory guard: a worker over its soft limit takes no new deliveries (they wait in the
queue, not in the process) and resumes once memory is back; a hard limit stops it cleanly."""

import asyncio

from taskfleet.core.metrics import MEMORY_PAUSED
from taskfleet.data import queues
from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.runtime.kernel import Kernel
from taskfleet.runtime.memguard import MemoryGuard, resident_bytes
from tests.conftest import wait_for
from tests.integration.conftest import CHAT, ConsumerFactory, chat_message, publish, wait_status

BIG = 300 << 20


async def test_over_the_soft_limit_deliveries_wait_in_the_queue_and_resume_after(
    kernel: Kernel, consume: ConsumerFactory
) -> None:
    release = asyncio.Event()

    async def handler(ctx: TaskContext) -> TaskResult:
        if ctx.input["content"] == "big":
            ballast = b"x" * BIG  # every page written: resident, not just reserved
            await release.wait()
            return TaskResult({"held": len(ballast)}, reply="done big")
        return TaskResult({}, reply="done small")

    consumer = await consume(handler, concurrency=4)
    stop = asyncio.Event()
    guard = MemoryGuard(
        soft_bytes=resident_bytes() + BIG // 2,
        hard_bytes=0,
        check_s=0.05,
        pause=consumer.pause,
        resume=consumer.resume,
        stop=stop,
        queue=CHAT.name,
    )
    kernel.supervisor.spawn("test-memory-guard", guard.run)
    try:
        big = chat_message(content="big")
        await publish(kernel, big)
        await wait_for(  # its consumer cancelled at the broker
            lambda: _true(consumer.paused and not consumer.consuming),
            what="the guard to pause the consumer",
        )
        assert MEMORY_PAUSED.labels(CHAT.name)._value.get() == 1
        small = [chat_message(user_id=f"mem-{i}", content=f"small {i}") for i in range(10)]
        for msg in small:
            await publish(kernel, msg)

        async def waiting_in_the_queue() -> bool:
            # Ready, not delivered. (A quorum queue keeps counting a cancelled consumer until
            # the messages it still holds unacknowledged are settled: the big one here.)
            chat = next(d for d in await queues.depths(kernel) if d.name == CHAT.name)
            return chat.messages == len(small)

        await wait_for(waiting_in_the_queue, what="the deliveries to wait in the queue")
        for msg in small:  # none was taken while paused
            assert (await kernel.store.get_task(msg.task_id)) is None
        release.set()
        for msg in [big, *small]:
            task = await wait_status(kernel, msg.task_id, "completed")
            assert task["attempts"] == 1
        assert not consumer.paused
        assert MEMORY_PAUSED.labels(CHAT.name)._value.get() == 0
        assert not stop.is_set()
    finally:
        release.set()
        await kernel.supervisor.stop("test-memory-guard")


async def test_over_the_hard_limit_the_worker_is_told_to_stop() -> None:
    stop = asyncio.Event()
    paused: list[str] = []

    async def pause(reason: str) -> None:
        paused.append(reason)

    async def resume() -> None:
        raise AssertionError("no resume over the hard limit")

    guard = MemoryGuard(
        soft_bytes=100 << 20,
        hard_bytes=200 << 20,
        check_s=1,
        pause=pause,
        resume=resume,
        stop=stop,
        queue="test",
    )
    await guard.check(150 << 20)
    assert (paused, stop.is_set()) == (["resident memory 150 MiB over 100 MiB"], False)
    await guard.check(250 << 20)
    assert stop.is_set()
    assert guard.stopped_for_memory


async def _true(value: bool) -> bool:
    return value
