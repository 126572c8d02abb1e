"""The API's request and response bodies that a client sends and reads: the API validates
and documents (/openapi.json) with these same models, and `taskfleet.client` parses with
them. Only pydantic and the kernel's dependency-free vocabulary: importing them loads no
database or broker driver (the import contract "The client needs only HTTP" in
pyproject.toml)."""

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from taskfleet.core.constants import TERMINAL, Priority, Status, TaskType
from taskfleet.core.wire import ID_PATTERN, StorableText

# A task's metadata: the backend's own strings (its ids) about the task, stored with it,
# answered in its body and filterable in listings (`metadata.<key>=<value>`). Bounded in
# characters, which the schema can say exactly: 16 x (40 + 200) = 3,840 characters at most.
METADATA_MAX_KEYS = 16
METADATA_KEY_PATTERN = r"^[A-Za-z0-9_\-]{1,40}$"
METADATA_VALUE_MAX_CHARS = 200
IDEMPOTENCY_KEY_MAX_CHARS = 200

Metadata = Annotated[
    dict[
        Annotated[str, Field(pattern=METADATA_KEY_PATTERN)],
        Annotated[StorableText, Field(max_length=METADATA_VALUE_MAX_CHARS)],
    ],
    Field(
        max_length=METADATA_MAX_KEYS,
        description=f"Your own strings about the task: at most {METADATA_MAX_KEYS} keys"
        f" (letters, digits, _ and -, up to 40), each value up to {METADATA_VALUE_MAX_CHARS}"
        " characters. Stored, answered in the task, and filterable with"
        " `metadata.<key>=<value>` on the listings.",
        # Only the keys the pattern allows: the schema tells the whole rule.
        json_schema_extra={"additionalProperties": False},
    ),
]


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorBody(BaseModel):
    """Every error answer: `{"error": {"code", "message", "details"}}`."""

    error: ErrorDetail


# A task's priority as a request names it (strict validation takes no enum from JSON text).
PriorityName = Literal["high", "normal", "low"]


class Delay(BaseModel):
    """The fields of a delayed submission (docs/scheduling.md), in a JSON body or a query, and
    the task's priority (docs/priorities.md): every submission route takes them."""

    priority: PriorityName | None = Field(
        None,
        description="`high`, `normal` or `low`; unset: what the token's `tier` claim maps to"
        " (PRIORITY_TIERS), else `normal`.",
    )
    run_at: str | None = Field(
        None,
        max_length=40,
        description="Run at this time (RFC 3339, with its zone); a past time runs it now.",
    )
    delay_s: float | None = Field(None, description="Run this many seconds from now.")


CALLBACK_URL_MAX_CHARS = 2000


class WithCallback(BaseModel):
    """A submission's `callback_url` (docs/integrating.md#a-callback-per-task): every
    submission route takes it."""

    callback_url: str | None = Field(
        None,
        min_length=8,
        max_length=CALLBACK_URL_MAX_CHARS,
        pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://\S+$",
        description="Where to POST the task's end (`task.completed`, `task.failed` or"
        " `task.cancelled`; a batch's: `batch.completed`), signed as every webhook is, with"
        " the `callback_secret` of the answer. http(s); private and loopback addresses are"
        " refused unless the operator allows them (WEBHOOK_ALLOWED_HOSTS).",
    )


class CallbackAccepted(BaseModel):
    """What a submission with a `callback_url` answers besides its task."""

    callback_id: UUID | None = Field(
        None,
        description="The callback's webhook endpoint (its delivery log:"
        " GET /api/webhooks/{callback_id}/deliveries); absent without a `callback_url`.",
    )
    callback_secret: str | None = Field(
        None,
        description="The callback's signing secret (`whsec_...`); absent without a"
        " `callback_url`. A repeat with the same Idempotency-Key answers it again.",
    )


class ChatStreamRequest(Delay, WithCallback):
    model_config = ConfigDict(extra="forbid")

    chat_id: str = Field(
        pattern=ID_PATTERN, description="The conversation this message belongs to."
    )
    content: StorableText = Field(min_length=1, description="The user's message.")
    user_id: str | None = Field(
        None, pattern=ID_PATTERN, description="Service scope only: the user to act for."
    )
    idempotency_key: StorableText | None = Field(
        None,
        min_length=1,
        max_length=IDEMPOTENCY_KEY_MAX_CHARS,
        description="The same key gives the same task (as the Idempotency-Key header).",
    )
    metadata: Metadata | None = None


class ChatStreamAccepted(CallbackAccepted):
    task_id: UUID
    message_id: UUID = Field(description="The assistant message that will hold the reply.")
    status: Status


