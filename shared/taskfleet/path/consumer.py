"""The one message path of every worker: consume → parse → claim → handle → persist → ack.

This module is the consumer: subscription, handler loops, pause and resume, registration. A
delivery goes to its settlement in path.delivery (it runs in path.runner and commits in
path.commit) and is settled in path.settle: acknowledged only after its outcome is committed
(a retry or a dead letter is an outbox row of that same transaction, durable before the ack)."""

import asyncio
import contextlib
import functools
from dataclasses import dataclass, field
from uuid import UUID

import aio_pika
import asyncpg
import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection

from taskfleet.broker.connection import Broker
from taskfleet.core.constants import CONTROL_EXCHANGE, LEVELS, Priority, QueueSpec
from taskfleet.core.metrics import CONSUMER_PAUSED, WORKER_SLOTS
from taskfleet.core.settings import Settings
from taskfleet.core.supervisor import Supervisor
from taskfleet.path import cancels, levels, outage, watchdog
from taskfleet.path.assembly import assemble
from taskfleet.path.attempt import Attempt
from taskfleet.path.incoming import Incoming
from taskfleet.path.levels import Inbox
from taskfleet.path.policy import Busy, claim_policy
from taskfleet.path.policy import deadline_s as queue_deadline_s
from taskfleet.path.reasons import Interrupt, PauseCause, RequeueWhy
from taskfleet.path.runner import Handler
from taskfleet.path.settle import Requeue, Settlement
from taskfleet.path.slots import Governor, SlotRange, Slots
from taskfleet.runtime import registry
from taskfleet.runtime.registry import Registration
from taskfleet.store.pool import UNAVAILABLE
from taskfleet.store.records import ClaimPolicy, Preload
from taskfleet.store.tasks import TaskStore

__all__ = ["Consumer", "Handler"]

log = structlog.get_logger("taskfleet.runner")

# A bug of ours in the path: the message goes back after this, so as not to spin on it.
BUG_BACKOFF_S = 1.0


