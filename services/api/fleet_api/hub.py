"""The event hub of one API replica: every replica consumes the events exchange through its
own exclusive queue, fans events out to its WebSocket subscribers and keeps a short replay
buffer per task (bounded in events per task, in tasks and in bytes in all), so a client that
reconnects with `?since=` misses nothing.

The queue is bound to the exchange only while a socket listens here (and for IDLE_UNBIND_S
after the last one left, so that a client coming back still finds its events in the buffer).
A replica that nobody listens to would otherwise receive, parse and keep every event of the
fleet: with W1 via api that was a quarter of the API's CPU and a seventh of RabbitMQ's.
Unbound, the buffer is emptied: a replay it cannot vouch for falls back to the database.

A long poll (`GET /api/tasks/{id}?wait=`) listens too, through `watch`: woken by its task's
terminal event, it reads the task once, rather than polling the database."""

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, AbstractQueue
from aiormq.abc import DeliveredMessage
from aiormq.exceptions import AMQPError

from taskfleet.broker.connection import Broker
from taskfleet.core import jsonx
from taskfleet.core.constants import EVENTS_EXCHANGE, TERMINAL
from taskfleet.core.events import TASK_EVENTS_BINDING
from taskfleet.core.settings import Settings

log = structlog.get_logger("fleet_api.hub")

Event = dict[str, Any]

EVENTS_PER_TASK = 1000
TASKS_REMEMBERED = 5000
# The replay buffer's bound in bytes (an event counts its JSON length), whatever the counts
# above allow: 5,000 tasks of 1,000 events could otherwise hold gigabytes of big outputs.
HISTORY_MAX_BYTES = 16 * 1024 * 1024
SUBSCRIBER_QUEUE = 2000
IDLE_UNBIND_S = 60.0
BIND_TIMEOUT_S = 10.0
BROKER_AWAY = (TimeoutError, ConnectionError, RuntimeError, AMQPError)


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
class History:
    """One task's events as received, oldest first, with their sizes. Events only ever leave
    from the oldest end, so what is held is every event the hub received for the task from
    the first one held on: the condition for `EventHub.replay` to vouch."""

    events: deque[tuple[Event, int]] = field(default_factory=deque)
    bytes: int = 0

    def append(self, event: Event, size: int) -> None:
        """Add the newest event, `size` bytes of JSON."""
        self.events.append((event, size))
        self.bytes += size

    def drop_oldest(self) -> int:
        """Remove the oldest event and answer its size, for the hub to take off its total."""
        _, size = self.events.popleft()
        self.bytes -= size
        return size


