"""The one message path of every worker: consume → parse → claim → handle → persist → ack.

Exactly this module owns the path. Handlers never ack, nack or commit broker state; they get
a TaskContext and return a TaskResult or raise a TaskError. A message is acknowledged only
after its outcome is committed in PostgreSQL (a retry or a dead letter is an outbox row of
that same transaction, so it is durable before the ack too).
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg
import orjson
import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from taskfleet.broker.connection import Broker
from taskfleet.core import events, jsonx
from taskfleet.core.constants import CONTROL_EXCHANGE, QUEUES, REASON_HEADER, QueueSpec, dlq_name
from taskfleet.core.errors import (
    InvalidPayload,
    PermanentError,
    StaleClaim,
    TaskCancelled,
    TaskError,
    TaskTimeout,
    unexpected,
)
from taskfleet.core.faults import Faults
from taskfleet.core.messages import TaskMessage, copy_of, parse_message
from taskfleet.core.metrics import CONSUMER_PAUSED, INFLIGHT, TASK_DURATION, TASK_WAIT, TASKS
from taskfleet.core.retry import Backoff, decide
from taskfleet.core.settings import Settings
from taskfleet.core.supervisor import Supervisor
from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.path.waiting import Waiting, publish_children
from taskfleet.runtime import registry
from taskfleet.runtime.registry import Registration
from taskfleet.store.pool import UNAVAILABLE
from taskfleet.store.records import Claim, ClaimPolicy, Preload
from taskfleet.store.tasks import TaskStore

log = structlog.get_logger("taskfleet.runner")

Handler = Callable[[TaskContext], Awaitable[TaskResult | Waiting]]

CANCEL_POLL_S = 1.0
# While the database is away: the longest wait between two probes (exponential, jittered)
# and between two tries of an outcome's commit.
DATABASE_PROBE_MAX_S = 5.0
# A bug of ours in the path: the message goes back after this, so as not to spin on it.
BUG_BACKOFF_S = 1.0


@dataclass(frozen=True, slots=True)
class Released:
    """The attempt was interrupted by shutdown: hand the task back, do not count it."""


Outcome = TaskResult | Waiting | TaskError | TaskCancelled | Released


@dataclass(frozen=True, slots=True)
class Committed:
    """What an outcome's commit wrote: the status, its event_seq, the outcome it stored (a
    failure in place of an output the database refused) and the children's outbox rows."""

    status: str
    seq: int
    outcome: Outcome
    child_rows: list[int] = field(default_factory=list)