@dataclass
class Consumer:
    """Consumes one work queue with `concurrency` handler loops and runs the one path.

    It subscribes to the queue at each priority level; its handler loops take the deliveries
    in the order taskfleet.path.levels decides (higher levels first, none starved).

    It registers in the worker registry (its row's id is the holder of what it claims) and
    takes no deliveries while paused: by the memory guard, or while its database is away.
    """

    settings: Settings
    spec: QueueSpec
    handler: Handler
    store: TaskStore
    broker: Broker
    supervisor: Supervisor
    concurrency: int = 8  # slots at start (and the least when they adapt)
    max_concurrency: int | None = None  # the most they may adapt to (taskfleet.path.slots)
    preload: Preload | None = None
    inflight: dict[UUID, Attempt] = field(default_factory=dict)
    registration: Registration = field(init=False)
    _inbox: Inbox = field(default_factory=Inbox)
    _channel: AbstractChannel | None = None
    _consumer_tags: dict[Priority, str] = field(default_factory=dict)
    _stopping: bool = False
    _pauses: dict[PauseCause, str] = field(default_factory=dict)  # cause -> reason
    _busy: Busy = field(default_factory=Busy)
    _loops: int = 0
    _resubscribing: asyncio.Lock = field(default_factory=asyncio.Lock)  # see path.watchdog

    def __post_init__(self) -> None:
        self._slots = Slots(SlotRange(self.concurrency, self.max_concurrency or self.concurrency))
        self.registration = Registration(
            worker=self.spec.worker,
            queue=self.queue,
            concurrency=self.concurrency,
            heartbeat_s=self.settings.worker_heartbeat_s,
        )
        self._claim_policy = claim_policy(
            self.settings, self.spec, self.preload, self.registration.id
        )
        self._queues = levels.level_queues(self.settings, self.spec.name)
        self._settler, self._processor = assemble(self)

    @property
    def queue(self) -> str:
        """The work queue's broker name (with the namespace prefix), its normal level's."""
        return self.settings.queue(self.spec.name)

    @property
    def consuming(self) -> bool:
        """Whether a consumer is subscribed on an open channel now (readiness, the watchdog)."""
        channel = self._channel
        return len(self._consumer_tags) == len(LEVELS) and bool(channel and not channel.is_closed)

    @property
    def stopping(self) -> bool:
        """Whether its stop has begun (a delivery claimed since is released, not run)."""
        return self._stopping

    @property
    def slots(self) -> int:
        """The deliveries it may run at once now (between its concurrency and its max)."""
        return self._slots.allowed

    @property
    def paused(self) -> bool:
        """Whether deliveries are paused for any cause (memory, database); see pause_reasons."""
        return bool(self._pauses)

    @property
    def pause_reasons(self) -> dict[str, str]:
        """Why no deliveries are taken now, by cause (`memory`, `database`): for /readyz."""
        return {cause.value: reason for cause, reason in self._pauses.items()}

    def policy(self) -> ClaimPolicy:
        """The rules a claim applies here: fixed for the consumer's life, so built once."""
        return self._claim_policy

    @property
    def deadline_s(self) -> float:
        """Seconds an attempt of this queue may run: TASK_DEADLINE_S, else the queue's own."""
        return queue_deadline_s(self.settings, self.spec)

    async def start(self) -> None:
        """Register, subscribe on every (re)connect, start the handler loops and the watchdog."""
        # Claims name this row as their holder: it exists before the first claim.
        await registry.beat(self.store.pool, self.registration, (), {})
        self.supervisor.spawn(
            f"{self.spec.worker}-heartbeat",
            lambda: registry.heartbeat(
                self.store.pool,
                self.registration,
                lambda: list(self.inflight),
                self.supervisor.running,
                lambda: self.pause_reasons,
            ),
        )
        await self.broker.subscribe(self._subscribe)
        await self.broker.subscribe(self._subscribe_control)
        self._add_loops(self.concurrency)
        if self._slots.range.adaptive:
            governor = Governor(
                self._slots, self._busy.count, self._inbox.size, self._resize, self.spec.name
            )
            self.supervisor.spawn(f"{self.spec.worker}-slots", governor.run)
        watch = functools.partial(watchdog.watch, self.broker, self._lost, self._resubscribing)
        self.supervisor.spawn(f"{self.spec.worker}-watchdog", watch)
        self.supervisor.spawn(
            f"{self.spec.worker}-cancel-poll", lambda: cancels.poll(self.store, self.inflight)
        )

    async def stop(self, grace_s: float) -> None:
        """Stop consuming and hand back at once what was prefetched; let in-flight tasks
        finish within grace_s, then hand them back uncounted. Then say so in the registry."""
        self._stopping = True
        await self._cancel_consumer()
        handed_back = await self._hand_back_inbox()
        log.info("consumer_stopping", inflight=len(self.inflight), handed_back=handed_back)
        if not await self._busy.wait_idle(grace_s):
            log.warning("grace_expired", inflight=len(self.inflight))
            for attempt in list(self.inflight.values()):
                attempt.interrupt(Interrupt.SHUTDOWN)
            await self._busy.wait_idle(10)
        await self.supervisor.stop(f"{self.spec.worker}-heartbeat")
        with contextlib.suppress(*UNAVAILABLE, asyncpg.PostgresError):
            await registry.mark_stopped(self.store.pool, self.registration)

    # -- subscription ------------------------------------------------------------------------

    async def _subscribe(self, connection: AbstractConnection) -> None:
        if self._stopping:
            return
        channel = await self.broker.channel(connection, publisher_confirms=False)
        # Per consumer (one a level): a backlog of one level leaves the others their prefetch.
        await channel.set_qos(prefetch_count=self.slots * 2)
        self._channel = channel  # strong references: aio-pika holds queues weakly
        self._consumer_tags = {}
        if not self._pauses:
            await self._consume()

    async def _consume(self) -> None:
        assert self._channel is not None
        self._consumer_tags = await levels.subscribe(self._channel, self._queues, self._inbox)
        log.info("consuming", queue=self.queue, concurrency=self.slots)

    def _add_loops(self, upto: int) -> None:
        for i in range(self._loops, upto):
            self.supervisor.spawn(f"{self.spec.worker}-loop-{i}", functools.partial(self._loop, i))
        self._loops = max(self._loops, upto)

    async def _resize(self, slots: int) -> None:
        """Allow `slots` loops; subscribe again with the prefetch that fits them (RabbitMQ sets
        a prefetch on consumers made after it). A channel lost meanwhile is the watchdog's."""
        self._slots.allow(slots)
        self._add_loops(slots)
        WORKER_SLOTS.labels(self.spec.name).set(slots)
        channel = self._channel
        with contextlib.suppress(aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError):
            async with self._resubscribing:  # not lost meanwhile: the watchdog waits
                if channel and not channel.is_closed and self._consumer_tags and not self.paused:
                    await channel.set_qos(prefetch_count=slots * 2)
                    await self._cancel_consumer()
                    if not (self._pauses or self._stopping):  # neither came while it cancelled
                        await self._consume()
                    if self._pauses or self._stopping:  # one came while it subscribed
                        await self._cancel_consumer()

    async def pause(self, reason: str, *, cause: PauseCause = PauseCause.MEMORY) -> None:
        """Take no new deliveries while `cause` holds: cancel the consumer and hand back what
        was prefetched but not started. In-flight tasks go on."""
        first = not self._pauses
        self._pauses[cause] = reason
        if cause is PauseCause.DATABASE:
            CONSUMER_PAUSED.labels(self.spec.name).set(1)
        if not first:
            return
        await self._cancel_consumer()
        handed_back = await self._hand_back_inbox()
        log.warning("consumer_paused", cause=cause, reason=reason, handed_back=handed_back)

    async def resume(self, *, cause: PauseCause = PauseCause.MEMORY) -> None:
        """`cause` no longer holds; consume again once no other cause holds either."""
        async with self._resubscribing:  # not lost meanwhile: the watchdog waits
            if self._pauses.pop(cause, None) is None:
                return
            if cause is PauseCause.DATABASE:
                CONSUMER_PAUSED.labels(self.spec.name).set(0)
            if self._pauses:
                return
            if self._channel is not None and not self._channel.is_closed and not self._stopping:
                await self._consume()
        log.info("consumer_resumed", cause=cause)

    async def _hand_back_inbox(self) -> int:
        """Return every prefetched, unstarted delivery to the queue now."""
        waiting = self._inbox.drain()
        for message in waiting:
            await self._settler.settle(message, Requeue(RequeueWhy.NOT_TAKING))
        return len(waiting)

    async def _cancel_consumer(self) -> None:
        tags, self._consumer_tags = self._consumer_tags, {}
        await levels.unsubscribe(self._channel, self._queues, tags)

    async def _subscribe_control(self, connection: AbstractConnection) -> None:
        exchange = self.settings.queue(CONTROL_EXCHANGE)
        await cancels.subscribe(self.broker, connection, exchange, self.inflight)

    def _lost(self) -> bool:  # up, and neither stopping nor paused, yet not subscribed
        return self.broker.ready and not (self._stopping or self._pauses or self.consuming)

    # -- our database's outages -------------------------------------------------------------

    async def database_away(self, exc: BaseException) -> None:
        """Stop taking deliveries until the database answers again (taskfleet.path.outage)."""
        if PauseCause.DATABASE not in self._pauses:
            await self.pause(f"database unavailable: {exc!r}"[:300], cause=PauseCause.DATABASE)
            name = f"{self.spec.worker}-database-probe"
            resume = functools.partial(self.resume, cause=PauseCause.DATABASE)
            outage.spawn_probe(self.supervisor, name, self.store.pool, resume)

    # -- the path ----------------------------------------------------------------------------

    async def _loop(self, index: int) -> None:
        while True:
            await self._slots.turn(index)
            level, message = await self._inbox.get()
            if message.channel.is_closed:
                continue  # its channel died: the broker has already put it back
            if self._stopping or self._pauses:  # arrived after we stopped taking any
                await self._settler.settle(message, Requeue(RequeueWhy.NOT_TAKING))
                continue
            with self._busy.one():  # in flight from here: a stop waits for its claim too
                try:
                    settlement = await self._process(message)
                    # Not shielded (a task a message, ~5 µs): once its handler returned, nothing
                    # cancels this loop (an interrupt cancels a running handler only, and a stop
                    # waits for what is busy); a lost ack is a redelivery the claim settles.
                    await self._settler.settle(message, settlement, level)
                except Exception:  # a bug of ours in settling: keep the loop
                    log.exception("settle_failed")
                finally:
                    structlog.contextvars.clear_contextvars()

    async def _process(self, message: Incoming) -> Settlement:
        try:
            return await self._processor.process(message)
        except Exception:  # a bug of ours: keep the message, keep the loop
            log.exception("process_failed")
            return Requeue(RequeueWhy.BUG, delay_s=BUG_BACKOFF_S)
