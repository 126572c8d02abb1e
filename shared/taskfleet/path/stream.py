"""An attempt's live events: `task.updated` and `message.delta`, numbered by the row's event_seq."""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from taskfleet.core import events
from taskfleet.core.constants import TaskType

# (routing key, body) -> handed to the event publisher (best effort); returns at once.
EventSink = Callable[[str, dict[str, Any]], None]

# The live events of an attempt's first moments are held this long. A task that completes
# within it sends one event, `completed` with its output (the whole reply), instead of
# `processing`, the reply's deltas and `completed`: most of a short task's broker traffic.
HOLD_S = 0.05


@dataclass
class AttemptEvents:
    """The events of one attempt, in order; `row_seq` is the event_seq of the last state
    change it announced (a delta is numbered after it)."""

    task_id: UUID
    task_type: TaskType
    user_id: str
    chat_id: str | None
    message_id: UUID | None  # the assistant message of a chat task
    publish: EventSink
    row_seq: int = 0
    _delta_index: int = 0
    _reply_offset: int = 0
    _held: list[tuple[str, dict[str, Any]]] | None = None
    _hold_timer: asyncio.TimerHandle | None = None
    _id: str = field(init=False, default="")  # task_id as text, once: every event names it

    def __post_init__(self) -> None:
        self._id = str(self.task_id)

    def status(self, status: str, **fields: Any) -> None:
        """`task.updated` for the state change that set `row_seq`."""
        key, body = events.task_updated(
            task_id=self._id,
            task_type=self.task_type.value,
            user_id=self.user_id,
            chat_id=self.chat_id,
            status=status,
            seq=events.event_seq(self.row_seq),
            **fields,
        )
        self._send(key, body)

    def delta(self, text: str) -> None:
        """`message.delta`: reply text, numbered within the current state change."""
        self._delta_index += 1
        key, body = events.message_delta(
            task_id=self._id,
            task_type=self.task_type.value,
            user_id=self.user_id,
            message_id=self.message_id,
            seq=events.event_seq(self.row_seq, self._delta_index),
            offset=self._reply_offset,
            delta=text,
        )
        self._reply_offset += len(text)
        self._send(key, body)

    def advance(self, row_seq: int) -> None:
        """The row changed state (event_seq `row_seq`): the next deltas count from there."""
        if row_seq != self.row_seq:
            self.row_seq, self._delta_index = row_seq, 0

    def hold(self, seconds: float = HOLD_S) -> None:
        """Keep the events back for `seconds`, then send them in order."""
        self._held = []
        self._hold_timer = asyncio.get_running_loop().call_later(seconds, self.release)

    def release(self) -> None:
        """Send the held events now (idempotent)."""
        for key, body in self._stop_holding():
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
