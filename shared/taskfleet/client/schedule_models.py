"""The bodies of the schedule routes (docs/scheduling.md#schedules), shared by the API (which
validates and documents with them) and `taskfleet.client` (which parses with them). Whether a
cron expression or a time zone exists is the API's to say (422), not the schema's."""

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from taskfleet.client.models import Metadata
from taskfleet.core.wire import ID_PATTERN, StorableText

SCHEDULES_LIST_MAX = 500
# IANA names: Europe/Paris, America/Argentina/Buenos_Aires, Etc/GMT+5, UTC.
TIMEZONE_PATTERN = r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+){0,2}$"
Missed = Literal["skip", "run_once"]


class ScheduledTask(BaseModel):
    """What each run submits: a chat message, as `POST /api/chat/stream` takes it. (Other
    types need an upload, a document or a frame, that a schedule cannot repeat; a camera's
    periodic capture is `PUT /api/cameras/{camera_id}`.)"""

    model_config = ConfigDict(extra="forbid")

    type: Literal["chat_message"] = Field("chat_message", description="Chat messages only.")
    chat_id: str = Field(pattern=ID_PATTERN, description="The conversation of every run.")
    content: StorableText = Field(min_length=1, description="The message each run sends.")
    metadata: Metadata | None = None


class ScheduleFields(BaseModel):
    """What both a new schedule and a change may set."""

    model_config = ConfigDict(extra="forbid")

    cron: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="A cron expression: 5 fields, or 6 with seconds as the sixth"
        " (`* * * * * */10`: every 10 s); `@daily` and the like. Exactly one of `cron` and"
        " `interval_s`.",
    )
    interval_s: int | None = Field(
        None, ge=1, le=366 * 86400, description="Run every this many seconds from creation."
    )
    timezone: str | None = Field(
        None,
        max_length=64,
        pattern=TIMEZONE_PATTERN,
        description="The IANA time zone the cron expression reads in (default UTC).",
    )
    task: ScheduledTask | None = None
    missed: Missed | None = Field(
        None,
        description="Ticks missed while no scheduler ran (over SCHEDULE_GRACE_S late):"
        " `skip` drops them (the default), `run_once` makes one run for them all.",
    )
    enabled: bool | None = Field(None, description="false pauses it: no run until resumed.")


class ScheduleRequest(ScheduleFields):
    task: ScheduledTask
    user_id: str | None = Field(
        None, pattern=ID_PATTERN, description="Service scope only: the user to act for."
    )


class SchedulePatch(ScheduleFields):
    """Only the fields given change. A new `cron` drops the `interval_s` and the other way
    round; a new recurrence, or a resume, starts from the first tick after now."""


class Schedule(BaseModel):
    id: UUID
    user_id: str
    cron: str | None
    interval_s: int | None
    timezone: str
    task: ScheduledTask
    missed: Missed
    enabled: bool
    next_run_at: datetime | None = Field(description="The next tick; null while paused.")
    last_run_at: datetime | None = Field(description="The tick of the last run.")
    last_task_id: UUID | None = Field(description="The last run's task.")
    last_error: str | None = Field(
        description="Why the last due tick made no task (e.g. over a quota), else null."
    )
    created_at: datetime
    updated_at: datetime


class ScheduleList(BaseModel):
    schedules: list[Schedule]


class ScheduleQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(
        None, pattern=ID_PATTERN, description="Service or admin: one user's (admin: default all)."
    )
    limit: int = Field(100, ge=1, le=SCHEDULES_LIST_MAX)
