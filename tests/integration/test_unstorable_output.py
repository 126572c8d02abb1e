"""A task's own errors: an output the database cannot store fails the task with that error."""

from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.runtime.kernel import Kernel
from tests.integration.conftest import (
    ConsumerFactory,
    chat_message,
    publish,
    wait_status,
)


class TestTheTasksOwnErrors:
    async def test_an_output_the_database_cannot_store_fails_the_task_with_that_error(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        async def nul(ctx: TaskContext) -> TaskResult:
            return TaskResult({"text": "a\x00b"}, reply="fine")

        await consume(nul)
        msg = chat_message()
        await publish(kernel, msg)
        task = await wait_status(kernel, msg.task_id, "failed")
        assert (task["error"]["code"], task["attempts"]) == ("unstorable_output", 1)
        assert task["error"]["retryable"] is False
