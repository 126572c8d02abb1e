"""What a handler author imports: the one surface of the kernel a worker service needs.

    from taskfleet.handler import ChatPayload, TaskContext, TaskResult

A handler takes the TaskContext of one attempt, its `payload` already validated against its
type's model, and returns a TaskResult (or Waiting for child tasks) or raises a TaskError:
RetryableError to try again later, PermanentError (InvalidPayload for bad input) to fail.
The task's sealed fields (taskfleet.security.fields) reach it, and leave it, in the clear;
`ctx.keyring` is for handing on to the data layer, which seals what it stores (memories...).

A package that adds a tool imports CustomTool, ToolArgs and ToolCall from here too
(taskfleet.data.plugins, docs/tools.md).
"""

from taskfleet.core.constants import QUEUES, TaskType
from taskfleet.core.errors import (
    InvalidPayload,
    PermanentError,
    RetryableError,
    TaskCancelled,
    TaskError,
)
from taskfleet.core.payloads import (
    PAYLOADS,
    CameraPayload,
    ChatPayload,
    DocumentPayload,
    Payload,
    ToolPayload,
)
from taskfleet.core.settings import Settings
from taskfleet.data.plugins import CustomTool, ToolCall
from taskfleet.data.toolspecs import ToolArgs
from taskfleet.path.consumer import Handler
from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.path.waiting import Waiting
from taskfleet.runtime.kernel import Kernel
from taskfleet.security.crypto import Keyring
from taskfleet.worker import BackgroundFactory, HandlerFactory, run_worker

__all__ = [
    "PAYLOADS",
    "QUEUES",
    "BackgroundFactory",
    "CameraPayload",
    "ChatPayload",
    "CustomTool",
    "DocumentPayload",
    "Handler",
    "HandlerFactory",
    "InvalidPayload",
    "Kernel",
    "Keyring",
    "Payload",
    "PermanentError",
    "RetryableError",
    "Settings",
    "TaskCancelled",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskType",
    "ToolArgs",
    "ToolCall",
    "ToolPayload",
    "Waiting",
    "run_worker",
]
