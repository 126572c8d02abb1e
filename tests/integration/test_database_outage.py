"""Our own database's outage is not the tasks' failure: a worker that cannot reach PostgreSQL
takes no deliveries (they wait in the queue, where the broker's delivery limit does not count
them), an outcome waits for its commit, and everything completes once the database is back.

The database is cut off by a TCP proxy between this kernel and PostgreSQL (every link closed,
new ones refused), so the other tests of the session keep their database."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from taskfleet.core.metrics import CONSUMER_PAUSED
from taskfleet.core.settings import Settings
from taskfleet.path.consumer import Consumer
from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.runtime.kernel import Kernel, open_kernel
from tests.chaos.infra import SilentProxy, port_of, via_port
from tests.conftest import wait_for
from tests.integration.conftest import CHAT, chat_message, drain_dlq, publish, wait_status


@pytest.fixture
async def proxy(settings: Settings) -> AsyncIterator[SilentProxy]:
    found = SilentProxy(port_of(settings.database_url))
    await found.start()
    yield found
    await found.close()


@pytest.fixture
async def cut_kernel(settings: Settings, proxy: SilentProxy) -> AsyncIterator[Kernel]:
    """A kernel that reaches PostgreSQL through the proxy only."""
    dsn = via_port(settings.database_url, proxy.port)
    assert dsn != settings.database_url
    through = settings.model_copy(update={"database_url": dsn, "reconcile_interval_s": 0.0})
    async with open_kernel(through, name="cut") as kernel:
        yield kernel


async def start(kernel: Kernel, handler: Any, concurrency: int = 4) -> Consumer:
    consumer = Consumer(
        settings=kernel.settings,
        spec=CHAT,
        handler=handler,
        store=kernel.store,
        broker=kernel.broker,
        supervisor=kernel.supervisor,
        concurrency=concurrency,
    )
    await consumer.start()
    return consumer


async def ready_in_queue(kernel: Kernel) -> int:
    name = kernel.settings.queue(CHAT.name)
    return (await kernel.broker.inspect([name]))[name][0]


async def test_deliveries_wait_in_the_queue_through_an_outage_and_complete_after(
    cut_kernel: Kernel, kernel: Kernel, proxy: SilentProxy
) -> None:
    async def reply(ctx: TaskContext) -> TaskResult:
        return TaskResult({"ok": True}, reply="back")

    await drain_dlq(kernel)
    consumer = await start(cut_kernel, reply)
    try:
        # Given the database cut off from the worker
        proxy.cut()
        # When a backend keeps publishing chat messages straight to the queue
        messages = [chat_message(user_id=f"out-{i}", content=f"m{i}") for i in range(30)]
        for msg in messages:
            await publish(kernel, msg)
        # Then the worker pauses and the messages wait in the queue, none dead-lettered
        await wait_for(lambda: _true(consumer.paused), what="the consumer to pause")
        assert "database" in consumer.pause_reasons
        assert CONSUMER_PAUSED.labels(CHAT.name)._value.get() == 1
        await wait_for(
            lambda: _equal(ready_in_queue(kernel), len(messages)),
            what="every message back in the queue",
        )
        await asyncio.sleep(1.0)  # an outage that lasts: still nothing taken, nothing lost
        assert await ready_in_queue(kernel) == len(messages)
        assert await drain_dlq(kernel) == []
        # When the database is back, everything completes on its first attempt
        proxy.mend()
        for msg in messages:
            task = await wait_status(kernel, msg.task_id, "completed", timeout_s=30)
            assert task["attempts"] == 1
        assert not consumer.paused
        assert CONSUMER_PAUSED.labels(CHAT.name)._value.get() == 0
        assert await drain_dlq(kernel) == []
    finally:
        await consumer.stop(grace_s=2)


async def test_an_outcome_waits_for_its_commit_instead_of_losing_the_attempt(
    cut_kernel: Kernel, kernel: Kernel, proxy: SilentProxy
) -> None:
    started, finish = asyncio.Event(), asyncio.Event()

    async def slow(ctx: TaskContext) -> TaskResult:
        started.set()
        await finish.wait()
        return TaskResult({"ok": True}, reply="committed late")

    consumer = await start(cut_kernel, slow)
    try:
        msg = chat_message()
        await publish(kernel, msg)
        await started.wait()
        # The handler finishes while the database is away: its commit waits, unacked
        proxy.cut()
        finish.set()
        await wait_for(lambda: _true(consumer.paused), what="the consumer to pause")
        task = await kernel.store.get_task(msg.task_id)
        assert task is not None
        assert task["status"] == "processing"
        proxy.mend()
        task = await wait_status(kernel, msg.task_id, "completed", timeout_s=30)
        assert (task["attempts"], task["output"]) == (1, {"ok": True})
    finally:
        await consumer.stop(grace_s=2)


async def _true(value: bool) -> bool:
    return value


async def _equal(value: Any, expected: Any) -> bool:
    return bool(await value == expected)
