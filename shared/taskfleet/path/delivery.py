"""One delivery, from its body to its settlement: parse → claim → run (or settle unclaimed)."""

from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import structlog
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from taskfleet.broker.connection import Broker
from taskfleet.core import events, jsonx, tracing
from taskfleet.core.constants import QUEUES, QueueSpec, Status
from taskfleet.core.errors import InvalidPayload, StaleClaim
from taskfleet.core.messages import TaskMessage, copy_of, parse_message
from taskfleet.core.metrics import TASKS
from taskfleet.path.commit import DatabaseAway
from taskfleet.path.incoming import Incoming
from taskfleet.path.reasons import DeadLetterCause, RequeueWhy, Tally, Verdict
from taskfleet.path.runner import Runner
from taskfleet.path.settle import Ack, DeadLetter, Requeue, Settlement
from taskfleet.store.pool import UNAVAILABLE
from taskfleet.store.records import Claim, ClaimPolicy
from taskfleet.store.tasks import TaskStore

log = structlog.get_logger("taskfleet.runner")

# What an unclaimed verdict counts as, in the tasks metric, and the status it announces.
VERDICT_TALLY = {
    Verdict.DUPLICATE: Tally.DUPLICATE,
    Verdict.CANCELLED: Tally.CANCELLED,
    Verdict.EXHAUSTED: Tally.DEAD_LETTERED,
    Verdict.THROTTLED: Tally.THROTTLED,
}
VERDICT_STATUS = {Verdict.CANCELLED: Status.CANCELLED, Verdict.EXHAUSTED: Status.FAILED}


def wrong_queue(msg: TaskMessage, queue: str) -> DeadLetter:
    """The dead letter of a message whose type belongs on another queue."""
    return DeadLetter(
        DeadLetterCause.WRONG_QUEUE,
        f"a {msg.type} message on {queue}: its queue is {QUEUES[msg.type].name}",
    )


def for_claim_error(exc: Exception) -> Settlement | None:
    """The settlement of a claim that raised `exc`; None: not the claim's to settle."""
    if isinstance(exc, UNAVAILABLE):
        return Requeue(RequeueWhy.DATABASE_UNAVAILABLE)
    if isinstance(exc, asyncpg.DataError):  # e.g. a NUL in the payload: it can never be stored
        return DeadLetter(
            DeadLetterCause.REJECTED_BY_DATABASE, f"payload rejected by the database: {exc}"
        )
    if isinstance(exc, asyncpg.TransactionRollbackError):  # a deadlock with another claim
        return Requeue(RequeueWhy.DEADLOCK)
    return None


def for_verdict(verdict: Verdict, msg: TaskMessage) -> Settlement:
    """The settlement of a delivery the claim did not give us to run."""
    if verdict is Verdict.MISMATCH:
        return DeadLetter(DeadLetterCause.MISMATCH, "task_id names a task of another user or type")
    if verdict is Verdict.UNKNOWN:
        return DeadLetter(
            DeadLetterCause.UNKNOWN_TASK,
            f"no task {msg.task_id}: only a chat_message creates its task from a message; every"
            " other type is created with its row first",
        )
    if verdict is Verdict.CLAIMED:
        raise ValueError("a claimed delivery is run, not settled unclaimed")
    return Ack()  # settled by the claim itself: another copy has it, or it is over


@dataclass(frozen=True, slots=True)
class Processor:
    """Takes one work queue's deliveries each to its settlement."""

    spec: QueueSpec
    store: TaskStore
    broker: Broker
    runner: Runner
    policy: Callable[[], ClaimPolicy]
    stopping: Callable[[], bool]
    database_away: DatabaseAway

    async def process(self, message: Incoming) -> Settlement:
        """Take one delivery to its settlement: parse, claim, then run it or settle it unclaimed.

        An invalid body is dead-lettered; a claim error that no settlement fits is raised. The
        delivery is one span in the trace its headers carry (its claim and run are children).
        """
        if not tracing.continues(message.headers):  # no span would show: none made
            return await self._process(message)
        with tracing.tracer.start_as_current_span(
            f"process {self.spec.name}",
            context=tracing.context_of(message.headers),
            kind=SpanKind.CONSUMER,
            attributes={"messaging.destination.name": self.spec.name},
        ):
            return await self._process(message)

    async def _process(self, message: Incoming) -> Settlement:
        try:
            msg = parse_message(message.body)
        except InvalidPayload as exc:
            return DeadLetter(DeadLetterCause.INVALID_PAYLOAD, str(exc))
        structlog.contextvars.bind_contextvars(
            task_id=str(msg.task_id), user_id=msg.user_id, queue=self.spec.name, attempt=msg.attempt
        )
        if tracing.recording():
            trace.get_current_span().set_attributes(
                {"taskfleet.task_id": str(msg.task_id), "taskfleet.attempt": msg.attempt}
            )
        if msg.type != self.spec.task_type:  # a message must fit its queue
            return wrong_queue(msg, self.spec.name)
        try:
            with tracing.span("claim"):
                claim = await self.store.claim(
                    msg,
                    redelivered=bool(message.redelivered),
                    queue=self.spec.name,
                    policy=self.policy(),
                    copy=copy_of(message.headers),
                    traceparent=tracing.kept(message.headers),
                )
        except Exception as exc:
            settlement = for_claim_error(exc)
            if settlement is None:
                raise
            if isinstance(exc, UNAVAILABLE):
                await self.database_away(exc)
            return settlement
        verdict = Verdict(claim.verdict)
        if verdict is not Verdict.CLAIMED:
            return await self._unclaimed(msg, claim, verdict)
        if self.stopping():  # the stop began while it was being claimed: not started
            return await self._release(msg, claim)
        with tracing.span("run"):  # the handler, then its commit
            return await self.runner.run(msg, claim)

    async def _unclaimed(self, msg: TaskMessage, claim: Claim, verdict: Verdict) -> Settlement:
        settlement = for_verdict(verdict, msg)
        if not isinstance(settlement, Ack):
            return settlement
        if verdict in VERDICT_TALLY:
            TASKS.labels(self.spec.name, VERDICT_TALLY[verdict]).inc()
        if verdict in VERDICT_STATUS:
            key, body = events.task_updated(
                task_id=msg.task_id,
                task_type=msg.type.value,
                user_id=claim.user_id,
                chat_id=claim.chat_id,
                status=VERDICT_STATUS[verdict],
                seq=events.event_seq(claim.event_seq),
            )
            await self.broker.publish_event(key, jsonx.dumps(body))
        log.info("message_settled", verdict=verdict)
        return settlement

    async def _release(self, msg: TaskMessage, claim: Claim) -> Settlement:
        """Give a task claimed during a stop straight back, its attempt not counted."""
        try:
            await self.store.release(msg.task_id, claim.fence)
        except StaleClaim:
            pass  # another attempt has it: our copy is settled
        except UNAVAILABLE:
            return Requeue(RequeueWhy.DATABASE_UNAVAILABLE)  # the same copy takes it over later
        log.info("task_released", before="start")
        return Ack()