@dataclass
class Consumer:
    """Consumes one work queue with `concurrency` handler loops and runs the one path.

    It registers in the worker registry (its row's id is the holder of what it claims) and
    takes no deliveries while paused: by the memory guard, or while its database is away.
    """

    settings: Settings
    spec: QueueSpec
    handler: Handler
    store: TaskStore
    broker: Broker
    supervisor: Supervisor
    concurrency: int = 8
    preload: Preload | None = None
    inflight: dict[UUID, TaskContext] = field(default_factory=dict)
    registration: Registration = field(init=False)
    _inbox: asyncio.Queue[AbstractIncomingMessage] = field(default_factory=asyncio.Queue)
    _channel: AbstractChannel | None = None
    _consumer_tag: str | None = None
    _stopping: bool = False
    _pauses: dict[str, str] = field(default_factory=dict)  # cause -> reason
    _busy: int = 0  # messages taken from the inbox and not yet settled
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._idle.set()
        self._faults = Faults.parse(self.settings.faults)
        self.registration = Registration(
            worker=self.spec.worker, queue=self.queue, concurrency=self.concurrency,
            heartbeat_s=self.settings.worker_heartbeat_s,
        )  # fmt: skip

    @property
    def queue(self) -> str:
        return self.settings.queue(self.spec.name)

    @property
    def consuming(self) -> bool:
        return (
            self._consumer_tag is not None
            and self._channel is not None
            and not self._channel.is_closed
        )

    @property
    def paused(self) -> bool:
        return bool(self._pauses)

    @property
    def pause_reasons(self) -> dict[str, str]:
        """Why no deliveries are taken now, by cause (`memory`, `database`): for /readyz."""
        return dict(self._pauses)

    def policy(self) -> ClaimPolicy:
        return ClaimPolicy(
            max_attempts=self.settings.max_attempts or self.spec.max_attempts,
            user_limit=self.settings.user_concurrency,
            throttle_s=self.settings.throttle_delay_s,
            preload=self.preload,
            holder=self.registration.id,
            deadline_s=self.deadline_s,
        )

    @property
    def deadline_s(self) -> float:
        return self.settings.task_deadline_s or self.spec.deadline_s

    def backoff(self) -> Backoff:
        return Backoff(
            self.settings.retry_base_s or self.spec.retry_base_s,
            self.settings.retry_max_s or self.spec.retry_max_s,
        )

    async def start(self) -> None:
        """Register, subscribe on every (re)connect, start the handler loops and the watchdog."""
        # Claims name this row as their holder: it exists before the first claim.
        await registry.beat(self.store.pool, self.registration, (), {})
        self.supervisor.spawn(f"{self.spec.worker}-heartbeat", lambda: registry.heartbeat(
            self.store.pool, self.registration, lambda: list(self.inflight),
            self.supervisor.running,
        ))  # fmt: skip
        await self.broker.subscribe(self._subscribe)
        await self.broker.subscribe(self._subscribe_control)
        for i in range(self.concurrency):
            self.supervisor.spawn(f"{self.spec.worker}-loop-{i}", self._loop)
        self.supervisor.spawn(f"{self.spec.worker}-watchdog", self._watchdog)
        self.supervisor.spawn(f"{self.spec.worker}-cancel-poll", self._poll_cancels)

    async def stop(self, grace_s: float) -> None:
        """Stop consuming and hand back at once what was prefetched; let in-flight tasks
        finish within grace_s, then hand them back uncounted. Then say so in the registry."""
        self._stopping = True
        await self._cancel_consumer()
        handed_back = await self._hand_back_inbox()
        log.info("consumer_stopping", inflight=len(self.inflight), handed_back=handed_back)
        if not await self._wait_idle(grace_s):
            log.warning("grace_expired", inflight=len(self.inflight))
            for ctx in list(self.inflight.values()):
                ctx.interrupt("shutdown")
            await self._wait_idle(10)
        await self.supervisor.stop(f"{self.spec.worker}-heartbeat")
        with contextlib.suppress(*UNAVAILABLE, asyncpg.PostgresError):
            await registry.mark_stopped(self.store.pool, self.registration)

    async def _wait_idle(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def _enter(self) -> None:
        self._busy += 1
        self._idle.clear()

    def _leave(self) -> None:
        self._busy -= 1
        if not self._busy:
            self._idle.set()

    # -- subscription ------------------------------------------------------------------------

    async def _subscribe(self, connection: AbstractConnection) -> None:
        if self._stopping:
            return
        channel = await self.broker.channel(connection, publisher_confirms=False)
        await channel.set_qos(prefetch_count=self.concurrency * 2)
        self._channel = channel  # strong references: aio-pika holds queues weakly
        self._consumer_tag = None
        if not self._pauses:
            await self._consume()

    async def _consume(self) -> None:
        assert self._channel is not None
        queue = await self._channel.get_queue(self.queue, ensure=False)
        self._consumer_tag = await queue.consume(self._inbox.put)
        log.info("consuming", queue=self.queue, concurrency=self.concurrency)

    async def pause(self, reason: str, *, cause: str = "memory") -> None:
        """Take no new deliveries while `cause` holds: cancel the consumer and hand back what
        was prefetched but not started. In-flight tasks go on."""
        first = not self._pauses
        self._pauses[cause] = reason
        if cause == "database":
            CONSUMER_PAUSED.labels(self.spec.name).set(1)
        if not first:
            return
        await self._cancel_consumer()
        handed_back = await self._hand_back_inbox()
        log.warning("consumer_paused", cause=cause, reason=reason, handed_back=handed_back)

    async def resume(self, *, cause: str = "memory") -> None:
        """`cause` no longer holds; consume again once no other cause holds either."""
        if self._pauses.pop(cause, None) is None:
            return
        if cause == "database":
            CONSUMER_PAUSED.labels(self.spec.name).set(0)
        if self._pauses:
            return
        if self._channel is not None and not self._channel.is_closed and not self._stopping:
            await self._consume()
        log.info("consumer_resumed", cause=cause)

    async def _hand_back_inbox(self) -> int:
        """Return every prefetched, unstarted delivery to the queue now."""
        handed_back = 0
        while not self._inbox.empty():
            await self._nack(self._inbox.get_nowait(), requeue=True)
            handed_back += 1
        return handed_back

    async def _cancel_consumer(self) -> None:
        if self.consuming:
            assert self._channel is not None
            assert self._consumer_tag is not None
            try:
                queue = await self._channel.get_queue(self.queue, ensure=False)
                await queue.cancel(self._consumer_tag)
            except Exception as exc:  # the channel may be gone already
                log.warning("consumer_cancel_failed", error=repr(exc))
        self._consumer_tag = None

    async def _subscribe_control(self, connection: AbstractConnection) -> None:
        channel = await self.broker.channel(connection, publisher_confirms=False)
        exchange = await channel.get_exchange(self.settings.queue(CONTROL_EXCHANGE))
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange)
        await queue.consume(self._on_control, no_ack=True)

    async def _on_control(self, message: AbstractIncomingMessage) -> None:
        try:
            command = orjson.loads(message.body)
            task_id = UUID(str(command["task_id"]))
        except (orjson.JSONDecodeError, KeyError, ValueError, TypeError):
            log.warning("control_message_invalid", body=message.body[:200])
            return
        ctx = self.inflight.get(task_id)
        if command.get("type") == "cancel" and ctx is not None:
            log.info("cancel_received", task_id=str(task_id))
            ctx.interrupt("cancel")

    async def _watchdog(self) -> None:
        """Catch a connection that is up but whose consumer is gone, and reconnect it."""
        while True:
            await asyncio.sleep(5)
            if self.broker.ready and not (self._stopping or self._pauses or self.consuming):
                self.broker.reconnect("consumer lost")

    async def _poll_cancels(self) -> None:
        """The database's cancel flag reaches a running handler even if the control message
        was lost and the handler never reports progress."""
        while True:
            await asyncio.sleep(CANCEL_POLL_S)
            if not self.inflight:
                continue
            try:
                cancelled = await self.store.cancel_requested(list(self.inflight))
            except UNAVAILABLE:
                continue  # the consumer's own probe watches the database
            for task_id in cancelled:
                ctx = self.inflight.get(task_id)
                if ctx is not None:
                    ctx.interrupt("cancel")

    # -- our database's outages -------------------------------------------------------------

    async def _database_away(self, exc: BaseException) -> None:
        """Stop taking deliveries until the database answers again (no nack loop: the
        messages wait in the queue, where the broker's delivery limit does not count them)."""
        if "database" in self._pauses:
            return
        await self.pause(f"database unavailable: {exc!r}"[:300], cause="database")
        name = f"{self.spec.worker}-database-probe"
        if not self.supervisor.running().get(name):
            self.supervisor.spawn(name, self._probe_database, restart=False)

    async def _probe_database(self) -> None:
        """Probe with exponential backoff and jitter; resume once the database answers.

        Any error is "not back yet": a probe that gave up would leave the consumer paused."""
        since = time.monotonic()
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(Exception),
            wait=wait_exponential_jitter(multiplier=0.1, max=DATABASE_PROBE_MAX_S, jitter=0.5),
            before_sleep=lambda state: log.info(
                "database_probe_failed",
                error=repr(state.outcome.exception()) if state.outcome else None,
            ),
        ):
            with attempt:
                await self.store.pool.fetchval("SELECT 1", timeout=2)
        log.info("database_back", away_s=round(time.monotonic() - since, 1))
        await self.resume(cause="database")

    # -- the path ----------------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            message = await self._inbox.get()
            if message.channel.is_closed:
                continue  # its channel died: the broker has already put it back
            if self._stopping or self._pauses:
                await self._nack(message, requeue=True)  # arrived after we stopped taking any
                continue
            self._enter()  # in flight from here: a stop waits for its claim too
            try:
                await self.process(message)
            except Exception:  # a bug of ours: keep the message, keep the loop
                log.exception("process_failed")
                await asyncio.sleep(BUG_BACKOFF_S)
                await self._nack(message, requeue=True)
            finally:
                self._leave()
                structlog.contextvars.clear_contextvars()

    async def process(self, message: AbstractIncomingMessage) -> None:
        try:
            msg = parse_message(message.body)
        except InvalidPayload as exc:
            await self._dead_letter_raw(message, str(exc))
            return
        structlog.contextvars.bind_contextvars(
            task_id=str(msg.task_id), user_id=msg.user_id, queue=self.spec.name, attempt=msg.attempt
        )
        if msg.type != self.spec.task_type:  # a message must fit its queue
            await self._dead_letter_raw(
                message, f"a {msg.type} message on {self.spec.name}: its queue is "
                f"{QUEUES[msg.type].name}",
            )  # fmt: skip
            return
        try:
            claim = await self.store.claim(
                msg, redelivered=bool(message.redelivered), queue=self.spec.name,
                policy=self.policy(), copy=copy_of(message.headers),
            )  # fmt: skip
        except UNAVAILABLE as exc:
            await self._nack(message, requeue=True)
            await self._database_away(exc)
            return
        except asyncpg.DataError as exc:  # e.g. a NUL in the payload: it can never be stored
            await self._dead_letter_raw(message, f"payload rejected by the database: {exc}")
            return
        except asyncpg.TransactionRollbackError:  # a deadlock with another claim: again
            await self._nack(message, requeue=True)
            return
        if claim.verdict != "claimed":
            await self._settle_unclaimed(message, msg, claim)
        elif self._stopping:  # the stop began while it was being claimed: not started
            await self._release_claim(message, msg, claim)
        else:
            await self._run(message, msg, claim)

    async def _settle_unclaimed(
        self, message: AbstractIncomingMessage, msg: TaskMessage, claim: Claim
    ) -> None:
        if claim.verdict == "mismatch":
            await self._dead_letter_raw(message, "task_id names a task of another user or type")
            return
        if claim.verdict == "unknown":
            await self._dead_letter_raw(
                message, f"no task {msg.task_id}: only a chat_message creates its task from a "
                "message; every other type is created with its row first",
            )  # fmt: skip
            return
        outcome = {"duplicate": "duplicate", "cancelled": "cancelled", "exhausted": "dead_lettered"}
        if claim.verdict in outcome:
            TASKS.labels(self.spec.name, outcome[claim.verdict]).inc()
        if claim.verdict in ("cancelled", "exhausted"):
            status = "cancelled" if claim.verdict == "cancelled" else "failed"
            key, body = events.task_updated(
                task_id=msg.task_id, task_type=msg.type.value, user_id=claim.user_id,
                chat_id=claim.chat_id, status=status, seq=events.event_seq(claim.event_seq),
            )  # fmt: skip
            await self.broker.publish_event(key, jsonx.dumps(body))
        log.info("message_settled", verdict=claim.verdict)
        await self._ack(message)

    async def _release_claim(
        self, message: AbstractIncomingMessage, msg: TaskMessage, claim: Claim
    ) -> None:
        """Give a task claimed during a stop straight back, its attempt not counted."""
        try:
            await self.store.release(msg.task_id, claim.fence)
        except StaleClaim:
            pass  # another attempt has it: our copy is settled
        except UNAVAILABLE:
            await self._nack(message, requeue=True)  # the same copy takes it over later
            return
        log.info("task_released", before="start")
        await self._ack(message)

    async def _run(self, message: AbstractIncomingMessage, msg: TaskMessage, claim: Claim) -> None:
        loop = asyncio.get_running_loop()
        ctx = TaskContext(
            message=msg, input=claim.input, user_id=claim.user_id, chat_id=claim.chat_id,
            attempt=claim.attempts, max_attempts=claim.max_attempts, fence=claim.fence,
            deadline=loop.time() + self.deadline_s, last_checkpoint=claim.checkpoint,
            store=self.store, publish=self._publish_event, row_seq=claim.event_seq,
            message_id=claim.message_id, preloaded=claim.preloaded,
        )  # fmt: skip
        structlog.contextvars.bind_contextvars(attempt=claim.attempts)
        TASK_WAIT.labels(self.spec.name).observe(
            max(0.0, time.time() - claim.created_at.timestamp())
        )
        started = time.monotonic()
        self.inflight[msg.task_id] = ctx
        INFLIGHT.labels(self.spec.name).inc()
        try:
            ctx.hold()
            await ctx.emit_status("processing", attempts=claim.attempts, progress=0.0)
            outcome = await self._handle(ctx)
            self._faults.hit("after_handler")
            # Shielded, as arq's finish_job: a shutdown must not cut a commit in half.
            await asyncio.shield(self._persist(message, ctx, outcome))
        finally:
            ctx.release()
            del self.inflight[msg.task_id]
            INFLIGHT.labels(self.spec.name).dec()
            TASK_DURATION.labels(self.spec.name).observe(time.monotonic() - started)

    async def _handle(self, ctx: TaskContext) -> Outcome:
        ctx._owner = asyncio.current_task()
        try:
            self._faults.poison(ctx.input)
            async with asyncio.timeout(ctx.remaining_s):
                result = await self.handler(ctx)
            if ctx.cancelled.is_set():
                # The user asked first: a handler that noticed and returned is cancelled too.
                return TaskCancelled("cancelled while running")
            return result
        except TaskError as exc:
            return exc
        except TaskCancelled as exc:
            return exc
        except TimeoutError:
            return TaskTimeout(f"deadline of {self.deadline_s:g}s exceeded")
        except asyncio.CancelledError:
            if ctx.interrupt_reason is None:
                raise
            ctx._owner.uncancel()  # type: ignore[union-attr]
            if ctx.interrupt_reason == "cancel":
                return TaskCancelled("cancelled while running")
            return Released()
        except Exception as exc:
            log.warning("handler_raised", error=repr(exc), exc_info=True)
            return unexpected(exc)
        finally:
            ctx._owner = None

    async def _persist(
        self, message: AbstractIncomingMessage, ctx: TaskContext, outcome: Outcome
    ) -> None:
        try:
            committed = await self._commit_durably(ctx, outcome)
            self._faults.hit("after_commit")
        except StaleClaim:
            # Another attempt owns the task now; our copy of the message is settled.
            TASKS.labels(self.spec.name, "duplicate").inc()
            log.warning("stale_claim", fence=ctx.fence)
            await self._ack(message)
            return
        outcome = committed.outcome
        if isinstance(outcome, Released):  # its next message is an outbox row now
            await self._ack(message)
            log.info("task_released")
            return
        if isinstance(outcome, Waiting):  # committed with their outbox rows: publish them now
            await publish_children(self, outcome, committed.child_rows)
        await self._ack(message)
        if isinstance(outcome, TaskResult):
            ctx.drop_held()
        else:
            ctx.release()
        ctx._advance(committed.seq)
        await ctx.emit_status(committed.status, **_event_fields(outcome, ctx))

    async def _commit_durably(self, ctx: TaskContext, outcome: Outcome) -> Committed:
        """Commit the outcome, waiting out an outage of our database: the delivery stays
        unacknowledged meanwhile (it is still ours), and no new one is taken."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(UNAVAILABLE),
            wait=wait_exponential_jitter(multiplier=0.1, max=DATABASE_PROBE_MAX_S, jitter=0.5),
            reraise=True,
        ):
            with attempt:
                try:
                    return await self._commit_storable(ctx, outcome)
                except UNAVAILABLE as exc:
                    log.warning("outcome_commit_waiting", error=repr(exc))
                    await self._database_away(exc)
                    raise
        raise AssertionError("unreachable")

    async def _commit_storable(self, ctx: TaskContext, outcome: Outcome) -> Committed:
        """An outcome the database refuses as data (a NUL in the output) is the task's
        error: the task fails with it, rather than come back as if its worker were lost."""
        try:
            return await self._commit(ctx, outcome)
        except asyncpg.DataError as exc:
            if isinstance(outcome, TaskError):
                raise  # our own error record: a bug of ours, not the task's
            log.warning("outcome_unstorable", error=str(exc))
            failure = PermanentError(f"the outcome cannot be stored: {exc}",
                                     code="unstorable_output")  # fmt: skip
            return await self._commit(ctx, failure)

    async def _commit(self, ctx: TaskContext, outcome: Outcome) -> Committed:
        """Write the outcome, fenced. Returns the status it committed and its event_seq."""
        task_id, fence, queue = ctx.task_id, ctx.fence, self.spec.name
        if isinstance(outcome, TaskResult):
            seq = await self.store.complete(task_id, fence, outcome.output, outcome.reply)
            self._count("completed", "task_completed")
            return Committed("completed", seq, outcome)
        if isinstance(outcome, TaskCancelled):
            seq = await self.store.cancelled(task_id, fence, ctx.partial_output)
            self._count("cancelled", "task_cancelled")
            return Committed("cancelled", seq, outcome)
        if isinstance(outcome, Released):
            return Committed("queued", await self.store.release(task_id, fence), outcome)
        if isinstance(outcome, Waiting):
            seq, rows = await self.store.wait(
                task_id, fence, outcome.state, outcome.rows(), self.settings.outbox_grace_s
            )
            log.info("task_waiting", children=len(outcome.children))
            return Committed("waiting", seq, outcome, rows)
        decision = decide(outcome, attempt=ctx.attempt, max_attempts=ctx.max_attempts,
                          backoff=self.backoff())  # fmt: skip
        if decision.retry:
            seq = await self.store.retry(task_id, fence, outcome.as_dict(), queue, decision.delay_s)
            self._count("retried", "task_retry_scheduled", error=outcome.code,
                        delay_s=round(decision.delay_s, 3))  # fmt: skip
            return Committed("retrying", seq, outcome)
        seq = await self.store.fail(task_id, fence, outcome.as_dict(), queue, decision.reason)
        self._count("failed", "task_failed", error=outcome.code, message=str(outcome))
        TASKS.labels(queue, "dead_lettered").inc()
        return Committed("failed", seq, outcome)

    def _count(self, outcome: str, event: str, **fields: Any) -> None:
        TASKS.labels(self.spec.name, outcome).inc()
        log.info(event, **fields)

    # -- settling the delivery --------------------------------------------------------------

    async def _dead_letter_raw(self, message: AbstractIncomingMessage, reason: str) -> None:
        """A body we cannot even claim: copy it to the DLQ with the reason, then ack it."""
        headers = dict(message.headers or {})
        headers[REASON_HEADER] = reason[:500]
        try:
            await self.broker.publish(
                self.settings.queue(dlq_name(self.spec.name)),
                message.body,
                message_id=message.message_id,
                headers=headers,
            )
        except Exception as exc:
            await self._hand_back(message, exc)
            return
        TASKS.labels(self.spec.name, "dead_lettered").inc()
        log.warning("message_dead_lettered", reason=reason)
        await self._ack(message)

    async def _hand_back(self, message: AbstractIncomingMessage, exc: BaseException) -> None:
        """We could not persist: do not ack. Wait a little so as not to spin, then requeue."""
        log.error("hand_back", error=repr(exc))
        await asyncio.sleep(1.0)
        await self._nack(message, requeue=True)

    async def _ack(self, message: AbstractIncomingMessage) -> None:
        self._faults.hit("before_ack")
        try:
            await message.ack()
        except Exception as exc:  # channel gone: the broker redelivers; the claim dedupes
            log.warning("ack_failed", error=repr(exc))
        self._faults.hit("after_ack")

    async def _nack(self, message: AbstractIncomingMessage, *, requeue: bool) -> None:
        try:
            await message.nack(requeue=requeue)
        except Exception as exc:
            log.warning("nack_failed", error=repr(exc))

    def _publish_event(self, routing_key: str, body: dict[str, Any]) -> None:
        self.broker.send_event(routing_key, jsonx.dumps(body))


def _event_fields(outcome: Outcome, ctx: TaskContext) -> dict[str, Any]:
    """What a client needs of the task after this outcome, besides its status."""
    if isinstance(outcome, TaskResult):
        return {"progress": 1.0, "output": outcome.output, "attempts": ctx.attempt}
    if isinstance(outcome, TaskError):
        return {"error": outcome.as_dict(), "attempts": ctx.attempt}
    if isinstance(outcome, TaskCancelled):
        return {"partial_output": ctx.partial_output, "attempts": ctx.attempt}
    return {"attempts": ctx.attempt}
