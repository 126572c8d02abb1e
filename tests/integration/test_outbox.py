"""The outbox: a task committed by the API whose publish failed is published by the relay."""

from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from fleet_api.app import create_app
from taskfleet.auth import issue_token
from taskfleet.context import TaskContext, TaskResult
from taskfleet.errors import PublishFailed
from taskfleet.kernel import Kernel
from taskfleet.metrics import OUTBOX_PUBLISHED
from tests.conftest import JWT_SECRET, wait_for
from tests.integration.conftest import ConsumerFactory, wait_status


class TestOutboxRelay:
    async def test_api_publish_fails_after_commit_and_the_relay_publishes_it(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        async def reply(ctx: TaskContext) -> TaskResult:
            return TaskResult({"reply": "ok"}, reply="ok")

        await consume(reply)
        attempted: list[str] = []

        async def broken_publish(
            queue: str, body: bytes, message_id: str, headers: dict[str, Any]
        ) -> None:
            # What a crash between commit and publish leaves behind: committed, not published.
            attempted.append(message_id)
            raise PublishFailed("simulated: the API died before publishing")

        relayed_before = OUTBOX_PUBLISHED.labels("task")._value.get()
        app = create_app(kernel, publish=broken_publish)
        token = issue_token(JWT_SECRET, "alice")
        async with TestClient(TestServer(app)) as client:
            resp = await client.post(
                "/api/chat/stream",
                json={"chat_id": "relay", "content": "are you there?"},
                headers={"Authorization": f"Bearer {token}"},
            )
            body: dict[str, Any] = await resp.json()
        assert resp.status == 202, body
        task = await wait_status(kernel, body["task_id"], "completed")
        assert attempted == [body["task_id"]]
        assert task["attempts"] == 1
        # Only the relay can have published it (the API's publish failed).
        assert OUTBOX_PUBLISHED.labels("task")._value.get() == relayed_before + 1

        async def outbox_empty() -> bool:
            # The relay deletes its row in the transaction that published it, which can
            # commit after the worker already completed the task.
            count = await kernel.pool.fetchval(
                "SELECT count(*) FROM outbox WHERE task_id = $1", body["task_id"]
            )
            return bool(count == 0)

        await wait_for(outbox_empty, what="the relay to drop its row")
