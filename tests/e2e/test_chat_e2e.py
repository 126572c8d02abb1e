"""End to end through real processes: POST → chat_tasks → chat-worker → PostgreSQL."""

import json
import os
import signal
from collections.abc import Callable
from typing import Any
from uuid import uuid4

import aiohttp
import asyncpg

from taskfleet.core.constants import TaskType
from taskfleet.core.messages import TaskMessage
from taskfleet.core.settings import Settings
from taskfleet.security.auth import issue_token
from tests.conftest import JWT_SECRET, Proc, free_port, process_env, wait_for
from tests.e2e.conftest import wait_task


async def api_ready(base: str) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{base}/readyz") as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


class TestChatEndToEnd:
    async def test_post_a_message_and_the_reply_is_in_the_chat_history(
        self, settings: Settings, spawn: Callable[..., Proc], db: asyncpg.Pool
    ) -> None:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        spawn(["api", "--port", str(port)], process_env(settings))
        worker = spawn(["worker", "chat"], process_env(settings))
        await wait_for(lambda: api_ready(base), what="the API to be ready")
        headers = {"Authorization": f"Bearer {issue_token(JWT_SECRET, 'erin')}"}
        chat = f"chat-{uuid4().hex[:6]}"
        async with aiohttp.ClientSession(base, headers=headers) as http:
            async with http.post(
                "/api/chat/stream", json={"chat_id": chat, "content": "ping pong"}
            ) as resp:
                accepted: dict[str, Any] = await resp.json()
            assert resp.status == 202, accepted
            assert accepted["status"] == "queued"

            async def completed() -> dict[str, Any] | None:
                async with http.get(f"/api/tasks/{accepted['task_id']}") as r:
                    task: dict[str, Any] = await r.json()
                return task if task["status"] == "completed" else None

            task = await wait_for(completed, what="the task to complete")
            async with http.get(f"/api/chats/{chat}/messages") as resp:
                history = (await resp.json())["messages"]
        assert task["output"]["reply"] == "You said: ping pong"
        assert [(m["role"], m["content"], m["status"]) for m in history] == [
            ("user", "ping pong", "completed"),
            ("assistant", "You said: ping pong", "completed"),
        ]
        assert history[1]["id"] == accepted["message_id"]
        # And the worker's own endpoints say so
        metrics_port = await wait_for(lambda: _metrics_port(worker), what="the worker's port")
        async with aiohttp.ClientSession(f"http://127.0.0.1:{metrics_port}") as http:
            async with http.get("/readyz") as resp:
                ready = await resp.json()

            async def observed() -> str | None:
                # The duration is observed just after the ack, a moment after the commit.
                async with http.get("/metrics") as resp:
                    text = await resp.text()
                return text if 'duration_seconds_count{queue="chat_tasks"} 1.0' in text else None

            metrics = await wait_for(observed, what="the task's duration in /metrics")
        assert ready["checks"] == {"database": True, "broker": True, "consuming": True}
        assert 'taskfleet_tasks_total{outcome="completed",queue="chat_tasks"} 1.0' in metrics


async def _metrics_port(worker: Proc) -> int | None:
    for line in worker.output().splitlines():
        if '"worker_started"' in line:
            return int(json.loads(line)["metrics_port"])
    return None


class TestWorkerKilled:
    async def test_sigkill_mid_task_another_worker_finishes_with_one_reply(
        self, settings: Settings, spawn: Callable[..., Proc], db: asyncpg.Pool
    ) -> None:
        # Given a slow worker (150 ms a word) that has claimed a long reply
        words = " ".join(f"w{i}" for i in range(30))
        msg = TaskMessage(
            task_id=uuid4(),
            type=TaskType.CHAT,
            user_id="frank",
            chat_id="kill",
            payload={"content": words},
        )
        first = spawn(["worker", "chat"], process_env(settings, SCRIPTED_DELAY_MS=150), name="w1")
        await _publish(settings, msg)
        await wait_task(db, msg.task_id, "processing")

        async def partial_saved() -> bool:
            row = await db.fetchrow(
                "SELECT status FROM messages WHERE task_id = $1 AND role = 'assistant'", msg.task_id
            )
            return row is not None and row["status"] == "streaming"

        await wait_for(partial_saved, what="the partial reply")
        # When it is killed mid-task and another worker starts
        os.kill(first.popen.pid, signal.SIGKILL)
        first.popen.wait(timeout=10)
        spawn(["worker", "chat"], process_env(settings, SCRIPTED_DELAY_MS=1), name="w2")
        # Then the other worker finishes it: two attempts, exactly one assistant message
        task = await wait_task(db, msg.task_id, "completed", timeout_s=60)
        assert task["attempts"] == 2
        replies = await db.fetch(
            "SELECT content, status FROM messages WHERE task_id = $1 AND role = 'assistant'",
            msg.task_id,
        )
        assert [(r["content"], r["status"]) for r in replies] == [
            (f"You said: {words}", "completed")
        ]
        assert (
            await db.fetchval("SELECT count(*) FROM messages WHERE task_id = $1", msg.task_id) == 2
        )


async def _publish(settings: Settings, msg: TaskMessage) -> None:
    import aio_pika

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
