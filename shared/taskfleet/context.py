"""What a handler gets: the task, its last checkpoint, and ways to report back (DESIGN.md §6)."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from taskfleet.errors import TaskCancelled
from taskfleet.messages import TaskMessage
from taskfleet.store import TaskStore

EventSink = Callable[[str, dict[str, Any]], Awaitable[None]]

PROGRESS_INTERVAL_S = 0.25


@dataclass(frozen=True, slots=True)
class TaskResult:
    """A handler's success. `reply` is the assistant message text of a chat task."""

    output: Any
    reply: str | None = None


@dataclass
class TaskContext:
    """One attempt of one task. Every write is fenced by this attempt's token."""

    message: TaskMessage
    input: Any
    user_id: str
    chat_id: str | None
    attempt: int
    max_attempts: int
    fence: int
    deadline: float  # loop.time() by which the handler must be done
    last_checkpoint: Any
    store: TaskStore
    emit: EventSink
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    partial_output: Any = None
    interrupt_reason: str | None = None
    _owner: asyncio.Task[Any] | None = None
    _last_progress_at: float = 0.0
    _last_stage: str | None = None

    @property
    def task_id(self) -> UUID:
        return self.message.task_id

    @property
    def remaining_s(self) -> float:
        return max(0.0, self.deadline - asyncio.get_running_loop().time())

    async def progress(
        self, fraction: float, stage: str | None = None, message: str | None = None
    ) -> None:
        """Report progress. Persisted at most every 250 ms and on every stage change."""
        fraction = min(1.0, max(0.0, fraction))
        now = time.monotonic()
        if stage == self._last_stage and now - self._last_progress_at < PROGRESS_INTERVAL_S:
            return
        self._last_progress_at, self._last_stage = now, stage
        cancel = await self.store.progress(self.task_id, self.fence, fraction, stage, message)
        await self.emit("processing", {"progress": fraction, "stage": stage,
                                       "status_message": message})  # fmt: skip
        self._observe_cancel(cancel)

    async def checkpoint(self, state: Any) -> None:
        """Save resumable state; a retry or redelivery gets it back as `last_checkpoint`."""
        self._observe_cancel(await self.store.checkpoint(self.task_id, self.fence, state))
        self.last_checkpoint = state

    async def partial(self, output: Any, reply: str | None = None) -> None:
        """Save partial output (and the reply so far, for a chat task)."""
        self.partial_output = output
        self._observe_cancel(await self.store.partial(self.task_id, self.fence, output, reply))

    def interrupt(self, reason: str) -> None:
        """Stop the handler: `cancel` (the user asked) or `shutdown` (the grace period ran out)."""
        if reason == "cancel":
            self.cancelled.set()
        if self.interrupt_reason is None:
            self.interrupt_reason = reason
            if self._owner is not None and not self._owner.done():
                self._owner.cancel()

    def _observe_cancel(self, requested: bool) -> None:
        # Seen from inside the handler: raise here rather than cancel our own task, whose
        # pending cancellation would otherwise hit the outcome's commit.
        if requested:
            self.cancelled.set()
            self.interrupt_reason = self.interrupt_reason or "cancel"
            raise TaskCancelled(f"task {self.task_id} was cancelled")
