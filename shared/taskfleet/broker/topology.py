"""The broker topology (DESIGN.md §5), declared idempotently by every process at connect."""

from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel

from taskfleet.broker.nodes import connect
from taskfleet.core.constants import (
    CONTROL_EXCHANGE,
    DEAD_LETTER_EXCHANGE,
    DELIVERY_LIMIT,
    EVENTS_EXCHANGE,
    LEVELS,
    QUEUES,
    dlq_name,
    level_queue,
)
from taskfleet.core.settings import Settings


def work_queue_arguments(settings: Settings, queue: str) -> dict[str, Any]:
    """Quorum queue that dead-letters at-least-once to `<queue>.dlq` through the DLX.

    The application decides retry or dead letter from the attempts counted in PostgreSQL;
    the delivery limit only catches a message that kills its worker every time.
    """
    return {
        **quorum_arguments(settings),
        "x-dead-letter-exchange": settings.queue(DEAD_LETTER_EXCHANGE),
        "x-dead-letter-routing-key": settings.queue(dlq_name(queue)),
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",  # required by at-least-once dead-lettering
        "x-delivery-limit": DELIVERY_LIMIT,
    }


def quorum_arguments(settings: Settings) -> dict[str, Any]:
    """A quorum queue, with AMQP_QUORUM_SIZE replicas when it is set (else one per node)."""
    if settings.amqp_quorum_size is None:
        return {"x-queue-type": "quorum"}
    return {"x-queue-type": "quorum", "x-quorum-initial-group-size": settings.amqp_quorum_size}


async def declare_topology(channel: AbstractChannel, settings: Settings) -> None:
    """Exchanges, the four work queues at each priority and their dead-letter queues.

    Idempotent. Quorum queues on RabbitMQ 3.10 have no message priorities: each level is a
    queue of its own (`chat_tasks.high`, `chat_tasks`, `chat_tasks.low`), each with its DLQ."""
    dlx = await channel.declare_exchange(
        settings.queue(DEAD_LETTER_EXCHANGE), aio_pika.ExchangeType.DIRECT, durable=True
    )
    await channel.declare_exchange(
        settings.queue(EVENTS_EXCHANGE), aio_pika.ExchangeType.TOPIC, durable=True
    )
    await channel.declare_exchange(
        settings.queue(CONTROL_EXCHANGE), aio_pika.ExchangeType.FANOUT, durable=True
    )
    for name in work_queue_names():
        dlq = settings.queue(dlq_name(name))
        dead = await channel.declare_queue(dlq, durable=True, arguments=quorum_arguments(settings))
        await dead.bind(dlx, routing_key=dlq)
        await channel.declare_queue(
            settings.queue(name),
            durable=True,
            arguments=work_queue_arguments(settings, name),
        )


def work_queue_names() -> list[str]:
    """Every work queue at every level, without the namespace: `chat_tasks.high`, ..."""
    return [level_queue(spec.name, level) for spec in QUEUES.values() for level in LEVELS]


def all_queue_names(settings: Settings) -> list[str]:
    """Every work queue and dead-letter queue of the namespace, by their broker names."""
    names = []
    for name in work_queue_names():
        names += [settings.queue(name), settings.queue(dlq_name(name))]
    return names


def all_exchange_names(settings: Settings) -> list[str]:
    """The exchanges of the namespace (dead letters, events, control), by their broker names."""
    return [settings.queue(n) for n in (DEAD_LETTER_EXCHANGE, EVENTS_EXCHANGE, CONTROL_EXCHANGE)]


async def delete_namespace(settings: Settings) -> None:
    """Delete a namespace's queues and exchanges (a test session's or a benchmark's).

    Idle quorum queues are not free: each is a Raft member that RabbitMQ keeps ticking.
    """
    connection = await connect(settings)
    async with connection:
        channel = await connection.channel()
        for name in all_queue_names(settings):
            await channel.queue_delete(name)
        for name in all_exchange_names(settings):
            await channel.exchange_delete(name)
