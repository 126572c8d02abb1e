"""The publisher: the API answers once the task is committed, publishes off the request's
path, holds a fast client back when its backlog is full, and leaves to the relay what it
could not publish."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import aio_pika
import pytest
from aiohttp.test_utils import TestClient, TestServer

from fleet_api.app import create_app
from taskfleet.broker.publisher import Publisher
from taskfleet.core.constants import TaskType
from taskfleet.core.errors import PublishFailed
from taskfleet.core.messages import TaskMessage
from taskfleet.core.metrics import PUBLISHER_DEFERRED, PUBLISHER_WAITING
from taskfleet.core.settings import Settings
from taskfleet.runtime.kernel import Kernel
from taskfleet.security.auth import issue_token
from taskfleet.store.records import Outgoing
from tests.conftest import JWT_SECRET, wait_for

ALICE = {"Authorization": f"Bearer {issue_token(JWT_SECRET, 'alice')}"}


class Gate:
    """A Publish that records each message and holds the ones it is told to until opened."""

    def __init__(self, hold: bool = True) -> None:
        self.open = asyncio.Event()
        if not hold:
            self.open.set()
        self.attempted: list[str] = []
        self.published: list[str] = []

    async def __call__(
        self, queue: str, body: bytes, message_id: str, headers: dict[str, Any]
    ) -> None:
        self.attempted.append(message_id)
        await self.open.wait()
        self.published.append(message_id)


def tuned(kernel: Kernel, **overrides: Any) -> Kernel:
    settings = kernel.settings.model_copy(update=overrides)
    return Kernel(settings, kernel.pool, kernel.store, kernel.broker, kernel.supervisor)


def message() -> Outgoing:
    """A committed task's message (its outbox row, 0, is none: nothing to forget)."""
    return Outgoing(
        TaskMessage(
            task_id=uuid4(),
            type=TaskType.CHAT,
            user_id="alice",
            chat_id="p",
            payload={"content": "hi"},
        ),
        0,
    )


async def outbox_rows(kernel: Kernel, task_id: str) -> int:
    return int(
        await kernel.pool.fetchval("SELECT count(*) FROM outbox WHERE task_id = $1", UUID(task_id))
    )


@pytest.fixture
async def running(kernel: Kernel) -> AsyncIterator[list[str]]:
    """Names of publisher loops a test started; all stopped at teardown."""
    names: list[str] = []
    yield names
    for name in names:
        await kernel.supervisor.stop(name)


async def start(kernel: Kernel, publisher: Publisher, running: list[str]) -> None:
    name = f"test-publisher-{len(running)}"
    kernel.supervisor.spawn(name, publisher.run)
    running.append(name)
    await wait_for(lambda: _true(publisher.running), what="the publisher's loop")


async def test_the_api_answers_before_the_confirm_and_drops_the_row_once_published(
    kernel: Kernel,
) -> None:
    gate = Gate()
    # The relay must not publish the row on its own while the gate holds it.
    app = create_app(tuned(kernel, outbox_grace_s=600), publish=gate)
    async with TestClient(TestServer(app)) as client:
        resp = await client.post(
            "/api/chat/stream", json={"chat_id": "p", "content": "hi"}, headers=ALICE
        )
        body = await resp.json()
        assert resp.status == 202, body
        task_id = body["task_id"]
        await wait_for(lambda: _true(gate.attempted == [task_id]), what="the publish to start")
        assert gate.published == []  # answered while the broker had not confirmed
        assert await outbox_rows(kernel, task_id) == 1  # the relay's copy until then
        gate.open.set()

        async def row_gone() -> bool:
            return await outbox_rows(kernel, task_id) == 0

        await wait_for(row_gone, what="the outbox row to be dropped after the publish")
        assert gate.published == [task_id]


async def test_a_full_backlog_holds_the_sender_until_a_batch_is_confirmed(
    kernel: Kernel, running: list[str]
) -> None:
    gate = Gate()
    publisher = Publisher(kernel, gate, backlog=2)
    await start(kernel, publisher, running)
    first, second, third = message(), message(), message()
    waiting = PUBLISHER_WAITING._value.get()
    await publisher.send(first)
    await publisher.send(second)
    await wait_for(lambda: _true(len(gate.attempted) == 2), what="the first batch in flight")
    assert PUBLISHER_WAITING._value.get() == waiting + 2  # the gauge operators watch
    blocked = asyncio.ensure_future(publisher.send(third))
    done, _ = await asyncio.wait([blocked], timeout=0.3)
    assert not done, "a third message got in while two awaited their confirm"
    gate.open.set()
    await asyncio.wait_for(blocked, 10)
    await wait_for(lambda: _true(len(gate.published) == 3), what="the third message published")
    assert gate.published == [str(m.message.task_id) for m in (first, second, third)]
    await wait_for(lambda: _true(PUBLISHER_WAITING._value.get() == waiting), what="gauge back")


async def test_past_the_publish_timeout_a_held_sender_leaves_its_message_to_the_relay(
    kernel: Kernel, running: list[str]
) -> None:
    gate = Gate()
    publisher = Publisher(tuned(kernel, publish_timeout_s=0.2), gate, backlog=1)
    await start(kernel, publisher, running)
    await publisher.send(message())
    await wait_for(lambda: _true(len(gate.attempted) == 1), what="the first message in flight")
    deferred = PUBLISHER_DEFERRED._value.get()
    await asyncio.wait_for(publisher.send(late := message()), 5)  # returns: no room in time
    assert PUBLISHER_DEFERRED._value.get() == deferred + 1
    gate.open.set()
    await wait_for(lambda: _true(len(gate.published) == 1), what="the first message published")
    assert (
        str(late.message.task_id) not in gate.attempted
    )  # its outbox row is the relay's to publish


async def test_stopping_publishes_what_waits_and_leaves_the_interrupted_to_the_relay(
    kernel: Kernel, running: list[str]
) -> None:
    held, waiting = message(), message()

    class HoldFirst(Gate):
        async def __call__(
            self, queue: str, body: bytes, message_id: str, headers: dict[str, Any]
        ) -> None:
            if message_id == str(held.message.task_id):
                await super().__call__(queue, body, message_id, headers)
            else:
                self.published.append(message_id)

    gate = HoldFirst()
    publisher = Publisher(kernel, gate)
    await start(kernel, publisher, running)
    await publisher.send(held)
    await wait_for(
        lambda: _true(gate.attempted == [str(held.message.task_id)]), what="a batch in flight"
    )
    await publisher.send(waiting)  # waits for the next batch
    await kernel.supervisor.stop(running.pop())
    assert gate.published == [str(waiting.message.task_id)]


async def test_without_its_loop_the_publisher_publishes_at_once(kernel: Kernel) -> None:
    gate = Gate(hold=False)
    sent = message()
    await Publisher(kernel, gate).send(sent)
    assert gate.published == [str(sent.message.task_id)]


async def test_the_brokers_publish_is_confirmed_persistent_and_refused_when_unroutable(
    kernel: Kernel, settings: Settings
) -> None:
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await kernel.broker.publish(
            queue.name, b'{"a": 1}', message_id="m-1", headers={"x-reason": "test"}
        )
        got = await queue.get(timeout=5)
        assert got is not None
        assert (got.body, got.message_id, got.content_type) == (b'{"a": 1}', "m-1",
                                                                "application/json")  # fmt: skip
        assert got.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert got.headers == {"x-reason": "test"}
    with pytest.raises(PublishFailed, match="NO_ROUTE"):
        await kernel.broker.publish(f"no-such-queue-{uuid4()}", b"{}", message_id="m-2")


async def _true(value: bool) -> bool:
    return value
