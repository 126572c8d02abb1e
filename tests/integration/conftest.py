"""In-process fixtures: a kernel on the session's database and namespace, consumers with
handlers chosen by each test, and small helpers to publish and to read what happened."""

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from uuid import UUID, uuid4

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage

from taskfleet.broker.topology import all_queue_names
from taskfleet.core.constants import QUEUES, QueueSpec, TaskType, dlq_name
from taskfleet.core.messages import TaskMessage
from taskfleet.core.settings import Settings
from taskfleet.path.consumer import Consumer, Handler
from taskfleet.runtime.kernel import Kernel, open_kernel
from taskfleet.store.pool import create_pool
from tests.webhook_receiver import Receiver

CHAT = QUEUES[TaskType.CHAT]

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


@pytest.fixture(autouse=True)
async def _leave_the_queues_empty(settings: Settings) -> AsyncIterator[None]:
    """Tests share the session's namespace: what one test left queued (tasks submitted with
    no consumer, a retry not yet due, a dead letter) must not reach the next one's handler."""
    yield
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        for name in all_queue_names(settings):
            queue = await channel.get_queue(name, ensure=False)
            await queue.purge()
    pool = await create_pool(settings.database_url, size=1)
    try:
        await pool.execute("DELETE FROM outbox")
    finally:
        await pool.close()


@pytest.fixture
async def kernel(settings: Settings) -> AsyncIterator[Kernel]:
    async with open_kernel(settings, name="test") as k:
        yield k


ConsumerFactory = Callable[..., Awaitable[Consumer]]


@pytest.fixture
async def consume(kernel: Kernel) -> AsyncIterator[ConsumerFactory]:
    """Start a consumer of `spec`'s queue (chat_tasks by default) with a test's handler.

    Keyword overrides are Settings field names (max_attempts=3, user_concurrency=2, ...).
    Every consumer is stopped at teardown.
    """
    consumers: list[Consumer] = []

    async def start(
        handler: Handler,
        concurrency: int = 4,
        spec: QueueSpec = CHAT,
        max_concurrency: int | None = None,
        **overrides: Any,
    ) -> Consumer:
        settings = kernel.settings.model_copy(update=overrides) if overrides else kernel.settings
        consumer = Consumer(
            settings=settings,
            spec=spec,
            handler=handler,
            store=kernel.store,
            broker=kernel.broker,
            supervisor=kernel.supervisor,
            concurrency=concurrency,
            max_concurrency=max_concurrency,
        )
        await consumer.start()
        consumers.append(consumer)
        return consumer

    yield start
    for consumer in consumers:
        await consumer.stop(grace_s=2)


def chat_message(user_id: str = "alice", content: str = "hello", **fields: Any) -> TaskMessage:
    return TaskMessage(
        task_id=fields.pop("task_id", uuid4()),
        type=TaskType.CHAT,
        user_id=user_id,
        chat_id=fields.pop("chat_id", "chat-1"),
        payload={"content": content},
        **fields,
    )


async def publish(kernel: Kernel, msg: TaskMessage | bytes, message_id: str | None = None) -> None:
    """Publish straight to chat_tasks, as the chat backend may (DESIGN.md §5)."""
    body = msg if isinstance(msg, bytes) else msg.dumps()
    mid = message_id or (None if isinstance(msg, bytes) else str(msg.task_id))
    await kernel.broker.publish(kernel.settings.queue(CHAT.name), body, message_id=mid)


async def task_row(kernel: Kernel, task_id: UUID) -> dict[str, Any] | None:
    return await kernel.store.get_task(task_id)


async def wait_status(
    kernel: Kernel, task_id: UUID, *statuses: str, timeout_s: float = 20
) -> dict[str, Any]:
    from tests.conftest import wait_for

    async def probe() -> dict[str, Any] | None:
        row = await task_row(kernel, task_id)
        return row if row and row["status"] in statuses else None

    return await wait_for(probe, timeout_s=timeout_s, what=f"task {task_id} to be {statuses}")  # type: ignore[no-any-return]


async def drain_dlq(kernel: Kernel, queue: str = CHAT.name) -> list[AbstractIncomingMessage]:
    """Take every message now in `<queue>.dlq` (acknowledging them: each test starts clean)."""
    assert kernel.broker.connection is not None
    channel = await kernel.broker.connection.channel()
    got: list[AbstractIncomingMessage] = []
    try:
        dlq = await channel.get_queue(kernel.settings.queue(dlq_name(queue)), ensure=False)
        while (message := await dlq.get(no_ack=True, fail=False, timeout=5)) is not None:
            got.append(message)
    finally:
        await channel.close()
    return got


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A real HTTP server that webhooks and callbacks are delivered to."""
    r = Receiver()
    await r.start()
    yield r
    await r.stop()
