"""Live events go out in order, all that gathered at once before one wait for the socket
(taskfleet.broker.live): waiting after each let one event out per turn of the event loop, and
under load the publisher fell behind and dropped them."""

from typing import Any

import aio_pika
import aiormq
import pytest

from taskfleet.broker import live
from taskfleet.core.constants import EVENTS_EXCHANGE
from taskfleet.core.metrics import EVENTS_DROPPED
from taskfleet.runtime.kernel import Kernel
from tests.conftest import wait_for


async def bound_queue(kernel: Kernel, key: str) -> aio_pika.abc.AbstractQueue:
    """A queue of the test's own that hears the events exchange's `key`."""
    assert kernel.broker.connection is not None
    channel = await kernel.broker.connection.channel()
    exchange = await channel.get_exchange(kernel.settings.queue(EVENTS_EXCHANGE))
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, key)
    return queue


async def heard(queue: aio_pika.abc.AbstractQueue, n: int) -> list[int]:
    bodies: list[int] = []
    async with queue.iterator() as messages:
        async for message in messages:
            bodies.append(int(message.body))
            await message.ack()
            if len(bodies) == n:
                return bodies
    return bodies


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The `wait` (drain) of every event publish, in order."""
    seen: list[bool] = []
    publish = aiormq.Channel.basic_publish

    async def spy(self: aiormq.Channel, body: bytes, **kwargs: Any) -> Any:
        if kwargs.get("exchange", "").endswith(EVENTS_EXCHANGE):
            seen.append(kwargs["wait"])
        return await publish(self, body, **kwargs)

    monkeypatch.setattr(aiormq.Channel, "basic_publish", spy)
    return seen


async def test_events_given_at_once_go_in_order_with_one_wait_for_the_socket(
    kernel: Kernel, waits: list[bool]
) -> None:
    queue = await bound_queue(kernel, "task.live.#")
    for i in range(100):  # the publisher's loop runs only once these are all queued
        kernel.broker.send_event("task.live.updated", str(i).encode())
    assert await heard(queue, 100) == list(range(100))
    assert waits == [False] * 99 + [True]


async def test_a_backlog_larger_than_a_batch_waits_once_a_batch(
    kernel: Kernel, waits: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "BATCH", 30)
    queue = await bound_queue(kernel, "task.live.#")
    for i in range(70):
        kernel.broker.send_event("task.live.updated", str(i).encode())
    assert await heard(queue, 70) == list(range(70))
    assert [i for i, wait in enumerate(waits) if wait] == [29, 59, 69]


async def test_events_for_a_connection_that_went_away_are_counted_dropped(kernel: Kernel) -> None:
    publisher = kernel.broker.live
    assert publisher.events is not None
    assert publisher._channel is not None
    fresh = await publisher._channel.get_exchange(publisher.events.name)
    assert fresh is not publisher.events
    before = EVENTS_DROPPED._value.get()
    kernel.broker.send_event("task.live.updated", b"1")  # for this connection's exchange
    # A new connection's exchanges, before the publisher's loop takes the event.
    publisher.attach(publisher._channel, fresh, publisher.control)

    async def counted() -> bool:
        return bool(EVENTS_DROPPED._value.get() == before + 1)

    await wait_for(counted, what="the stale event to be counted dropped")
