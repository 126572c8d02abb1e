"""The payload of each task type: what its handler gets, validated by the kernel (DESIGN.md §5).

A task's input is untrusted (anyone who can publish may forge one). The runner validates it
once, against its type's model, before the handler runs; one that does not fit fails the task
as InvalidPayload (permanent: dead-lettered with the reason), and the handler gets the model.
"""

from typing import Any, ClassVar, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

from taskfleet.core.constants import TaskType
from taskfleet.core.errors import InvalidPayload


class Payload(BaseModel):
    """Base of the payload models: keys it does not know are ignored (older or newer writers)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    # field -> what the reason says of it when its value is wrong (a missing one "is required")
    HINTS: ClassVar[dict[str, str]] = {}

    @classmethod
    def parse(cls, raw: Any) -> Self:
        """The payload of `raw` (a task's input), or InvalidPayload naming the field."""
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise InvalidPayload(cls._reason(exc.errors(include_url=False)[0])) from None

    @classmethod
    def _reason(cls, error: ErrorDetails) -> str:
        loc = error["loc"]
        if not loc:
            return "payload must be a JSON object"
        where = "payload." + ".".join(str(p) for p in loc)
        if error["type"] == "missing":
            return f"{where} is required"
        hint = cls.HINTS.get(str(loc[0]))
        if hint is None:
            return f"{where}: {error['msg']}"
        return f"{where} " + hint.format(input=repr(str(error["input"])[:80]))


class ChatPayload(Payload):
    """A chat message: the user's text (the API's ChatRequest writes it)."""

    HINTS = {"content": "must be non-empty text", "after_batch": "must be a batch id"}

    content: str
    # A batch's `then` task (a chord): the batch whose members' outcomes it reads, by reference.
    after_batch: UUID | None = None
    members: list[UUID] = Field(default_factory=list)  # its members, in the batch's order

    @field_validator("content")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("blank")
        return value


class ToolPayload(Payload):
    """One tool call of the agent (chat-worker writes it; anyone publishing may forge it)."""

    call_id: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=200)
    # Sealed to the call's own task by the agent (taskfleet.security.crypto)
    arguments: Any = Field(default_factory=dict)


class DocumentPayload(Payload):
    """A document to index: one of the task's user's uploads."""

    HINTS = {"document_id": "is not a uuid: {input}"}

    document_id: UUID


class CameraPayload(Payload):
    """A frame to analyse: an upload, or a capture the scheduler planned."""

    HINTS = {"frame_id": "must be a frame id (uuid)"}

    frame_id: UUID


PAYLOADS: dict[TaskType, type[Payload]] = {
    TaskType.CHAT: ChatPayload,
    TaskType.TOOL: ToolPayload,
    TaskType.DOCUMENT: DocumentPayload,
    TaskType.CAMERA: CameraPayload,
}
