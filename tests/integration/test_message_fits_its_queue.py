"""A message must fit its queue: one that does not is dead-lettered and never runs."""

from typing import Any
from uuid import UUID, uuid4

import pytest

from taskfleet.core.constants import TaskType
from taskfleet.core.messages import TaskMessage
from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.runtime.kernel import Kernel
from tests.conftest import wait_for
from tests.integration.conftest import (
    ConsumerFactory,
    chat_message,
    drain_dlq,
)
from tests.integration.copy_helpers import TOOL

FORGED_TOOL_CALL = TaskMessage(
    task_id=uuid4(),
    type=TaskType.TOOL,
    user_id="mallory",
    payload={"call_id": "1", "name": "send_email", "arguments": {"to": "x@example.com"}},
)


@pytest.mark.parametrize(
    ("message", "reason"),
    [(FORGED_TOOL_CALL, "no task"), (chat_message(), "its queue is chat_tasks")],
    ids=["a tool call for no task", "a chat message on tool_executions"],
)
async def test_a_message_that_does_not_fit_its_queue_is_dead_lettered_and_never_runs(
    kernel: Kernel, consume: ConsumerFactory, message: TaskMessage, reason: str
) -> None:
    ran: list[UUID] = []

    async def tool(ctx: TaskContext) -> TaskResult:
        ran.append(ctx.task_id)
        return TaskResult({})

    await drain_dlq(kernel, TOOL.name)
    await consume(tool, spec=TOOL)
    await kernel.broker.publish(
        kernel.settings.queue(TOOL.name), message.dumps(), message_id=str(message.task_id)
    )
    [letter] = await wait_for(lambda: _letters(kernel, TOOL.name), what="the dead letter")
    assert reason in str(letter.headers["x-taskfleet-reason"])
    assert ran == []
    assert await kernel.store.get_task(message.task_id) is None


async def _letters(kernel: Kernel, queue: str) -> list[Any] | None:
    return (await drain_dlq(kernel, queue)) or None
