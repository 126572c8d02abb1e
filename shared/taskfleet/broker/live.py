"""Live events and control messages: transient, best effort, sent in order off the caller's path.

The message path hands an event over and goes on (`enqueue` never waits): a publish, even an
unconfirmed one, queues behind every frame of the connection. One loop (owned by the kernel's
supervisor) sends what waits. It takes all that has gathered at once and waits for the socket
(aiormq's `wait`, a drain) only after the last of them: waiting after each event let one event
out per turn of the event loop, and under load (a backlog of tasks, 1,100 arrivals a second)
the publisher fell behind and dropped events (the connection's frame buffer, in
broker/connection.py, was the other half of it). The one drain a batch keeps the
back-pressure: while RabbitMQ does not read, the loop waits, the backlog fills and the events
beyond it are dropped, rather than buffered without end. Every event not sent is counted in
`taskfleet_events_dropped_total`.
"""

import asyncio
from typing import cast

import aiormq
import structlog
from aio_pika.abc import AbstractChannel, AbstractExchange

from taskfleet.core.metrics import EVENTS_DROPPED

log = structlog.get_logger("taskfleet.broker")
_JSON = aiormq.spec.Basic.Properties(content_type="application/json")

# Live events waiting for the publisher, at most; beyond it they are dropped (counted), as
# live updates are best effort. Each holds orjson's 4 KiB output buffer: 2,000 cap the
# backlog near 8 MiB (the soak in bench/ showed 10,000 growing a worker by 40 MiB).
EVENT_BACKLOG = 2_000
# Events sent before the loop waits for the socket, at most.
BATCH = 256

Outgoing = tuple[AbstractExchange, str, bytes]


class LivePublisher:
    """The events and control exchanges of the current connection, and the loop that
    publishes to them."""

    def __init__(self) -> None:
        self.events: AbstractExchange | None = None
        self.control: AbstractExchange | None = None
        self._channel: AbstractChannel | None = None  # the two exchanges' channel
        self._outgoing: asyncio.Queue[Outgoing] = asyncio.Queue(EVENT_BACKLOG)

    def attach(
        self,
        channel: AbstractChannel | None,
        events: AbstractExchange | None = None,
        control: AbstractExchange | None = None,
    ) -> None:
        """The exchanges of a new connection (all None while there is none)."""
        self._channel, self.events, self.control = channel, events, control

    def enqueue(self, exchange: AbstractExchange | None, routing_key: str, body: bytes) -> None:
        """Hand an event over; dropped (counted) while the backlog is full or not connected."""
        if exchange is None:
            EVENTS_DROPPED.inc()
            return
        try:
            self._outgoing.put_nowait((exchange, routing_key, body))
        except asyncio.QueueFull:
            EVENTS_DROPPED.inc()

    async def run(self) -> None:
        """Publish what waits, in order, for ever."""
        while True:
            batch = [await self._outgoing.get()]
            while len(batch) < BATCH and not self._outgoing.empty():
                batch.append(self._outgoing.get_nowait())
            for i, (exchange, routing_key, body) in enumerate(batch):
                if exchange is self.events or exchange is self.control:
                    await self._publish(exchange, routing_key, body, drain=i == len(batch) - 1)
                else:  # for a connection that is gone: a live update is not retried
                    EVENTS_DROPPED.inc()

    async def _publish(
        self, exchange: AbstractExchange, routing_key: str, body: bytes, *, drain: bool
    ) -> None:
        if self._channel is None:
            EVENTS_DROPPED.inc()
            return
        try:
            # aiormq directly: aio-pika's Message for each event cost a worker 3 % of its CPU,
            # and a transient event needs none of what it adds.
            channel = cast(aiormq.Channel, await self._channel.get_underlay_channel())
            await channel.basic_publish(
                body,
                exchange=exchange.name,
                routing_key=routing_key,
                properties=_JSON,
                mandatory=False,  # nobody listening is fine for a live update
                wait=drain,
            )
        except Exception as exc:  # a live update is not worth failing a task for
            EVENTS_DROPPED.inc()
            log.debug("event_publish_failed", routing_key=routing_key, error=repr(exc))
