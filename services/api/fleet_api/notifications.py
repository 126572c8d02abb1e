"""Email notification routes (docs/integrating.md#email-notifications): a user's choice of an
email when a task of theirs that ran long ends, and the notifications written for them. Nothing
here sends: the database writes a notification as its task ends, the tool workers' notifier
sends it (tool_worker.notifier)."""

from datetime import datetime
from typing import Literal
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from fleet_api.auth import acting_for
from fleet_api.errors import json_response, not_found
from fleet_api.openapi import Operation
from fleet_api.routes import OPENAPI, parse_body, parse_query, user_db
from taskfleet.core.messages import ID_PATTERN
from taskfleet.data import notifications
from taskfleet.data.toolspecs import EMAIL_PATTERN

Event = Literal["task.completed", "task.failed"]


class OwnerQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(None, pattern=ID_PATTERN, description="Service scope only.")


class LogQuery(OwnerQuery):
    limit: int = Field(50, ge=1, le=200)


class EmailSettingsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=254, pattern=EMAIL_PATTERN, description="Where to send them.")
    min_duration_s: float = Field(
        60, ge=0, le=30 * 86400, description="Only tasks that ran at least this long."
    )
    events: list[Event] = Field(
        default=["task.completed", "task.failed"], min_length=1, max_length=2
    )
    enabled: bool = True
    user_id: str | None = Field(None, pattern=ID_PATTERN, description="Service scope only.")


class EmailSettings(BaseModel):
    user_id: str
    email: str
    min_duration_s: float
    events: list[Event]
    enabled: bool
    updated_at: datetime


class Notification(BaseModel):
    task_id: UUID
    event: Event
    email: str
    status: Literal["pending", "sending", "sent", "failed"] = Field(
        description="failed: refused by the mail server, or its sender was lost mid-send."
    )
    created_at: datetime
    sent_at: datetime | None
    last_error: str | None


class NotificationList(BaseModel):
    notifications: list[Notification] = Field(description="Newest first.")


async def get_email_settings(request: web.Request) -> web.Response:
    """The caller's choice; 404 when they asked for no notifications."""
    user_id = acting_for(request, parse_query(request, OwnerQuery).user_id, reading=True,
                         what="notification settings")  # fmt: skip
    found = await notifications.get_settings(user_db(request, user_id), user_id)
    if found is None:
        raise not_found("no email notifications asked for")
    return json_response(EmailSettings.model_validate(found).model_dump(mode="json"))


async def put_email_settings(request: web.Request) -> web.Response:
    """Ask for (or change) email notifications: the whole choice, answered as stored."""
    body = await parse_body(request, EmailSettingsRequest)
    user_id = acting_for(request, body.user_id, reading=False, what="notification settings")
    stored = await notifications.put_settings(
        user_db(request, user_id), user_id, email=body.email, min_duration_s=body.min_duration_s,
        events=list(dict.fromkeys(body.events)), enabled=body.enabled,
    )  # fmt: skip
    return json_response(EmailSettings.model_validate(stored).model_dump(mode="json"))


async def delete_email_settings(request: web.Request) -> web.Response:
    """No more email notifications; 404 if none were asked for."""
    user_id = acting_for(request, parse_query(request, OwnerQuery).user_id, reading=False,
                         what="notification settings")  # fmt: skip
    if not await notifications.delete_settings(user_db(request, user_id), user_id):
        raise not_found("no email notifications asked for")
    return web.Response(status=204)


async def list_notifications(request: web.Request) -> web.Response:
    """The caller's notifications and what became of each, newest first."""
    query = parse_query(request, LogQuery)
    user_id = acting_for(request, query.user_id, reading=True, what="user")
    rows = await notifications.list_notifications(user_db(request, user_id), user_id, query.limit)
    answer = NotificationList(notifications=[Notification.model_validate(r) for r in rows])
    return json_response(answer.model_dump(mode="json"))


def add_notification_routes(app: web.Application) -> None:
    """Declare the email notification routes."""
    api, tags, path = app[OPENAPI], ("notifications",), "/api/notifications/email"
    ops = [
        Operation("GET", path, get_email_settings, "Your email notification settings",
                  EmailSettings, query=OwnerQuery, errors=(401, 404, 422, 503), tags=tags),
        Operation("PUT", path, put_email_settings, "Ask for email notifications", EmailSettings,
                  body=EmailSettingsRequest, errors=(400, 401, 403, 413, 422, 503), tags=tags),
        Operation("DELETE", path, delete_email_settings, "Stop email notifications", None, 204,
                  query=OwnerQuery, errors=(401, 403, 404, 422, 503), tags=tags),
        Operation("GET", "/api/notifications", list_notifications, "Your email notifications",
                  NotificationList, query=LogQuery, errors=(401, 404, 422, 503), tags=tags),
    ]  # fmt: skip
    for op in ops:
        api.add(app, op)
