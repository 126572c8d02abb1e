"""A typed client of the taskfleet API (docs/integrating.md), importable with aiohttp,
pydantic and tenacity alone: no database or broker driver (pyproject.toml's import contract
"The client needs only HTTP").

    async with Taskfleet("https://fleet.example", token) as tf:
        accepted = await tf.submit_chat("chat-1", "hello")
        task = await tf.wait(accepted.task_id)
"""

from taskfleet.client.api import Taskfleet
from taskfleet.client.errors import RetryableError, TaskfleetError
from taskfleet.client.models import (
    ChatStreamAccepted,
    DocumentAccepted,
    Event,
    FrameAccepted,
    Task,
    TaskDeleted,
    TaskPage,
)
from taskfleet.client.schedule_models import Schedule
from taskfleet.client.sync import TaskfleetSync

__all__ = [
    "ChatStreamAccepted",
    "DocumentAccepted",
    "Event",
    "FrameAccepted",
    "RetryableError",
    "Schedule",
    "Task",
    "TaskDeleted",
    "TaskPage",
    "Taskfleet",
    "TaskfleetError",
    "TaskfleetSync",
]
