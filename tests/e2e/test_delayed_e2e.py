"""Delayed tasks end to end through real processes: `taskfleet api` and `taskfleet worker chat`.

The API process's own outbox relay publishes the task at its time; the chat worker runs it."""

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from uuid import uuid4

import aiohttp
import asyncpg

from taskfleet.core.settings import Settings
from taskfleet.security.auth import issue_token
from tests.conftest import JWT_SECRET, Proc, free_port, process_env, wait_for
from tests.e2e.conftest import wait_task
from tests.e2e.test_chat_e2e import api_ready


async def test_a_delayed_chat_message_is_answered_at_its_time_and_a_cancelled_one_never(
    settings: Settings, spawn: Callable[..., Proc], db: asyncpg.Pool
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    spawn(["api", "--port", str(port)], process_env(settings))
    spawn(["worker", "chat"], process_env(settings))
    await wait_for(lambda: api_ready(base), what="the API to be ready")
    headers = {"Authorization": f"Bearer {issue_token(JWT_SECRET, 'delia')}"}
    chat = f"chat-{uuid4().hex[:6]}"
    async with aiohttp.ClientSession(base, headers=headers) as http:
        accepted: list[dict[str, Any]] = []
        for content in ("later please", "never mind"):
            body = {"chat_id": chat, "content": content, "delay_s": 2}
            async with http.post("/api/chat/stream", json=body) as resp:
                accepted.append(await resp.json())
                assert resp.status == 202, accepted[-1]
        later, never = accepted
        async with http.post(f"/api/tasks/{never['task_id']}/cancel") as resp:
            assert resp.status == 202
        async with http.get(f"/api/tasks/{later['task_id']}") as resp:
            assert (await resp.json())["status"] == "scheduled"
        task = await wait_task(db, later["task_id"], "completed")
        async with http.get(f"/api/chats/{chat}/messages") as resp:
            history = (await resp.json())["messages"]
    assert task["run_at"] <= task["started_at"] < task["run_at"] + timedelta(seconds=1)
    assert task["output"]["reply"] == "You said: later please"
    cancelled = await db.fetchrow("SELECT * FROM tasks WHERE id = $1", never["task_id"])
    assert (cancelled["status"], cancelled["attempts"], cancelled["started_at"]) == (
        "cancelled", 0, None,
    )  # fmt: skip
    assert [(m["content"], m["status"]) for m in history] == [
        ("later please", "completed"),
        ("You said: later please", "completed"),
        ("never mind", "completed"),
        ("", "failed"),
    ]
