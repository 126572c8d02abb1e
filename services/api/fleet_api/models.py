"""Request and response bodies. The same models validate requests and make /openapi.json.

The bodies a client sends and reads are the kernel's `taskfleet.client.models`, which a
client imports without the server's dependencies; the API's own (queries, operator bodies)
are here."""

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from taskfleet.client.models import (
    ChatStreamAccepted,
    ChatStreamRequest,
    ErrorBody,
    ErrorDetail,
    PriorityName,
    ReplySoFar,
    Task,
    TaskErrorInfo,
    TaskPage,
)
from taskfleet.core.constants import TaskType
from taskfleet.core.messages import ID_PATTERN

__all__ = [
    "ChatStreamAccepted",
    "ChatStreamRequest",
    "ErrorBody",
    "ErrorDetail",
    "ReplySoFar",
    "Task",
    "TaskErrorInfo",
    "TaskPage",
]

# What `status=` takes in a listing: a status, or `active`, every status not yet terminal
# (taskfleet.core.constants.statuses reads it).
StatusFilter = Literal[
    "scheduled",
    "queued",
    "processing",
    "retrying",
    "waiting",
    "completed",
    "failed",
    "cancelled",
    "active",
]


class TaskListQuery(BaseModel):
    """A listing's filters. `metadata.<key>=<value>` (any number, all must match) is read
    before this model (fleet_api.tasks), since its names are the caller's keys."""

    model_config = ConfigDict(extra="forbid")

    status: list[StatusFilter] | None = Field(
        None,
        description="Any of these statuses (repeated, or comma-separated); `active`: every"
        " status not yet terminal.",
    )

    @field_validator("status", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        """`status=a,b` and `status=a&status=b` both mean either."""
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return [part for v in value for part in v.split(",")]
        return value

    type: TaskType | None = None
    priority: PriorityName | None = Field(None, description="Only the tasks of this priority.")
    chat_id: str | None = Field(None, pattern=ID_PATTERN, description="Only this chat's tasks.")
    parent_id: UUID | None = Field(None, description="Only this task's children.")
    batch_id: UUID | None = Field(None, description="Only this batch's members.")
    schedule_id: UUID | None = Field(None, description="Only this schedule's runs.")
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, min_length=1, max_length=200)


class AdminTaskListQuery(TaskListQuery):
    user_id: str | None = Field(
        None, pattern=ID_PATTERN, description="One user's; all when absent."
    )


class TaskQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    wait: float | None = Field(
        None,
        ge=0,
        le=60,
        description="Seconds to wait for the task to end before answering (a long poll):"
        " the answer comes as soon as it is completed, failed or cancelled, else when the"
        " time is up, with the task as it is then.",
    )


class ChatMessage(BaseModel):
    id: UUID
    role: str
    content: str
    status: str
    task_id: UUID | None
    created_at: datetime


class ChatHistory(BaseModel):
    chat_id: str
    messages: list[ChatMessage]


class ChatHistoryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(None, pattern=ID_PATTERN, description="Service scope only.")


class QueueInfo(BaseModel):
    name: str
    messages: int
    consumers: int
    dead_letter: bool
    finished_last_min: int | None = Field(
        description="Tasks of this queue that ended (completed, failed, cancelled) in the last"
        " minute: its rate; null for a dead-letter queue."
    )


class QueueList(BaseModel):
    queues: list[QueueInfo]


class WorkerInfo(BaseModel):
    id: UUID
    worker: str = Field(description="chat, tool, doc or camera")
    queue: str
    host: str
    pid: int
    version: str
    concurrency: int
    status: Literal["live", "lost", "stopped"] = Field(
        description="lost: no heartbeat for 2.5 intervals (its in-flight tasks are at risk)"
    )
    heartbeat_s: float
    heartbeat_age_s: float
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None
    inflight: list[UUID]
    at_risk: list[UUID] = Field(description="in-flight tasks of a lost worker")
    background: dict[str, bool] = Field(description="supervised background task -> running")
    rss_bytes: int | None = Field(description="the process's resident memory at its last beat")
    paused: dict[str, str] = Field(
        description="why it takes no deliveries, by cause (memory, database); empty: it does"
    )


class WorkerList(BaseModel):
    workers: list[WorkerInfo]


class WorkerQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_stopped: bool = False


class DeadLetter(BaseModel):
    message_id: str | None
    task_id: UUID | None
    reason: str | None
    error: str | None
    body: Any


class DeadLetterList(BaseModel):
    queue: str
    messages: list[DeadLetter]


class DeadLetterQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(100, ge=1, le=1000)


class ReplayResult(BaseModel):
    queue: str
    replayed: int
    skipped: int


class PurgeResult(BaseModel):
    queue: str
    purged: int = Field(description="Dead letters deleted for good.")


class Transition(BaseModel):
    from_status: str | None = Field(description="null for the task's creation")
    to_status: str
    attempts: int = Field(description="attempts counted when it changed")
    error_code: str | None = Field(description="a failure's or a retry's error code")
    next_attempt_at: datetime | None = Field(description="a retry's next attempt")
    at: datetime


class TransitionList(BaseModel):
    task_id: UUID
    transitions: list[Transition]
