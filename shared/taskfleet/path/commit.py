"""An attempt's outcome and its one fenced commit in PostgreSQL.

A retry or a dead letter is an outbox row of that same transaction, and a waiting task's
children are too: once the commit returns, the delivery may be acknowledged.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from taskfleet.core.constants import Status
from taskfleet.core.errors import PermanentError, TaskCancelled, TaskError
from taskfleet.core.metrics import TASKS, Labelled
from taskfleet.core.retry import Backoff, decide
from taskfleet.path import outage
from taskfleet.path.attempt import Attempt
from taskfleet.path.context import TaskResult
from taskfleet.path.reasons import Tally
from taskfleet.path.waiting import Waiting
from taskfleet.store.pool import UNAVAILABLE
from taskfleet.store.tasks import TaskStore

log = structlog.get_logger("taskfleet.runner")
_TASKS = Labelled(TASKS)  # looked up once a series: every task counts its outcome


@dataclass(frozen=True, slots=True)
class Released:
    """The attempt was interrupted by shutdown: hand the task back, do not count it."""


Outcome = TaskResult | Waiting | TaskError | TaskCancelled | Released

# Told of each failed try while the database is away, with its error: pause the consumer.
DatabaseAway = Callable[[BaseException], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Committed:
    """What an outcome's commit wrote: the status, its event_seq, the outcome it stored (a
    failure in place of an output the database refused) and the children's outbox rows."""

    status: Status
    seq: int
    outcome: Outcome
    child_rows: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Committer:
    """Commits the outcomes of one work queue's attempts."""

    store: TaskStore
    queue: str
    backoff: Backoff
    outbox_grace_s: float
    database_away: DatabaseAway

    async def commit(self, attempt: Attempt, outcome: Outcome) -> Committed:
        """Commit the outcome, waiting out an outage of our database: the delivery stays
        unacknowledged meanwhile (it is still ours), and no new one is taken.

        Raises StaleClaim when another attempt holds the task now."""
        # Tried once before tenacity: its loop costs ~10 µs a call, on the way of every commit.
        try:
            return await self._commit_storable(attempt, outcome)
        except UNAVAILABLE as exc:
            await self._waiting(exc)
        async for trying in outage.while_unavailable():
            with trying:
                try:
                    return await self._commit_storable(attempt, outcome)
                except UNAVAILABLE as exc:
                    await self._waiting(exc)
                    raise
        raise AssertionError("unreachable")

    async def _waiting(self, exc: BaseException) -> None:
        log.warning("outcome_commit_waiting", error=repr(exc))
        await self.database_away(exc)

    async def _commit_storable(self, attempt: Attempt, outcome: Outcome) -> Committed:
        """An outcome the database refuses as data (a NUL in the output) is the task's
        error: the task fails with it, rather than come back as if its worker were lost."""
        try:
            return await self._commit(attempt, outcome)
        except asyncpg.DataError as exc:
            if isinstance(outcome, TaskError):
                raise  # our own error record: a bug of ours, not the task's
            log.warning("outcome_unstorable", error=str(exc))
            failure = PermanentError(
                f"the outcome cannot be stored: {exc}", code="unstorable_output"
            )
            return await self._commit(attempt, failure)

    async def _commit(self, attempt: Attempt, outcome: Outcome) -> Committed:
        """Write the outcome, fenced."""
        task_id, fence, store = attempt.task_id, attempt.fence, self.store
        if isinstance(outcome, TaskResult):
            seq = await store.complete(task_id, fence, outcome.output, outcome.reply)
            self._count(Tally.COMPLETED, "task_completed")
            return Committed(Status.COMPLETED, seq, outcome)
        if isinstance(outcome, TaskCancelled):
            seq = await store.cancelled(task_id, fence, attempt.partial_output)
            self._count(Tally.CANCELLED, "task_cancelled")
            return Committed(Status.CANCELLED, seq, outcome)
        if isinstance(outcome, Released):
            return Committed(Status.QUEUED, await store.release(task_id, fence), outcome)
        if isinstance(outcome, Waiting):
            seq, rows = await store.wait(
                task_id, fence, outcome.state, outcome.rows(), self.outbox_grace_s
            )
            log.info("task_waiting", children=len(outcome.children))
            return Committed(Status.WAITING, seq, outcome, rows)
        return await self._commit_error(attempt, outcome)

    async def _commit_error(self, attempt: Attempt, error: TaskError) -> Committed:
        """Retry it later or fail the task for good (retry.decide): its message is an outbox
        row of the same transaction either way."""
        task_id, fence, queue = attempt.task_id, attempt.fence, self.queue
        decision = decide(
            error, attempt=attempt.number, max_attempts=attempt.max_attempts, backoff=self.backoff
        )
        if decision.retry:
            seq = await self.store.retry(task_id, fence, error.as_dict(), queue, decision.delay_s)
            self._count(
                Tally.RETRIED,
                "task_retry_scheduled",
                error=error.code,
                delay_s=round(decision.delay_s, 3),
            )
            return Committed(Status.RETRYING, seq, error)
        seq = await self.store.fail(task_id, fence, error.as_dict(), queue, decision.reason)
        self._count(Tally.FAILED, "task_failed", error=error.code, message=str(error))
        _TASKS(queue, Tally.DEAD_LETTERED).inc()
        return Committed(Status.FAILED, seq, error)

    def _count(self, tally: Tally, event: str, **fields: Any) -> None:
        _TASKS(self.queue, tally).inc()
        log.info(event, **fields)


def event_fields(outcome: Outcome, attempt: Attempt) -> dict[str, Any]:
    """What a client needs of the task after this outcome, besides its status."""
    if isinstance(outcome, TaskResult):
        return {"progress": 1.0, "output": outcome.output, "attempts": attempt.number}
    if isinstance(outcome, TaskError):
        return {"error": outcome.as_dict(), "attempts": attempt.number}
    if isinstance(outcome, TaskCancelled):
        return {"partial_output": attempt.partial_output, "attempts": attempt.number}
    return {"attempts": attempt.number}
