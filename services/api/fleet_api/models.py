"""Request and response bodies. The same models validate requests and make /openapi.json."""

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from fleet_api.delays import Delay
from taskfleet.core.constants import Status, TaskType, statuses
from taskfleet.core.messages import ID_PATTERN, StorableText


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorBody(BaseModel):
    """Every error answer: `{"error": {"code", "message", "details"}}`."""

    error: ErrorDetail


class ChatStreamRequest(Delay):
    model_config = ConfigDict(extra="forbid")

    chat_id: str = Field(
        pattern=ID_PATTERN, description="The conversation this message belongs to."
    )
    content: StorableText = Field(min_length=1, description="The user's message.")
    user_id: str | None = Field(
        None, pattern=ID_PATTERN, description="Service scope only: the user to act for."
    )
    idempotency_key: StorableText | None = Field(
        None, min_length=1, max_length=200, description="The same key gives the same task."
    )


class ChatStreamAccepted(BaseModel):
    task_id: UUID
    message_id: UUID = Field(description="The assistant message that will hold the reply.")
    status: Status


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
    run_at: datetime | None = Field(description="A delayed task's time (`scheduled` until then).")
    batch_id: UUID | None = Field(description="The batch it was submitted in, if any.")
    seq: int = Field(description="The task's event sequence number (see the WebSocket).")
    message: ReplySoFar | None = None


class TaskPage(BaseModel):
    tasks: list[Task]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


class TaskListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: str | None = Field(
        None,
        max_length=200,
        description="A status, several separated by commas, or `active` (every unfinished"
        " status: scheduled, queued, processing, retrying, waiting).",
    )
    type: TaskType | None = None
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, min_length=1, max_length=200)

    @field_validator("status")
    @classmethod
    def _statuses(cls, status: str | None) -> str | None:
        if status is not None:
            statuses(status)  # a ValueError is the 422
        return status


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
