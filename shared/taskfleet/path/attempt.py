"""The runner's record of one attempt of one task: its claim, fence and live state.

The runner owns it; a handler sees it only through its TaskContext.
"""

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from taskfleet.core.messages import TaskMessage
from taskfleet.path.reasons import Interrupt
from taskfleet.path.stream import AttemptEvents, EventSink
from taskfleet.security.fields import Sealer
from taskfleet.store.records import Claim
from taskfleet.store.tasks import TaskStore


@dataclass
class Attempt:
    """A claimed delivery being handled. Every write of it is fenced by `fence`."""

    message: TaskMessage
    claim: Claim
    deadline: float  # loop.time() by which the handler must be done
    store: TaskStore
    events: AttemptEvents
    sealer: Sealer  # seals the task's sensitive fields as they are written
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    interrupted: Interrupt | None = None
    partial_output: Any = None  # the last the handler saved: a cancel keeps it
    _owner: asyncio.Task[Any] | None = None  # the task running the handler, while it runs

    @classmethod
    def of(
        cls,
        message: TaskMessage,
        claim: Claim,
        *,
        deadline: float,
        store: TaskStore,
        publish: EventSink,
        sealer: Sealer,
    ) -> "Attempt":
        """The attempt of a delivery just claimed; its events start at the claim's event_seq."""
        events = AttemptEvents(
            task_id=message.task_id,
            task_type=message.type,
            user_id=claim.user_id,
            chat_id=claim.chat_id,
            message_id=claim.message_id,
            publish=publish,
            row_seq=claim.event_seq,
        )
        return cls(message, claim, deadline, store, events, sealer)

    @property
    def task_id(self) -> UUID:
        """The task this attempt runs."""
        return self.message.task_id

    @property
    def fence(self) -> int:
        """The claim's fence: a write with an older one raises StaleClaim."""
        return self.claim.fence

    @property
    def number(self) -> int:
        """Which attempt this is, from 1."""
        return self.claim.attempts

    @property
    def max_attempts(self) -> int:
        """How many attempts the task gets in all, as its claim fixed it."""
        return self.claim.max_attempts

    @property
    def remaining_s(self) -> float:
        """Seconds left before the deadline (0 once passed)."""
        return max(0.0, self.deadline - asyncio.get_running_loop().time())

    @contextlib.contextmanager
    def owned_by_current_task(self) -> Iterator[None]:
        """While the handler runs, an interrupt cancels the task running it."""
        self._owner = asyncio.current_task()
        try:
            yield
        finally:
            self._owner = None

    def interrupt(self, reason: Interrupt) -> None:
        """Stop the handler, for `reason`; the first reason given is the one that counts."""
        if reason is Interrupt.CANCEL:
            self.cancelled.set()
        if self.interrupted is None:
            self.interrupted = reason
            if self._owner is not None and not self._owner.done():
                self._owner.cancel()

    def absorb_interrupt(self) -> Interrupt | None:
        """After the handler's CancelledError: our interrupt's reason, its cancellation taken
        back from the task so the outcome's commit can run; None if it was not ours."""
        if self.interrupted is not None and self._owner is not None:
            self._owner.uncancel()
        return self.interrupted

    def cancel_requested(self) -> None:
        """The handler's own write saw the cancel flag: it is cancelled from there on."""
        self.cancelled.set()
        self.interrupted = self.interrupted or Interrupt.CANCEL
