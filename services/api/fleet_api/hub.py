"""The event hub of one API replica: every replica consumes the events exchange through its
own exclusive queue, fans events out to its WebSocket subscribers and keeps a short replay
buffer per task, so a client that reconnects with `?since=` misses nothing."""

import asyncio
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from taskfleet import jsonx
from taskfleet.broker import Broker
from taskfleet.constants import EVENTS_EXCHANGE
from taskfleet.events import TASK_EVENTS_BINDING
from taskfleet.settings import Settings

log = structlog.get_logger("fleet_api.hub")

Event = dict[str, Any]

EVENTS_PER_TASK = 1000
TASKS_REMEMBERED = 5000
SUBSCRIBER_QUEUE = 2000


@dataclass(eq=False)
class Subscription:
    """One socket's feed. `user_id` None: every user's events (service and admin scopes)."""

    user_id: str | None
    queue: asyncio.Queue[Event] = field(default_factory=lambda: asyncio.Queue(SUBSCRIBER_QUEUE))
    overflowed: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, event: Event) -> None:
        """Never blocks the hub: a client too slow to keep up is marked for dropping."""
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed.set()


@dataclass
class EventHub:
    settings: Settings
    broker: Broker
    _subscribers: dict[str | None, set[Subscription]] = field(default_factory=dict)
    _history: OrderedDict[str, deque[Event]] = field(default_factory=OrderedDict)
    _channel: AbstractChannel | None = None
    connected: int = 0

    async def start(self) -> None:
        await self.broker.subscribe(self._consume)

    async def stop(self) -> None:
        self.broker.unsubscribe(self._consume)
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            # Closing it is not a lost channel: take it out of the broker's watch first.
            channel.close_callbacks.clear()
            await channel.close()

    def subscribe(self, user_id: str | None) -> Subscription:
        sub = Subscription(user_id)
        self._subscribers.setdefault(user_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.get(sub.user_id, set()).discard(sub)

    def replay(self, task_id: str, since_seq: int) -> list[Event] | None:
        """Events of the task after `since_seq`, or None if this replica cannot vouch for
        having all of them (it started or reconnected later, or the buffer rolled over)."""
        history = self._history.get(task_id)
        if not history or history[0]["seq"] > since_seq:
            return None
        return [e for e in history if e["seq"] > since_seq]

    async def _consume(self, connection: AbstractConnection) -> None:
        # Events published while we were disconnected are lost to us: forget what we hold,
        # so replay falls back to a fresh read of the database rather than leave a gap.
        self._history.clear()
        channel = self._channel = await self.broker.channel(connection, publisher_confirms=False)
        exchange = await channel.get_exchange(self.settings.queue(EVENTS_EXCHANGE))
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key=TASK_EVENTS_BINDING)
        await queue.consume(self._on_message, no_ack=True)
        self.connected += 1

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            event = jsonx.loads(message.body)
            task_id, user_id = str(event["task_id"]), event["user_id"]
            int(event["seq"])
        except (ValueError, KeyError, TypeError):
            log.warning("event_invalid", routing_key=message.routing_key)
            return
        self._remember(task_id, event)
        for key in (user_id, None):
            for sub in self._subscribers.get(key, ()):
                sub.offer(event)

    def _remember(self, task_id: str, event: Event) -> None:
        history = self._history.get(task_id)
        if history is None:
            history = self._history[task_id] = deque(maxlen=EVENTS_PER_TASK)
            while len(self._history) > TASKS_REMEMBERED:
                self._history.popitem(last=False)
        else:
            self._history.move_to_end(task_id)
        history.append(event)
