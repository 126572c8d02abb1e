"""A work queue's delivery as the path takes it: straight from aiormq.

aio-pika's consumer wraps each delivery in an IncomingMessage (every property decoded, each
attribute set through a lock check) and runs the callback in a second task: about 5 % of a
chat worker's CPU under W1, for a body, three properties and an ack. `Incoming` keeps the
names the path reads (those of aio-pika's message, so either fits it) over aiormq's own
message, and settles it on the channel it came from.
"""

from typing import Any

import aiormq
from aiormq.abc import DeliveredMessage


class Incoming:
    """One delivery of a consumer subscribed with `subscribe`: unacknowledged until settled."""

    __slots__ = ("_message",)

    def __init__(self, message: DeliveredMessage) -> None:
        self._message = message

    @property
    def body(self) -> bytes:
        """The message body as published."""
        return self._message.body

    @property
    def headers(self) -> dict[str, Any]:
        """The AMQP headers (text may come back as bytes); {} when it has none."""
        return self._message.header.properties.headers or {}

    @property
    def message_id(self) -> str | None:
        """The publisher's message id."""
        return self._message.header.properties.message_id

    @property
    def redelivered(self) -> bool:
        """Whether the broker delivered it before (to this consumer or another)."""
        return bool(self._message.redelivered)

    @property
    def channel(self) -> aiormq.abc.AbstractChannel:
        """The channel it came on: a closed one has given it back to the queue already."""
        return self._message.channel

    @property
    def delivery_tag(self) -> int | None:
        """Its tag on that channel."""
        return self._message.delivery_tag

    async def ack(self) -> None:
        """basic.ack on its channel (raises ChannelInvalidStateError once that is closed)."""
        tag = self._message.delivery_tag
        assert tag is not None
        await self._message.channel.basic_ack(tag)

    async def nack(self, requeue: bool = True) -> None:
        """basic.nack on its channel: back to its queue (`requeue`), or dropped."""
        tag = self._message.delivery_tag
        assert tag is not None
        await self._message.channel.basic_nack(tag, requeue=requeue)
