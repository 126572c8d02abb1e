"""How a user's cancel reaches a running attempt: the control exchange's message, and the
database's cancel flag for when that message was lost."""

import asyncio
from collections.abc import Mapping
from uuid import UUID

import orjson
import structlog
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from taskfleet.broker.connection import Broker
from taskfleet.path.attempt import Attempt
from taskfleet.path.reasons import Interrupt
from taskfleet.store.pool import UNAVAILABLE
from taskfleet.store.tasks import TaskStore

log = structlog.get_logger("taskfleet.runner")

CANCEL_POLL_S = 1.0


async def subscribe(
    broker: Broker,
    connection: AbstractConnection,
    exchange_name: str,
    inflight: Mapping[UUID, Attempt],
) -> None:
    """Listen on the control exchange (on every connect) for cancels of what runs here."""
    channel = await broker.channel(connection, publisher_confirms=False)
    exchange = await channel.get_exchange(exchange_name)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange)

    async def on_control(message: AbstractIncomingMessage) -> None:
        on_command(message.body, inflight)

    await queue.consume(on_control, no_ack=True)


def on_command(body: bytes, inflight: Mapping[UUID, Attempt]) -> None:
    """Interrupt the attempt a control message cancels, if it runs here; a bad body is logged."""
    try:
        command = orjson.loads(body)
        task_id = UUID(str(command["task_id"]))
    except (orjson.JSONDecodeError, KeyError, ValueError, TypeError):
        log.warning("control_message_invalid", body=body[:200])
        return
    attempt = inflight.get(task_id)
    if command.get("type") == "cancel" and attempt is not None:
        log.info("cancel_received", task_id=str(task_id))
        attempt.interrupt(Interrupt.CANCEL)


async def poll(store: TaskStore, inflight: Mapping[UUID, Attempt]) -> None:
    """The database's cancel flag reaches a running handler even if the control message
    was lost and the handler never reports progress."""
    while True:
        await asyncio.sleep(CANCEL_POLL_S)
        if not inflight:
            continue
        try:
            cancelled = await store.cancel_requested(list(inflight))
        except UNAVAILABLE:
            continue  # the consumer's own probe watches the database
        for task_id in cancelled:
            attempt = inflight.get(task_id)
            if attempt is not None:
                attempt.interrupt(Interrupt.CANCEL)
