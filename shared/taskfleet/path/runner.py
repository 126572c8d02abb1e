"""Running one claimed delivery: handler → outcome → commit → the delivery's settlement.

Handlers never ack, nack or commit broker state; they get a TaskContext and return a
TaskResult or Waiting, or raise a TaskError.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import structlog

from taskfleet.broker.publisher import Parts
from taskfleet.core import jsonx
from taskfleet.core.constants import Status
from taskfleet.core.errors import StaleClaim, TaskCancelled, TaskError, TaskTimeout, unexpected
from taskfleet.core.faults import Faults
from taskfleet.core.messages import TaskMessage
from taskfleet.core.metrics import INFLIGHT, TASK_DURATION, TASK_WAIT, TASKS, Labelled
from taskfleet.core.payloads import PAYLOADS
from taskfleet.path.attempt import Attempt
from taskfleet.path.commit import Committed, Committer, Outcome, Released, event_fields
from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.path.reasons import Interrupt, Tally
from taskfleet.path.settle import Ack, Settlement
from taskfleet.path.waiting import Waiting, publish_children
from taskfleet.security.fields import Sealer
from taskfleet.store.records import Claim

log = structlog.get_logger("taskfleet.runner")

# Every task touches these series: each looked up once.
_TASKS, _INFLIGHT = Labelled(TASKS), Labelled(INFLIGHT)
_WAIT, _DURATION = Labelled(TASK_WAIT), Labelled(TASK_DURATION)

Handler = Callable[[TaskContext[Any]], Awaitable[TaskResult | Waiting]]


@dataclass(frozen=True, slots=True)
class Runner:
    """Runs the claimed deliveries of one work queue; `inflight` holds those running."""

    parts: Parts
    queue: str
    handler: Handler
    committer: Committer
    faults: Faults
    deadline_s: float
    inflight: dict[UUID, Attempt]
    sealer: Sealer

    def __post_init__(self) -> None:
        _INFLIGHT(self.queue)  # at 0 from the start: utilisation = inflight / slots

    async def run(self, msg: TaskMessage, claim: Claim) -> Settlement:
        """Run the handler on a claimed delivery, commit its outcome, and say how to settle it.

        The commit is shielded: a shutdown cancels the handler, never a commit half done.
        """
        attempt = Attempt.of(
            msg,
            claim,
            deadline=asyncio.get_running_loop().time() + self.deadline_s,
            store=self.parts.store,
            publish=self._publish_event,
            sealer=self.sealer,
        )
        structlog.contextvars.bind_contextvars(attempt=claim.attempts)
        _WAIT(self.queue).observe(max(0.0, time.time() - claim.created_at.timestamp()))
        started = time.monotonic()
        self.inflight[msg.task_id] = attempt
        _INFLIGHT(self.queue).inc()
        try:
            attempt.events.hold()
            attempt.events.status(Status.PROCESSING, attempts=claim.attempts, progress=0.0)
            outcome = sealed(attempt, await self._handle(attempt))
            self.faults.hit("after_handler")
            # Shielded, as arq's finish_job: a shutdown must not cut a commit in half.
            return await asyncio.shield(self._persist(attempt, outcome))
        except BaseException:
            attempt.events.release()
            raise
        finally:
            del self.inflight[msg.task_id]
            _INFLIGHT(self.queue).dec()
            _DURATION(self.queue).observe(time.monotonic() - started)

    async def _handle(self, attempt: Attempt) -> Outcome:
        with attempt.owned_by_current_task():
            ctx: TaskContext[Any] = TaskContext(attempt)
            try:
                self.faults.poison(ctx.input)
                opened(ctx, attempt)
                async with asyncio.timeout(attempt.remaining_s):
                    result = await self.handler(ctx)
                if attempt.cancelled.is_set():
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
                reason = attempt.absorb_interrupt()
                if reason is None:
                    raise
                return interrupted(reason)
            except Exception as exc:
                log.warning("handler_raised", error=repr(exc), exc_info=True)
                return unexpected(exc)

    async def _persist(self, attempt: Attempt, outcome: Outcome) -> Settlement:
        try:
            committed = await self.committer.commit(attempt, outcome)
            self.faults.hit("after_commit")
        except StaleClaim:
            # Another attempt owns the task now; our copy of the message is settled.
            _TASKS(self.queue, Tally.DUPLICATE).inc()
            log.warning("stale_claim", fence=attempt.fence)
            attempt.events.release()
            return Ack()
        if isinstance(committed.outcome, Released):  # its next message is an outbox row now
            log.info("task_released")
            attempt.events.release()
            return Ack()
        if isinstance(committed.outcome, Waiting):  # committed with their outbox rows
            await publish_children(self.parts, committed.outcome, committed.child_rows)
        return after_commit(committed, attempt)

    def _publish_event(self, routing_key: str, body: dict[str, Any]) -> None:
        self.parts.broker.send_event(routing_key, jsonx.dumps(body))


def opened(ctx: TaskContext[Any], attempt: Attempt) -> None:
    """Once, before the handler: its payload typed and its sealed fields in the clear.
    A payload that does not fit its type raises InvalidPayload (the task fails with it)."""
    task_type, task_id, sealer = attempt.message.type, attempt.task_id, attempt.sealer
    payload = PAYLOADS[task_type].parse(ctx.input)
    ctx._payload = sealer.open_payload(task_type, task_id, payload)
    ctx.last_checkpoint = sealer.open_checkpoint(task_type, task_id, ctx.last_checkpoint)


def sealed(attempt: Attempt, outcome: Outcome) -> Outcome:
    """The outcome as it is written (and announced): its sealed fields sealed."""
    task_type, task_id, sealer = attempt.message.type, attempt.task_id, attempt.sealer
    if isinstance(outcome, TaskResult):
        return TaskResult(sealer.seal_output(task_type, task_id, outcome.output), outcome.reply)
    if isinstance(outcome, Waiting):
        return outcome.sealed(sealer, task_type, task_id)
    return outcome


def interrupted(reason: Interrupt) -> Outcome:
    """The outcome of a handler stopped from outside: a cancel is the task's end, a shutdown
    hands the task back uncounted."""
    if reason is Interrupt.CANCEL:
        return TaskCancelled("cancelled while running")
    return Released()


def after_commit(committed: Committed, attempt: Attempt) -> Ack:
    """A committed outcome's delivery is acked; after the ack, its event announces the outcome
    (the attempt's held events go first, or are dropped: a completion's own event says all)."""
    outcome = committed.outcome

    async def announce() -> None:
        if isinstance(outcome, TaskResult):
            attempt.events.drop_held()
        else:
            attempt.events.release()
        attempt.events.advance(committed.seq)
        attempt.events.status(committed.status, **event_fields(outcome, attempt))

    return Ack(then=announce)
