"""The agent through real processes: a tool-worker SIGKILLed after send_email sent but before
its ack still sends exactly one email; a background loop that raises in a worker is logged,
counted and restarted."""

import functools
import json
from collections.abc import Callable
from typing import Any
from uuid import uuid4

import aio_pika
import aiohttp
import asyncpg

from taskfleet.core.constants import TaskType
from taskfleet.core.messages import TaskMessage
from taskfleet.core.settings import Settings
from taskfleet.security.crypto import Keyring
from taskfleet.store.records import NewTask
from taskfleet.store.tasks import TaskStore
from tests.conftest import Proc, process_env, wait_for
from tests.e2e.conftest import wait_task
from tests.smtp_server import Inbox


async def publish_chat(settings: Settings, msg: TaskMessage) -> None:
    """Straight to chat_tasks, as a chat backend may (DESIGN.md §5)."""
    conn = await aio_pika.connect(settings.amqp_url)
    async with conn:
        channel = await conn.channel(publisher_confirms=True)
        await channel.default_exchange.publish(
            aio_pika.Message(
                msg.dumps(),
                message_id=str(msg.task_id),
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=settings.queue("chat_tasks"),
        )


async def test_a_tool_worker_killed_between_send_email_and_its_ack_sends_exactly_one(
    settings: Settings, spawn: Callable[..., Proc], db: asyncpg.Pool, smtp: tuple[Inbox, str]
) -> None:
    inbox, smtp_url = smtp
    chat = spawn(["worker", "chat"], process_env(settings, SMTP_URL=smtp_url), name="chat")
    # Given a tool worker that dies right after a side effect ran and was recorded
    doomed = spawn(
        ["worker", "tool"],
        name="tool-1",
        env=process_env(settings, SMTP_URL=smtp_url, TASKFLEET_FAULTS="after_side_effect"),
    )
    for proc in (chat, doomed):  # their queues exist once they consume
        await wait_for(functools.partial(_metrics_port, proc), what=f"{proc.name} to start")
    msg = TaskMessage(
        task_id=uuid4(),
        type=TaskType.CHAT,
        user_id="grace",
        chat_id="mail",
        payload={"content": "email: bob@example.com | Hello | Hi Bob"},
    )
    await publish_chat(settings, msg)

    async def died() -> bool:
        return doomed.popen.poll() is not None

    await wait_for(died, timeout_s=30, what="the tool worker to die at the fault point")
    assert '"point": "after_side_effect"' in doomed.output()
    assert len(inbox.messages) == 1
    child = await db.fetchrow("SELECT * FROM tasks WHERE parent_id = $1", msg.task_id)
    assert (child["status"], child["attempts"]) == ("processing", 1)  # neither done nor acked

    # When another tool worker gets the redelivered message
    spawn(["worker", "tool"], process_env(settings, SMTP_URL=smtp_url), name="tool-2")
    done = await wait_task(db, msg.task_id, "completed", timeout_s=60)

    # Then the call completed from its record, and the email went out once
    child = await db.fetchrow("SELECT * FROM tasks WHERE id = $1", child["id"])
    assert (child["status"], child["attempts"]) == ("completed", 2)
    assert len(inbox.messages) == 1
    assert b"Subject: Hello" in inbox.messages[0]
    assert f"Message-ID: <{child['id']}@taskfleet>".encode() in inbox.messages[0]
    record = await db.fetchrow(
        "SELECT state, result FROM tool_calls WHERE task_id = $1", child["id"]
    )
    assert record["state"] == "succeeded"
    # The same result, each sealed to the call's task (the record by the data layer, the
    # output by the kernel as it completed the task)
    keyring = Keyring.from_settings(settings)
    recorded = keyring.open(record["result"], row=child["id"], field="result")
    assert keyring.open(child["output"]["result"], row=child["id"], field="result") == recorded
    assert recorded["message_id"] == f"<{child['id']}@taskfleet>"
    assert done["output"]["reply"].startswith("send_email: ")
    assert done["output"]["tool_calls"][0]["ok"] is True


async def test_a_background_loop_that_raises_is_logged_counted_and_restarted(
    settings: Settings, spawn: Callable[..., Proc], db: asyncpg.Pool
) -> None:
    # Given a tool worker whose database statements give up after 1 s
    worker = spawn(["worker", "tool"], process_env(settings, DB_TIMEOUT_S=1), name="tool")
    port = await wait_for(lambda: _metrics_port(worker), what="the worker to start")
    # When its outbox relay's table is locked away from it, the relay's statement fails
    conn = await asyncpg.connect(settings.database_url)
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE")
            failure = await wait_for(
                lambda: _failure(worker, "outbox-relay"),
                timeout_s=20,
                what="the relay's failure in the log",
            )
    finally:
        await conn.close()
    # Then the supervisor logged it with its traceback, counted it, and restarts the loop
    assert failure["level"] == "error"
    assert "Traceback" in failure.get("exception", "")
    metrics = await _scrape(port)
    assert 'taskfleet_background_task_failures_total{name="outbox-relay"}' in metrics
    count = _sample(metrics, 'taskfleet_background_task_failures_total{name="outbox-relay"}')
    assert count >= 1
    assert worker.popen.poll() is None

    # And the restarted relay works: a task left to the outbox alone is published and run
    new = NewTask(
        type=TaskType.TOOL,
        user_id="ivan",
        max_attempts=1,
        input={"call_id": "c1", "name": "calculator", "arguments": {"expression": "6*7"}},
    )
    async with db.acquire() as conn, conn.transaction():
        await TaskStore(db).insert_task(conn, new, relay_grace_s=0)
    task = await wait_task(db, new.task_id, "completed")
    # Plain arguments (a task made before sealing) still run; the result is stored sealed
    result = Keyring.from_settings(settings).reveal(task["output"]["result"], row=new.task_id)
    assert result == {"expression": "6*7", "result": 42}


async def _metrics_port(proc: Proc) -> int | None:
    for line in proc.output().splitlines():
        if '"worker_started"' in line:
            return int(json.loads(line)["metrics_port"])
    return None


async def _failure(proc: Proc, task: str) -> dict[str, Any] | None:
    for line in proc.output().splitlines():
        if line.startswith("{") and '"background_task_failed"' in line:
            record: dict[str, Any] = json.loads(line)
            if record.get("task") == task:
                return record
    return None


async def _scrape(port: int) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
        return await r.text()


def _sample(metrics: str, series: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
