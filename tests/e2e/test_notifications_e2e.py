"""Email notifications through real processes (`taskfleet api`, a chat worker, tool workers and
the tests' SMTP server): a user who asked for them gets one mail when their chat task completes;
a tool worker killed right after sending one does not make another send it again."""

import functools
from collections.abc import Callable
from email import message_from_bytes, policy
from uuid import UUID

import aiohttp
import asyncpg

from taskfleet.core.settings import Settings
from tests.conftest import Proc, free_port, process_env, wait_for
from tests.e2e.conftest import wait_task
from tests.e2e.console_harness import api_ready
from tests.integration.api_client import auth, new_user
from tests.smtp_server import Inbox


async def post(base: str, user: str, method: str, path: str, body: object) -> dict[str, object]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{base}{path}", json=body, headers=auth(user)) as resp,
    ):
        answer: dict[str, object] = await resp.json()
        assert resp.status in (200, 202), answer
        return answer


async def test_one_mail_per_long_task_and_none_again_after_a_kill(
    settings: Settings, spawn: Callable[..., Proc], db: asyncpg.Pool, smtp: tuple[Inbox, str]
) -> None:
    inbox, smtp_url = smtp
    env = functools.partial(process_env, settings, SMTP_URL=smtp_url, NOTIFICATION_LEASE_S=2)
    port, user = free_port(), new_user("mail")
    base = f"http://127.0.0.1:{port}"
    spawn(["api", "--port", str(port)], env(), name="api")
    spawn(["worker", "chat"], env(), name="chat")
    # Given a tool worker that dies right after a notification went out, before it is recorded
    doomed = spawn(["worker", "tool"], env(TASKFLEET_FAULTS="after_notification"), name="tool-1")
    await wait_for(lambda: api_ready(base), what="the API to be ready", timeout_s=30)
    await post(base, user, "PUT", "/api/notifications/email",
               {"email": "grace@example.com", "min_duration_s": 0})  # fmt: skip

    # When a chat task of the user completes
    first = await post(base, user, "POST", "/api/chat/stream",
                       {"chat_id": "mail", "content": "hello"})  # fmt: skip
    await wait_task(db, UUID(str(first["task_id"])), "completed")

    async def died() -> bool:
        return doomed.popen.poll() is not None

    await wait_for(died, timeout_s=30, what="the tool worker to die at the fault point")
    assert len(inbox.messages) == 1
    mail = message_from_bytes(inbox.messages[0], policy=policy.default)
    assert mail["To"] == "grace@example.com"
    assert mail["Subject"].strip() == f"taskfleet: your chat task {first['task_id']} completed"
    assert mail["Message-ID"] == f"<{first['task_id']}.notification@taskfleet>"

    # Then another tool worker fails it once its lease is over, and does not send it again
    spawn(["worker", "tool"], env(), name="tool-2")

    async def given_up() -> bool:
        status = await db.fetchval(
            "SELECT status FROM notifications WHERE task_id = $1", UUID(str(first["task_id"]))
        )
        return bool(status == "failed")

    await wait_for(given_up, timeout_s=30, what="the lost notification to be failed")
    # And the next task's notification goes out through it, once
    second = await post(base, user, "POST", "/api/chat/stream",
                        {"chat_id": "mail", "content": "again"})  # fmt: skip
    await wait_task(db, UUID(str(second["task_id"])), "completed")

    async def two() -> bool:
        return len(inbox.messages) == 2

    await wait_for(two, timeout_s=30, what="the second notification")
    assert f"<{second['task_id']}.notification@taskfleet>".encode() in inbox.messages[1]
    log = await post(base, user, "GET", "/api/notifications", None)
    statuses = {n["task_id"]: n["status"] for n in log["notifications"]}  # type: ignore[attr-defined]
    assert statuses == {first["task_id"]: "failed", second["task_id"]: "sent"}
    assert len(inbox.messages) == 2
