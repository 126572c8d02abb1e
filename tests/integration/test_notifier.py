"""The tool worker's notifier in this process, against the tests' SMTP server and the real
database: what is due is sent and recorded; a server that cannot be reached leaves it due later
(nothing went); a server that refuses it fails it; a claim whose notifier was lost is failed,
never sent again."""

import asyncio
from collections.abc import AsyncIterator
from uuid import UUID

import pytest

from taskfleet.core.faults import Faults
from taskfleet.runtime.kernel import Kernel
from tests.conftest import free_port, wait_for
from tests.integration.api_client import api, auth, new_user, submit
from tests.integration.test_notifications import end
from tests.smtp_server import Inbox
from tool_worker.notifier import run_notifier
from tool_worker.settings import ToolWorkerSettings


async def notification(kernel: Kernel, email: str = "eve@example.com") -> UUID:
    """A user who asked for every notification, and one of their tasks that just failed."""
    user = new_user()
    async with api(kernel) as client:
        choice = {"email": email, "min_duration_s": 0}
        await client.put("/api/notifications/email", json=choice, headers=auth(user))
        task_id = (await submit(client, user))["task_id"]
    await kernel.pool.execute("UPDATE tasks SET error = '{\"code\": \"boom\"}' WHERE id = $1",
                              UUID(task_id))  # fmt: skip
    await end(kernel, task_id, "failed", ran_s=3)
    return UUID(task_id)


async def row(kernel: Kernel, task_id: UUID) -> dict[str, object]:
    found = await kernel.pool.fetchrow("SELECT * FROM notifications WHERE task_id = $1", task_id)
    assert found is not None
    return dict(found)


@pytest.fixture
async def notifier(kernel: Kernel) -> AsyncIterator[object]:
    running: list[asyncio.Task[None]] = []

    def start(smtp_url: str) -> None:
        settings = ToolWorkerSettings.of(kernel.settings, smtp_url=smtp_url)
        running.append(asyncio.ensure_future(run_notifier(kernel, settings, Faults({}))))

    yield start
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)


async def test_a_due_notification_is_sent_and_recorded(
    kernel: Kernel, notifier: object, smtp: tuple[Inbox, str]
) -> None:
    inbox, url = smtp
    task_id = await notification(kernel)
    notifier(url)  # type: ignore[operator]

    async def sent() -> bool:
        return (await row(kernel, task_id))["status"] == "sent"

    await wait_for(sent, what="the notification sent")
    [mail] = [m for m in inbox.messages if str(task_id).encode() in m]
    assert b"failed after 3" in mail
    assert b"Error: boom" in mail


async def test_an_unreachable_server_leaves_it_due_and_a_refusal_fails_it(
    kernel: Kernel, notifier: object
) -> None:
    task_id = await notification(kernel)
    notifier(f"smtp://127.0.0.1:{free_port()}")  # type: ignore[operator]

    async def deferred() -> bool:
        return (await row(kernel, task_id))["last_error"] is not None

    await wait_for(deferred, what="the notification deferred")
    found = await row(kernel, task_id)
    assert found["status"] == "pending"
    assert "not reachable" in str(found["last_error"])


async def test_a_claim_whose_notifier_was_lost_is_failed_not_sent(
    kernel: Kernel, notifier: object, smtp: tuple[Inbox, str]
) -> None:
    inbox, url = smtp
    task_id = await notification(kernel)
    await kernel.pool.execute(
        "UPDATE notifications SET status = 'sending', attempts = 1,"
        " claimed_at = now() - interval '1 hour' WHERE task_id = $1", task_id,
    )  # fmt: skip
    notifier(url)  # type: ignore[operator]

    async def failed() -> bool:
        return (await row(kernel, task_id))["status"] == "failed"

    await wait_for(failed, what="the lost notification failed")
    assert "may have been sent" in str((await row(kernel, task_id))["last_error"])
    assert not [m for m in inbox.messages if str(task_id).encode() in m]
