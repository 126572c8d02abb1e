"""What a handler gets: the task, its last checkpoint, and ways to report back (DESIGN.md §6)."""

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from uuid import UUID

from taskfleet.core import events
from taskfleet.core.errors import TaskCancelled
from taskfleet.core.messages import TaskMessage
from taskfleet.store.pool import UNAVAILABLE
from taskfleet.store.records import Written
from taskfleet.store.tasks import TaskStore
from taskfleet.store.tenancy import UserDb, for_user

# (routing key, body) -> handed to the event publisher (best effort); returns at once.
EventSink = Callable[[str, dict[str, Any]], None]

PROGRESS_INTERVAL_S = 0.25
# The live events of an attempt's first moments are held this long. A task that completes
# within it sends one event, `completed` with its output (the whole reply), instead of
# `processing`, the reply's deltas and `completed`: most of a short task's broker traffic.
HOLD_S = 0.05


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
    publish: EventSink
    row_seq: int = 0
    message_id: UUID | None = None  # the assistant message of a chat task
    preloaded: Any = None  # what the claim read for the handler (store.Preload), if asked
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    partial_output: Any = None
    interrupt_reason: str | None = None
    _owner: asyncio.Task[Any] | None = None
    _held: list[tuple[str, dict[str, Any]]] | None = None
    _hold_timer: asyncio.TimerHandle | None = None
    _last_progress_at: float = 0.0
    _last_stage: str | None = None
    _delta_index: int = 0
    _reply_offset: int = 0

    @property
    def task_id(self) -> UUID:
        return self.message.task_id

    @cached_property
    def db(self) -> UserDb:
        """The handler's statements: row security shows them this task's user's rows only.

        The kernel's transitions (claim, progress, completion) go through `store`; everything
        a handler reads or writes of the user's data goes through this.
        """
        return for_user(self.store.pool, self.user_id)

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
        try:
            written = await self.store.progress(self.task_id, self.fence, fraction, stage, message)
        except UNAVAILABLE:
            # Progress is a report, not an outcome: the work goes on through a database
            # outage, and its outcome waits for the database (taskfleet.path.consumer).
            return
        self._advance(written.event_seq)
        await self.emit_status("processing", progress=fraction, stage=stage,
                               status_message=message)  # fmt: skip
        self._observe_cancel(written)

    async def checkpoint(self, state: Any) -> None:
        """Save resumable state; a retry or redelivery gets it back as `last_checkpoint`."""
        self._observe_cancel(await self.store.checkpoint(self.task_id, self.fence, state))
        self.last_checkpoint = state

    async def partial(self, output: Any, reply: str | None = None) -> None:
        """Save partial output (and the reply so far, for a chat task)."""
        self.partial_output = output
        self._observe_cancel(await self.store.partial(self.task_id, self.fence, output, reply))

    async def delta(self, text: str) -> None:
        """Stream reply text live (`message.delta`); not persisted (see `partial`)."""
        if not text:
            return
        self._delta_index += 1
        key, body = events.message_delta(
            task_id=self.task_id, task_type=self.message.type.value, user_id=self.user_id,
            message_id=self.message_id, seq=events.event_seq(self.row_seq, self._delta_index),
            offset=self._reply_offset, delta=text,
        )  # fmt: skip
        self._reply_offset += len(text)
        self._send(key, body)

    async def emit_status(self, status: str, **fields: Any) -> None:
        """Publish `task.updated` for the state change that set `row_seq`."""
        key, body = events.task_updated(
            task_id=self.task_id, task_type=self.message.type.value, user_id=self.user_id,
            chat_id=self.chat_id, status=status, seq=events.event_seq(self.row_seq), **fields,
        )  # fmt: skip
        self._send(key, body)

    def hold(self, seconds: float = HOLD_S) -> None:
        """Keep this attempt's events back for `seconds`, then send them in order."""
        self._held = []
        self._hold_timer = asyncio.get_running_loop().call_later(seconds, self.release)

    def release(self) -> None:
        """Send the held events now (idempotent)."""
        held = self._stop_holding()
        for key, body in held:
            self.publish(key, body)

    def drop_held(self) -> None:
        """The outcome's own event says all that the held ones would (the task completed)."""
        self._stop_holding()

    def _stop_holding(self) -> list[tuple[str, dict[str, Any]]]:
        held, self._held = self._held or [], None
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        return held

    def _send(self, key: str, body: dict[str, Any]) -> None:
        if self._held is not None:
            self._held.append((key, body))
        else:
            self.publish(key, body)

    def interrupt(self, reason: str) -> None:
        """Stop the handler: `cancel` (the user asked) or `shutdown` (the grace period ran out)."""
        if reason == "cancel":
            self.cancelled.set()
        if self.interrupt_reason is None:
            self.interrupt_reason = reason
            if self._owner is not None and not self._owner.done():
                self._owner.cancel()

    def _advance(self, row_seq: int) -> None:
        if row_seq != self.row_seq:
            self.row_seq, self._delta_index = row_seq, 0

    def _observe_cancel(self, written: Written) -> None:
        # Seen from inside the handler: raise here rather than cancel our own task, whose
        # pending cancellation would otherwise hit the outcome's commit.
        if written.cancel_requested:
            self.cancelled.set()
            self.interrupt_reason = self.interrupt_reason or "cancel"
            raise TaskCancelled(f"task {self.task_id} was cancelled")
