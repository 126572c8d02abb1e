"""Request and response bodies. The same models validate requests and describe them."""

from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from taskfleet.messages import ID_PATTERN


class ChatStreamRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    chat_id: str = Field(
        pattern=ID_PATTERN, description="The conversation this message belongs to."
    )
    content: str = Field(min_length=1, description="The user's message.")
    user_id: str | None = Field(
        None, pattern=ID_PATTERN, description="Service scope only: the user to act for."
    )
    idempotency_key: str | None = Field(
        None, min_length=1, max_length=200, description="The same key gives the same task."
    )


class ChatStreamAccepted(BaseModel):
    task_id: UUID
    message_id: UUID = Field(description="The assistant message that will hold the reply.")
    status: str