class DocumentAccepted(CallbackAccepted):
    document_id: UUID
    task_id: UUID = Field(description="The document_processing task that indexes it.")
    status: Status = Field(description="`queued`, or `scheduled` when delayed.")


class FrameAccepted(CallbackAccepted):
    frame_id: UUID
    task_id: UUID = Field(description="The camera_analysis task that analyses the frame.")
    status: Status = Field(description="`queued`, or `scheduled` when delayed.")


class TaskErrorInfo(BaseModel):
    code: str
    message: str
    retryable: bool


class ReplySoFar(BaseModel):
    """A chat task's assistant message: the reply so far (status `streaming`) or final."""

    id: UUID
    content: str
    status: str


class Task(BaseModel):
    id: UUID
    type: TaskType
    user_id: str
    chat_id: str | None
    parent_id: UUID | None
    status: Status
    progress: float
    stage: str | None
    status_message: str | None
    input: Any
    output: Any
    partial_output: Any
    checkpoint: Any
    error: TaskErrorInfo | None
    attempts: int
    max_attempts: int
    next_attempt_at: datetime | None
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime
    run_at: datetime | None = Field(
        None, description="A delayed task's time (`scheduled` until then)."
    )
    metadata: dict[str, str] = Field(
        default_factory=dict, description="What the submission's `metadata` said."
    )
    batch_id: UUID | None = Field(None, description="The batch it was submitted in, if any.")
    schedule_id: UUID | None = Field(None, description="The schedule whose run it is, if any.")
    priority: Priority = Field(Priority.NORMAL, description="Its queue's level.")
    seq: int = Field(description="The task's event sequence number (see the WebSocket).")
    message: ReplySoFar | None = None

    @property
    def terminal(self) -> bool:
        """Whether the task is over: completed, failed or cancelled."""
        return self.status in TERMINAL


class TaskDeleted(BaseModel):
    id: UUID
    deleted: bool = Field(description="Always true: a task that cannot go is a 409.")
    status: Status = Field(description="The status the task had when it was deleted.")


class TaskPage(BaseModel):
    tasks: list[Task]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


class Event(BaseModel):
    """One event of the WebSocket (docs/live-updates.md), as `Taskfleet.events` yields it.

    `task.updated`: `task` holds the fields that changed (merge it into what you hold), or
    the whole task; `message.delta`: reply text `delta` from character `offset` on;
    `message.snapshot`: the reply so far, `content`, after a resume read from the database."""

    model_config = ConfigDict(extra="allow")

    type: str
    task_id: UUID
    seq: int
    task: dict[str, Any] | None = None
    message_id: UUID | None = None
    offset: int | None = None
    delta: str | None = None
    content: str | None = None
    status: str | None = None

    @property
    def terminal(self) -> bool:
        """Whether this event says its task ended (completed, failed or cancelled)."""
        status = (self.task or {}).get("status")
        return self.type == "task.updated" and status in TERMINAL


# Batches (docs/scheduling.md#batches): many chat messages as one group.
BATCH_MAX_MEMBERS = 500


class BatchMember(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["chat_message"] = Field(
        "chat_message", description="Chat messages only, for now."
    )
    chat_id: str = Field(pattern=ID_PATTERN)
    content: StorableText = Field(min_length=1)


class BatchRequest(Delay, WithCallback):
    model_config = ConfigDict(extra="forbid")

    tasks: list[BatchMember] = Field(min_length=1, max_length=BATCH_MAX_MEMBERS)
    then: BatchMember | None = Field(
        None,
        description="A chat message to run once every member ended (a chord): its model reads"
        " the members' replies and errors, in their order, after `content`.",
    )
    user_id: str | None = Field(
        None, pattern=ID_PATTERN, description="Service scope only: the user to act for."
    )


class BatchAccepted(CallbackAccepted):
    batch_id: UUID
    task_ids: list[UUID] = Field(description="In the order of `tasks`.")
    message_ids: list[UUID] = Field(description="Each member's assistant message.")
    status: Status = Field(description="`queued`, or `scheduled` when delayed.")
    then_task_id: UUID | None = Field(None, description="The `then` task: `scheduled` until due.")


class Batch(BaseModel):
    id: UUID
    user_id: str
    status: Literal["active", "completed"] = Field(description="completed: every member ended.")
    progress: float = Field(description="The members' mean progress; an ended one counts 1.")
    total: int
    counts: dict[Status, int] = Field(description="Members per status.")
    created_at: datetime
    completed_at: datetime | None
    then_task_id: UUID | None = Field(None, description="Its `then` task, if it has one.")
