"""The task store's records: what its calls take and answer (taskfleet.store.tasks)."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from taskfleet.core import tracing
from taskfleet.core.constants import Priority, Status, TaskType
from taskfleet.core.ids import uuid7
from taskfleet.core.messages import TaskMessage
from taskfleet.store import quotas

TASK_COLUMNS = (
    "id, type, user_id, chat_id, parent_id, status, progress, stage, status_message, input,"
    " output, partial_output, checkpoint, error, attempts, max_attempts, next_attempt_at,"
    " cancel_requested, created_at, started_at, completed_at, updated_at, run_at, metadata,"
    " batch_id, schedule_id, priority"
)


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer of tf_claim. Only a `claimed` verdict may run the handler."""

    verdict: str
    fence: int
    attempts: int
    max_attempts: int
    checkpoint: Any
    input: Any
    user_id: str
    chat_id: str | None
    created_at: datetime
    event_seq: int
    message_id: UUID | None
    preloaded: Any = None


@dataclass(frozen=True, slots=True)
class Written:
    """A fenced write's answer: the task's event_seq and whether a cancel was requested."""

    event_seq: int
    cancel_requested: bool = False


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A committed task's message and the outbox row that keeps it until it is published.

    Whoever publishes it forgets that row, by its id: the row of this message and no other
    (a later one of the same task, a resume say, is another message still to send).
    """

    message: TaskMessage
    outbox_id: int
    # The task's level: the message goes to that level's queue (core.constants.level_queue).
    priority: Priority = Priority.NORMAL
    # The trace context where the message was made (an API request, a parent's attempt): its
    # publish carries it as `traceparent`, so the worker's spans join that trace.
    trace: dict[str, str] = field(default_factory=tracing.headers)


@dataclass(frozen=True, slots=True)
class ChatSubmission:
    task_id: UUID
    message_id: UUID
    created: bool
    outbox_id: int | None = None
    # An idempotent repeat: the digest of the request that made the task (None if unknown).
    request_digest: str | None = None


@dataclass(frozen=True, slots=True)
class Existing:
    """The task an idempotency key named already: its id, input, request digest and status."""

    task_id: UUID
    input: dict[str, Any]
    request_digest: str | None
    status: Status


class OverQuota(Exception):
    """The submission is over a quota of its user: nothing was stored."""

    def __init__(self, over: quotas.OverQuota) -> None:
        super().__init__(over.reason)
        self.over = over


@dataclass(frozen=True, slots=True)
class Callback:
    """A submission's `callback_url`: the webhook endpoint of its own that its task (or batch)
    gets in its transaction (migrations/0028), its secret already sealed to `id`."""

    id: UUID
    url: str
    sealed_secret: dict[str, Any]


@dataclass(frozen=True, slots=True)
class NewTask:
    """A task to create. `input` becomes the message payload the handler gets.

    With `run_at` it is a delayed task: `scheduled` until then, its message published by the
    outbox relay when due (docs/scheduling.md), never by its creator.
    """

    type: TaskType
    user_id: str
    input: dict[str, Any]
    max_attempts: int
    chat_id: str | None = None
    parent_id: UUID | None = None
    idempotency_key: str | None = None
    task_id: UUID = field(default_factory=uuid7)
    run_at: datetime | None = None
    # The backend's own strings about the task (migrations/0016), and the digest of the
    # request an idempotency key came with: a repeat with another request is refused.
    metadata: dict[str, str] = field(default_factory=dict)
    request_digest: str | None = None
    priority: Priority = Priority.NORMAL  # its queue's level (docs/priorities.md)
    # The span it is made in (an API request, its parent's attempt), kept with the task so that
    # every message the relay publishes for it joins that trace; None with tracing off.
    traceparent: str | None = field(default_factory=tracing.traceparent)
    callback: Callback | None = None  # its own webhook endpoint, for its end

    @property
    def status(self) -> Status:
        """The status it is created with: `scheduled` when delayed, else `queued`."""
        return Status.QUEUED if self.run_at is None else Status.SCHEDULED

    def outgoing(self, outbox_id: int) -> Outgoing:
        """The first message with its outbox row, to publish at the task's level."""
        return Outgoing(self.message(), outbox_id, priority=self.priority)

    def message(self) -> TaskMessage:
        """The queue message of the task's first attempt, its input as the payload."""
        return TaskMessage(
            task_id=self.task_id,
            type=self.type,
            user_id=self.user_id,
            chat_id=self.chat_id,
            payload=self.input,
        )


@dataclass(frozen=True, slots=True)
class Preload:
    """What a claim reads for its handler in the same statement: one round trip less.

    `function(user_id, chat_id, task_id, *args)` is a SQL function of the migrations. It is
    called only for a `claimed` verdict, with the claimed row's own user and chat (never what
    the message says), and its answer is the handler's `TaskContext.preloaded`.
    """

    function: str
    args: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if not self.function.isidentifier():  # it is spliced into the statement
            raise ValueError(f"not a function name: {self.function!r}")


@dataclass(frozen=True, slots=True)
class ClaimPolicy:
    max_attempts: int
    user_limit: int
    throttle_s: float
    preload: Preload | None = None
    holder: UUID | None = None  # the claiming consumer's row in the worker registry
    deadline_s: float | None = None  # the attempt's deadline, kept on the row
