"""The email notifier: sends the due rows of `notifications` (taskfleet.data.notifications)
through the send_email tool's SMTP server, at most once each.

It runs in every tool worker, a background loop owned by the kernel's supervisor; the claim
(FOR UPDATE SKIP LOCKED) gives each row to one of them. A claimed row is `sending` until its
outcome is written: a notifier that dies in between leaves it so, and after
NOTIFICATION_LEASE_S it is failed, never sent again (it may have gone). The mail's Message-ID
is the task's, so a receiving system can tell the notification of a task whatever happens.
"""

import asyncio
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import asyncpg
import structlog

from taskfleet.core.faults import Faults
from taskfleet.data import notifications
from taskfleet.handler import Kernel
from tool_worker.mail import REFUSED, UNREACHABLE, deliver
from tool_worker.settings import ToolWorkerSettings

log = structlog.get_logger("tool_worker.notifier")

POLL_S = 1.0
BATCH = 20
RETRY_S = 30.0  # after a server that could not be reached
NAMES = {"chat_message": "chat", "tool_execution": "tool", "document_processing": "document",
         "camera_analysis": "camera"}  # fmt: skip


def compose(row: asyncpg.Record | dict[str, Any], sender: str) -> EmailMessage:
    """The mail of one notification: what ended, how, and how long it ran."""
    what = f"{NAMES.get(row['type'], row['type'])} task {row['task_id']}"
    outcome = "completed" if row["event"] == "task.completed" else "failed"
    message = EmailMessage()
    message["From"] = sender
    message["To"] = row["email"]
    message["Subject"] = f"taskfleet: your {what} {outcome}"
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = f"<{row['task_id']}.notification@taskfleet>"
    ran = (row["completed_at"] - row["started_at"]).total_seconds() if row["completed_at"] else 0
    lines = [f"Your {what} {outcome} after {ran:.1f} s."]
    if row["chat_id"]:
        lines.append(f"Chat: {row['chat_id']}")
    if row["error_code"]:
        lines.append(f"Error: {row['error_code']}")
    lines.append(f"Details: GET /api/tasks/{row['task_id']}")
    message.set_content("\n".join(lines) + "\n")
    return message


async def run_notifier(kernel: Kernel, settings: ToolWorkerSettings, faults: Faults) -> None:
    """Send what is due, then look again every POLL_S (supervisor-owned, restarted on error)."""
    pool = kernel.pool
    while True:
        lost = await notifications.give_up_lost(pool, settings.notification_lease_s)
        if lost:
            log.warning("notifications_lost", count=lost)
        rows = await notifications.claim(pool, BATCH)
        for row in rows:
            await _send(pool, settings, faults, row)
        if len(rows) < BATCH:
            await asyncio.sleep(POLL_S)


async def _send(
    pool: asyncpg.Pool, settings: ToolWorkerSettings, faults: Faults, row: asyncpg.Record
) -> None:
    task_id, attempts = row["task_id"], row["attempts"]
    try:
        await deliver(settings, compose(row, settings.smtp_from))
    except UNREACHABLE as exc:
        await notifications.again(pool, task_id, attempts, f"SMTP not reachable: {exc}", RETRY_S)
        log.warning("notification_deferred", task_id=str(task_id), error=str(exc))
        return
    except REFUSED as exc:
        await notifications.failed(pool, task_id, attempts, f"refused: {exc}")
        log.warning("notification_refused", task_id=str(task_id), error=str(exc))
        return
    # Test-only (TASKFLEET_FAULTS=after_notification): die with the mail sent, not recorded.
    faults.hit("after_notification")
    await notifications.sent(pool, task_id, attempts)
    log.info("notification_sent", task_id=str(task_id), notification_event=row["event"])