@dataclass
class EventHub:
    settings: Settings
    broker: Broker
    _subscribers: dict[str | None, set[Subscription]] = field(default_factory=dict)
    _history: OrderedDict[str, History] = field(default_factory=OrderedDict)
    _history_bytes: int = 0
    _channel: AbstractChannel | None = None
    _queue: AbstractQueue | None = None
    _exchange: AbstractExchange | None = None
    _bound: bool = False
    _idle_since: float = field(default_factory=time.monotonic)
    _binding: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Long polls (`GET /api/tasks/{id}?wait=`): task id -> the flags of its waiting requests.
    _watches: dict[str, set[asyncio.Event]] = field(default_factory=dict)
    stopping: bool = False
    connected: int = 0

    async def start(self) -> None:
        """Consume through a queue of its own (declared anew on every reconnect) and start
        the idle unbinder."""
        await self.broker.subscribe(self._consume)
        self.broker.supervisor.spawn(self._unbinder_name, self._unbind_when_idle)

    async def stop(self) -> None:
        """Stop consuming and close the hub's channel: no socket gets events after this."""
        await self.broker.supervisor.stop(self._unbinder_name)
        self.broker.unsubscribe(self._consume)
        channel, self._channel, self._queue = self._channel, None, None
        if channel is not None and not channel.is_closed:
            # Closing it is not a lost channel: take it out of the broker's watch first.
            channel.close_callbacks.clear()
            await channel.close()

    async def subscribe(self, user_id: str | None) -> Subscription:
        """A feed of events from now on: the queue is bound when this returns."""
        sub = Subscription(user_id)
        self._subscribers.setdefault(user_id, set()).add(sub)
        try:
            await self._bind()
        except BaseException:
            self.unsubscribe(sub)
            raise
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """End a feed; after the last one, the queue is unbound in IDLE_UNBIND_S if none comes."""
        subs = self._subscribers.get(sub.user_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:  # else one key stays for every user that ever connected here
                del self._subscribers[sub.user_id]
        if not self.listened:
            self._idle_since = time.monotonic()

    @asynccontextmanager
    async def watch(self, task_id: str) -> AsyncIterator[asyncio.Event]:
        """A flag set when the task's terminal event arrives, when events may have been
        missed (the hub reconnected) and when the API stops: then read the task again. The
        queue is bound when this yields, so no later event is missed."""
        woken = asyncio.Event()
        self._watches.setdefault(task_id, set()).add(woken)
        try:
            await self._bind()
            yield woken
        finally:
            watches = self._watches.get(task_id)
            if watches is not None:
                watches.discard(woken)
                if not watches:
                    del self._watches[task_id]
            if not self.listened:
                self._idle_since = time.monotonic()

    def watching(self, task_id: str) -> bool:
        """Whether a long poll waits for the task on this replica now."""
        return task_id in self._watches

    def wake_all(self, *, stopping: bool = False) -> None:
        """Wake every long poll: to read its task again, or (stopping) to answer now."""
        self.stopping = self.stopping or stopping
        for watches in self._watches.values():
            for woken in watches:
                woken.set()

    @property
    def bound(self) -> bool:
        """Whether this replica receives the fleet's events now."""
        return self._bound

    @property
    def listened(self) -> bool:
        """Whether any socket or long poll on this replica listens."""
        return bool(self._subscribers) or bool(self._watches)

    @property
    def history_bytes(self) -> int:
        """What the replay buffer holds, in bytes of event JSON."""
        return self._history_bytes

    @property
    def _unbinder_name(self) -> str:
        return f"hub-unbinder-{id(self):x}"

    def replay(self, task_id: str, since_seq: int) -> list[Event] | None:
        """Events of the task after `since_seq`, or None if this replica cannot vouch for
        having all of them (it started or reconnected later, or the buffer rolled over)."""
        history = self._history.get(task_id)
        if history is None or not history.events or history.events[0][0]["seq"] > since_seq:
            return None
        return [e for e, _ in history.events if e["seq"] > since_seq]

    async def _consume(self, connection: AbstractConnection) -> None:
        # Events published while we were disconnected are lost to us: forget what we hold,
        # so replay falls back to a fresh read of the database rather than leave a gap.
        self._forget_history()
        self._bound = False
        channel = self._channel = await self.broker.channel(connection, publisher_confirms=False)
        self._exchange = await channel.get_exchange(self.settings.queue(EVENTS_EXCHANGE))
        queue = self._queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        if self.listened:
            await self._bind()
        self.wake_all()  # a long poll may have missed its task's end: it reads it again
        # aiormq directly: aio-pika would add an IncomingMessage and a second task per event.
        underlay = await channel.get_underlay_channel()
        await underlay.basic_consume(queue.name, self._on_message, no_ack=True)
        self.connected += 1

    async def _bind(self) -> None:
        async with self._binding:
            queue, exchange = self._queue, self._exchange
            if self._bound or queue is None or exchange is None:
                return  # bound already, or the broker is away: _consume binds on return
            try:
                async with asyncio.timeout(BIND_TIMEOUT_S):
                    await queue.bind(exchange, routing_key=TASK_EVENTS_BINDING)
            except BROKER_AWAY as exc:
                # Live events are best effort: the socket still gets its snapshot now, and
                # _consume binds again once the connection is back.
                log.warning("events_bind_failed", error=repr(exc))
                return
            self._bound = True

    async def _unbind_when_idle(self) -> None:
        """A supervised loop: unbind once nobody listened for IDLE_UNBIND_S."""
        while True:
            await asyncio.sleep(IDLE_UNBIND_S / 4)
            if self.listened or time.monotonic() - self._idle_since < IDLE_UNBIND_S:
                continue
            async with self._binding:
                queue, exchange = self._queue, self._exchange
                if not self._bound or self.listened or queue is None or exchange is None:
                    continue
                try:
                    async with asyncio.timeout(BIND_TIMEOUT_S):
                        await queue.unbind(exchange, routing_key=TASK_EVENTS_BINDING)
                except BROKER_AWAY as exc:  # the reconnect declares a fresh, unbound queue
                    log.warning("events_unbind_failed", error=repr(exc))
                    continue
                self._bound = False
                self._forget_history()  # it can no longer vouch for having every event

    async def _on_message(self, message: DeliveredMessage) -> None:
        self.deliver(message.body)

    def deliver(self, body: bytes) -> None:
        """An event as it came from the exchange: kept for replay, offered to subscribers."""
        try:
            event = jsonx.loads(body)
            task_id, user_id = str(event["task_id"]), event["user_id"]
            int(event["seq"])
        except (ValueError, KeyError, TypeError):
            log.warning("event_invalid", size=len(body))
            return
        self._remember(task_id, event, len(body))
        if task_id in self._watches and _ends(event):
            for woken in self._watches[task_id]:
                woken.set()
        for key in (user_id, None):
            for sub in self._subscribers.get(key, ()):
                sub.offer(event)

    def _remember(self, task_id: str, event: Event, size: int) -> None:
        history = self._history.get(task_id)
        if history is None:
            history = self._history[task_id] = History()
        else:
            self._history.move_to_end(task_id)
        history.append(event, size)
        self._history_bytes += size
        if len(history.events) > EVENTS_PER_TASK:
            self._history_bytes -= history.drop_oldest()
        while len(self._history) > TASKS_REMEMBERED:
            _, forgotten = self._history.popitem(last=False)
            self._history_bytes -= forgotten.bytes
        # Over the byte bound: the oldest events of the least recently updated tasks go
        # first, one at a time, so a task keeps its most recent events the longest.
        while self._history_bytes > HISTORY_MAX_BYTES:
            oldest_id, oldest = next(iter(self._history.items()))
            self._history_bytes -= oldest.drop_oldest()
            if not oldest.events:
                del self._history[oldest_id]

    def _forget_history(self) -> None:
        self._history.clear()
        self._history_bytes = 0


def _ends(event: Event) -> bool:
    """Whether the event says its task reached a terminal status."""
    task = event.get("task")
    return isinstance(task, dict) and task.get("status") in TERMINAL
