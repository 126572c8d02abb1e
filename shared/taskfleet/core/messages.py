"""The message body on the work queues (DESIGN.md §5). Every body is untrusted input."""

from typing import Any, Literal
from uuid import UUID, uuid4

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from taskfleet.core.constants import COPY_HEADER, TaskType
from taskfleet.core.errors import InvalidPayload
from taskfleet.core.wire import ID_PATTERN, StorableText

__all__ = [
    "ID_PATTERN",
    "StorableText",
    "TaskMessage",
    "copy_headers",
    "copy_of",
    "parse_message",
]


class TaskMessage(BaseModel):
    """`{"v": 1, "task_id", "type", "user_id", "chat_id", "attempt", "payload"}`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    v: Literal[1] = 1
    task_id: UUID
    type: TaskType
    user_id: str = Field(pattern=ID_PATTERN)
    chat_id: str | None = Field(None, pattern=ID_PATTERN)
    attempt: int = Field(1, ge=1, le=1000)
    payload: dict[str, Any] = Field(default_factory=dict)

    def dumps(self) -> bytes:
        """The body to publish: the same JSON that parse_message reads back."""
        return orjson.dumps(self.model_dump(mode="json"))


def parse_message(body: bytes) -> TaskMessage:
    """Parse a delivery body; anything that is not our schema is InvalidPayload with the reason."""
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidPayload(f"body is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidPayload("body is not a JSON object")
    try:
        return TaskMessage.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidPayload(f"schema: {where}: {first['msg']}") from None


def copy_headers(headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """`headers` and a fresh copy id: every publish of a task message is a copy of its own."""
    return {**(headers or {}), COPY_HEADER: uuid4().hex}


def copy_of(headers: dict[str, Any] | None) -> str | None:
    """The copy id of a delivery; None for a message a backend published itself."""
    value = (headers or {}).get(COPY_HEADER)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return value[:64] if isinstance(value, str) and value else None
