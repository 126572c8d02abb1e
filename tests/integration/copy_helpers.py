"""What the tests of copies and of the outbox share: the tool_executions queue."""

from taskfleet.core.constants import QUEUES, TaskType

TOOL = QUEUES[TaskType.TOOL]
