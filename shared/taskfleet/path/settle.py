"""How a delivery is settled with the broker, decided once and applied in one place.

Processing a delivery ends in a Settlement; `Settler.settle` is the only code that acks, nacks
or dead-letters a message. By the time a settlement is applied, the task's outcome (a retry
or a dead letter being an outbox row of the same transaction) is committed in PostgreSQL.
"""

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import structlog

from taskfleet.broker.connection import Broker
from taskfleet.core.constants import REASON_HEADER, Priority
from taskfleet.core.faults import Faults
from taskfleet.core.metrics import TASKS
from taskfleet.path.incoming import Incoming
from taskfleet.path.reasons import DeadLetterCause, RequeueWhy, Tally

log = structlog.get_logger("taskfleet.runner")

# Runs once the ack is sent: the outcome's live event, which must not announce what a crash
# before the ack would have the next copy settle differently.
AfterAck = Callable[[], Awaitable[None]]

# A dead letter that did not reach the DLQ comes back after this, so as not to spin on it.
HAND_BACK_DELAY_S = 1.0
REASON_MAX = 500


@dataclass(frozen=True, slots=True)
class Ack:
    """Done with the delivery: its outcome is committed, or it needs none."""

    then: AfterAck | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Requeue:
    """Give the delivery back to its queue, after `delay_s` (not to spin on it)."""

    why: RequeueWhy
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Copy the delivery to its queue's DLQ with `reason` (its REASON_HEADER), then ack it."""

    cause: DeadLetterCause
    reason: str


Settlement = Ack | Requeue | DeadLetter


@dataclass(frozen=True, slots=True)
class Settler:
    """Applies settlements to the deliveries of one work queue."""

    broker: Broker
    queue: str  # the work queue's name: the tasks metric's label
    dead_letters: Mapping[Priority, str]  # its DLQ at each level, as published to
    faults: Faults

    async def settle(
        self,
        message: Incoming,
        settlement: Settlement,
        level: Priority = Priority.NORMAL,
    ) -> None:
        """Ack, requeue (after its delay) or dead-letter the delivery, as `settlement` says:
        `level` is the priority of the queue it came from (a dead letter goes to its DLQ)."""
        match settlement:
            case Ack(then=then):
                await self._ack(message)
                if then is not None:
                    await then()
            case Requeue(delay_s=delay_s):
                if delay_s:
                    await asyncio.sleep(delay_s)
                await self._nack(message)
            case DeadLetter():
                await self._dead_letter(message, settlement, level)

    async def _dead_letter(self, message: Incoming, letter: DeadLetter, level: Priority) -> None:
        headers = dict(message.headers or {})
        headers[REASON_HEADER] = letter.reason[:REASON_MAX]
        try:
            await self.broker.publish(
                self.dead_letters[level],
                message.body,
                message_id=message.message_id,
                headers=headers,
            )
        except Exception as exc:
            # Not persisted anywhere: the delivery must stay, so it comes back.
            log.error("hand_back", error=repr(exc))
            await self.settle(
                message, Requeue(RequeueWhy.DEAD_LETTER_FAILED, delay_s=HAND_BACK_DELAY_S)
            )
            return
        TASKS.labels(self.queue, Tally.DEAD_LETTERED).inc()
        log.warning("message_dead_lettered", reason=letter.reason, cause=letter.cause)
        await self._ack(message)

    async def _ack(self, message: Incoming) -> None:
        self.faults.hit("before_ack")
        try:
            await message.ack()
        except Exception as exc:  # channel gone: the broker redelivers; the claim dedupes
            log.warning("ack_failed", error=repr(exc))
        self.faults.hit("after_ack")

    async def _nack(self, message: Incoming) -> None:
        try:
            await message.nack(requeue=True)
        except Exception as exc:  # channel gone: the broker puts it back anyway
            log.warning("nack_failed", error=repr(exc))
