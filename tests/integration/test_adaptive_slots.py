"""A worker's slots adapt to its work (taskfleet.path.slots): deliveries that wait on I/O with
every slot busy and the event loop idle make it take more at once, its prefetch following, up
to its most; every task still runs once."""

import asyncio
from uuid import uuid4

from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.runtime.kernel import Kernel
from tests.conftest import wait_for
from tests.integration.conftest import ConsumerFactory, chat_message, publish, wait_status


async def test_io_bound_work_grows_the_slots_and_the_prefetch_and_runs_each_task_once(
    kernel: Kernel, consume: ConsumerFactory
) -> None:
    run = uuid4().hex[:8]
    runs: dict[str, int] = {}
    running = peak = 0

    async def waits_on_a_model(ctx: TaskContext) -> TaskResult:
        nonlocal running, peak
        if not (ctx.chat_id or "").startswith(run):  # a message an earlier test left in the queue
            return TaskResult({})
        runs[str(ctx.task_id)] = runs.get(str(ctx.task_id), 0) + 1
        running += 1
        peak = max(peak, running)
        try:
            await asyncio.sleep(0.5)
        finally:
            running -= 1
        return TaskResult({})

    consumer = await consume(waits_on_a_model, concurrency=2, max_concurrency=16)
    # Many users: the per-user limit (4 at once) is not what this test is about.
    msgs = [chat_message(user_id=f"{run}-{i % 40}", chat_id=f"{run}-{i}") for i in range(300)]
    for msg in msgs:
        await publish(kernel, msg)

    async def grown() -> bool:
        return peak >= 6

    # Two slots and a prefetch of four could never run six at once: the slots grew, and the
    # consumer subscribed again with the larger prefetch.
    await wait_for(grown, timeout_s=90, what="the slots to grow past the prefetch of two")
    assert consumer.slots >= 6
    for msg in msgs:
        await wait_status(kernel, msg.task_id, "completed", timeout_s=120)
    assert sorted(runs) == sorted(str(m.task_id) for m in msgs)
    assert set(runs.values()) == {1}
    assert consumer.slots <= 16
