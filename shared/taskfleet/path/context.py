"""What a handler gets: the task, its last checkpoint, and ways to report back (DESIGN.md §6)."""

import asyncio
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Generic, cast
from uuid import UUID

from typing_extensions import TypeVar

from taskfleet.core.constants import Status
from taskfleet.core.errors import TaskCancelled
from taskfleet.path.attempt import Attempt
from taskfleet.security.crypto import Keyring
from taskfleet.store.pool import UNAVAILABLE
from taskfleet.store.records import Written
from taskfleet.store.tenancy import UserDb, for_user

PROGRESS_INTERVAL_S = 0.25

# The payload model of the task's type (taskfleet.core.payloads); Any for a handler that
# does not say which it takes.
P = TypeVar("P", default=Any)


@dataclass(frozen=True, slots=True)
class TaskResult:
    """A handler's success. `reply` is the assistant message text of a chat task."""

    output: Any
    reply: str | None = None


class TaskContext(Generic[P]):
    """One attempt of one task, as its handler sees it. Its writes are fenced by the attempt."""

    def __init__(self, attempt: Attempt) -> None:
        self._attempt = attempt
        self.last_checkpoint: Any = attempt.claim.checkpoint
        self._last_progress_at = 0.0
        self._last_stage: str | None = None
        self._payload: Any = None  # set by the runner once it validated `input`

    @property
    def task_id(self) -> UUID:
        """The task being run."""
        return self._attempt.task_id

    @property
    def input(self) -> Any:
        """The task's input as stored, its sealed fields sealed; a handler reads `payload`."""
        return self._attempt.claim.input

    @property
    def payload(self) -> P:
        """`input` as its type's model: the runner validated it before the handler ran."""
        return cast(P, self._payload)

    @property
    def keyring(self) -> Keyring:
        """The keys the data layer seals and opens this user's data with (memories...): a
        handler hands it on; the task's own sealed fields come and go in the clear."""
        return self._attempt.sealer.keyring

    @property
    def user_id(self) -> str:
        """The task's owner: what the handler reads and writes must be that user's only."""
        return self._attempt.claim.user_id

    @property
    def chat_id(self) -> str | None:
        """The chat of a chat task, None for a task outside any chat."""
        return self._attempt.claim.chat_id

    @property
    def attempt(self) -> int:
        """Which attempt this is, from 1."""
        return self._attempt.number

    @property
    def max_attempts(self) -> int:
        """How many attempts the task gets in all: `attempt == max_attempts` is the last one."""
        return self._attempt.max_attempts

    @property
    def preloaded(self) -> Any:
        """What the claim read for the handler (store.Preload), if the worker asked."""
        return self._attempt.claim.preloaded

    @property
    def cancelled(self) -> asyncio.Event:
        """Set once the user asked to cancel: a long handler may wait on it or check it."""
        return self._attempt.cancelled

    @property
    def remaining_s(self) -> float:
        """Until the task's deadline."""
        return self._attempt.remaining_s

    @cached_property
    def db(self) -> UserDb:
        """The handler's statements: row security shows them this task's user's rows only.

        The kernel's transitions (claim, progress, completion) go through the store; everything
        a handler reads or writes of the user's data goes through this.
        """
        return for_user(self._attempt.store.pool, self.user_id)

    async def progress(
        self, fraction: float, stage: str | None = None, message: str | None = None
    ) -> None:
        """Report progress. Persisted at most every 250 ms and on every stage change."""
        fraction = min(1.0, max(0.0, fraction))
        now = time.monotonic()
        if stage == self._last_stage and now - self._last_progress_at < PROGRESS_INTERVAL_S:
            return
        self._last_progress_at, self._last_stage = now, stage
        attempt = self._attempt
        try:
            written = await attempt.store.progress(
                attempt.task_id, attempt.fence, fraction, stage, message
            )
        except UNAVAILABLE:
            # Progress is a report, not an outcome: the work goes on through a database
            # outage, and its outcome waits for the database (taskfleet.path.commit).
            return
        attempt.events.advance(written.event_seq)
        attempt.events.status(
            Status.PROCESSING, progress=fraction, stage=stage, status_message=message
        )
        self._observe_cancel(written)

    async def checkpoint(self, state: Any) -> None:
        """Save resumable state; a retry or redelivery gets it back as `last_checkpoint`."""
        attempt = self._attempt
        sealed = attempt.sealer.seal_checkpoint(attempt.message.type, attempt.task_id, state)
        self._observe_cancel(await attempt.store.checkpoint(attempt.task_id, attempt.fence, sealed))
        self.last_checkpoint = state

    async def partial(self, output: Any, reply: str | None = None) -> None:
        """Save partial output (and the reply so far, for a chat task)."""
        attempt = self._attempt
        output = attempt.sealer.seal_output(attempt.message.type, attempt.task_id, output)
        attempt.partial_output = output  # sealed: it is written again if the task is cancelled
        self._observe_cancel(
            await attempt.store.partial(attempt.task_id, attempt.fence, output, reply)
        )

    async def delta(self, text: str) -> None:
        """Stream reply text live (`message.delta`); not persisted (see `partial`)."""
        if text:
            self._attempt.events.delta(text)

    def _observe_cancel(self, written: Written) -> None:
        # Seen from inside the handler: raise here rather than cancel our own task, whose
        # pending cancellation would otherwise hit the outcome's commit.
        if written.cancel_requested:
            self._attempt.cancel_requested()
            raise TaskCancelled(f"task {self.task_id} was cancelled")
