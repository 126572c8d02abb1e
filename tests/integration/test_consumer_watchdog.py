"""The consumer's watchdog (taskfleet.path.watchdog) reconnects a consumer that is gone, but not
one that a resize of its slots or a resume is subscribing again at that moment: that took the
whole connection down under load (every unacked delivery back to the queue, the waiting live
events lost)."""

import asyncio

import pytest

from taskfleet.path import watchdog
from taskfleet.path.consumer import Consumer
from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.path.reasons import PauseCause
from taskfleet.runtime.kernel import Kernel
from tests.conftest import wait_for
from tests.integration.conftest import ConsumerFactory


async def idle(ctx: TaskContext) -> TaskResult:
    return TaskResult({})


@pytest.fixture
def reconnects(kernel: Kernel, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The reasons of every reconnect asked of the broker (none is made)."""
    asked: list[str] = []
    monkeypatch.setattr(kernel.broker, "reconnect", asked.append)
    return asked


async def fast_watch(
    kernel: Kernel, consumer: Consumer, stuck_s: float = watchdog.STUCK_S
) -> asyncio.Task[None]:
    """A second watchdog of `consumer` that looks every millisecond."""
    return asyncio.create_task(
        watchdog.watch(kernel.broker, consumer._lost, consumer._resubscribing, 0.001, stuck_s)
    )


async def test_resizes_and_resumes_are_not_a_lost_consumer(
    kernel: Kernel, consume: ConsumerFactory, reconnects: list[str]
) -> None:
    consumer = await consume(idle, concurrency=2, max_concurrency=64)
    watcher = await fast_watch(kernel, consumer)
    try:
        # Each resize cancels the consumer and subscribes it again: several round trips, in
        # which a watchdog looking every millisecond without the lock saw no consumer.
        for slots in [4, 8, 16, 32, 64, 48, 36, 27, 20, 15] * 3:
            await consumer._resize(slots)
        for _ in range(10):
            await consumer.pause("test", cause=PauseCause.MEMORY)
            await consumer.resume(cause=PauseCause.MEMORY)
        assert consumer.consuming
    finally:
        watcher.cancel()
    assert reconnects == []


async def test_a_consumer_that_is_gone_is_still_reconnected(
    kernel: Kernel, consume: ConsumerFactory, reconnects: list[str]
) -> None:
    consumer = await consume(idle, concurrency=2)
    watcher = await fast_watch(kernel, consumer)
    try:
        await consumer._cancel_consumer()  # as a broker that cancelled it would leave it

        async def asked() -> bool:
            return "consumer lost" in reconnects

        await wait_for(asked, what="the watchdog to ask for a reconnect")
    finally:
        watcher.cancel()


async def test_a_resubscription_stuck_too_long_is_a_lost_consumer(
    kernel: Kernel, consume: ConsumerFactory, reconnects: list[str]
) -> None:
    consumer = await consume(idle, concurrency=2)
    watcher = await fast_watch(kernel, consumer, stuck_s=0.05)
    try:
        async with consumer._resubscribing:  # held, as by a resize whose round trip hangs

            async def asked() -> bool:
                return "consumer lost" in reconnects

            await wait_for(asked, what="the watchdog to give up waiting")
    finally:
        watcher.cancel()
