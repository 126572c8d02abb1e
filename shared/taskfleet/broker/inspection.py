"""Queue depths and consumer counts by passive declares: RabbitMQ 3.10 here has no management
API, and a passive declare answers both numbers without touching the queue."""

import asyncio

from aio_pika.abc import AbstractConnection


async def declare_passively(
    connection: AbstractConnection, names: list[str]
) -> dict[str, tuple[int, int]]:
    """(ready messages, consumers) of each queue. Raises what aio-pika raises for a missing
    queue (the channel closes) or a connection closed under it."""
    # A channel of its own: a failed passive declare closes it, and it must not take the
    # shared channels (whose loss reconnects everything) down with it.
    channel = await connection.channel()
    found = {}
    try:
        for name in names:
            queue = await channel.declare_queue(name, passive=True)
            result = queue.declaration_result
            found[name] = (result.message_count or 0, result.consumer_count or 0)
    finally:
        # Shielded: aiormq answers a cancelled Channel.Close with a second Close on a channel
        # the broker has freed, and the broker closes the whole connection for that (504
        # "expected 'channel.open'"). A caller cancelled here must not cost every other user.
        await asyncio.shield(channel.close())
    return found
