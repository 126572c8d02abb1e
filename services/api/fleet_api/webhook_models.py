"""The bodies of the webhook routes (fleet_api.webhooks)."""

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from taskfleet.core.messages import ID_PATTERN

Event = Literal["task.completed", "task.failed", "task.cancelled", "batch.completed"]
DeliveryStatus = Literal["pending", "delivered", "failed"]
MAX_URL_CHARS = 2000


class WebhookRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=8,
        max_length=MAX_URL_CHARS,
        pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://\S+$",
        description="Where to POST the events: http(s); private and loopback addresses are"
        " refused unless the operator allows them (WEBHOOK_ALLOWED_HOSTS).",
    )
    events: list[Event] = Field(
        default=["task.completed", "task.failed", "task.cancelled", "batch.completed"],
        min_length=1,
        max_length=4,
        description="The events to send; all four when absent.",
    )
    user_id: str | None = Field(None, pattern=ID_PATTERN, description="Service scope only.")


class Webhook(BaseModel):
    id: UUID
    user_id: str
    url: str
    events: list[Event]
    created_at: datetime
    rotated_at: datetime | None
    task_id: UUID | None = Field(
        None, description="A submission's `callback_url`: the task whose end it gets."
    )
    batch_id: UUID | None = Field(
        None, description="A batch's `callback_url`: the batch whose completion it gets."
    )


class WebhookCreated(Webhook):
    secret: str = Field(
        description="The signing secret (`whsec_...`): shown this once; rotate it to get a new one."
    )


class WebhookSecret(BaseModel):
    id: UUID
    secret: str = Field(description="The new signing secret, used from the next attempt on.")
    previous_valid_until: datetime | None = Field(
        description="Until when the replaced secret still signs beside it (null: no longer)."
    )


class RotateQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    previous_for_s: float = Field(
        86_400,
        ge=0,
        le=7 * 86_400,
        description="How long the replaced secret still signs beside the new one (0: it stops"
        " now, e.g. when it leaked).",
    )


class WebhookList(BaseModel):
    webhooks: list[Webhook]


class WebhookListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(None, pattern=ID_PATTERN, description="Service scope only.")


class Delivery(BaseModel):
    id: UUID = Field(description="Also the `webhook-id` header of every attempt.")
    endpoint_id: UUID
    event: Event
    status: DeliveryStatus
    attempts: int
    payload: dict[str, Any] = Field(description="The body sent: {type, timestamp, data}.")
    created_at: datetime
    enqueued_at: datetime = Field(description="Since when it is sent: its deadline counts from it.")
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None = Field(description="While pending: the next attempt.")
    response_status: int | None = Field(description="The last attempt's HTTP status, if any.")
    last_error: str | None
    delivered_at: datetime | None


class DeliveryList(BaseModel):
    deliveries: list[Delivery]
    next_cursor: str | None


class DeliveryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: DeliveryStatus | None = None
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, min_length=1, max_length=200)
