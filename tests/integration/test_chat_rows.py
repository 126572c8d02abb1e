"""The chat side of the generic transitions (store/sql/tf_chat_*.sql): what each one does to
a chat task's user and assistant messages, and that a task of another type has none."""

from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest

from taskfleet.runtime.kernel import Kernel
from tests.integration.api_client import api, new_user, submit

QUEUE = "chat_tasks"


@pytest.fixture
def db(kernel: Kernel) -> asyncpg.Pool:
    return kernel.pool


async def claim(db: asyncpg.Pool, task_id: UUID, *, attempt: int = 1, **over: Any) -> Any:
    args = {"type": "chat_message", "user": "chat-rows", "chat": "c-rows", "max_attempts": 3}
    args.update(over)
    return await db.fetchrow(
        "SELECT * FROM tf_claim($1, $2, $3, $4, $5, $6, false, $7, $8, 0, 0.1, NULL, NULL, 60)",
        task_id,
        args["type"],
        args["user"],
        args["chat"],
        {"content": "hello"},
        attempt,
        QUEUE,
        args["max_attempts"],
    )


async def rows(db: asyncpg.Pool, task_id: UUID) -> dict[str, tuple[str, str]]:
    found = await db.fetch("SELECT role, status, content FROM messages WHERE task_id = $1", task_id)
    return {r["role"]: (r["status"], r["content"]) for r in found}


async def test_a_chat_task_created_by_its_claim_gets_both_messages(db: asyncpg.Pool) -> None:
    task_id = uuid4()
    claimed = await claim(db, task_id)
    assert claimed["verdict"] == "claimed"
    assistant = await db.fetchval(
        "SELECT id FROM messages WHERE task_id = $1 AND role = 'assistant'", task_id
    )
    assert claimed["message_id"] == assistant
    assert await rows(db, task_id) == {
        "user": ("completed", "hello"),
        "assistant": ("pending", ""),
    }
    # Made by the database, time-ordered (tf_uuid7): new rows go to the right-hand edge of
    # messages' primary key, whatever the history's size (migrations/0030, core/ids.py).
    made = await db.fetch("SELECT id FROM messages WHERE task_id = $1", task_id)
    assert [r["id"].version for r in made] == [7, 7]


async def test_complete_writes_the_reply_and_only_a_reply(db: asyncpg.Pool) -> None:
    silent, replied = uuid4(), uuid4()
    for task_id, reply in ((silent, None), (replied, "hi there")):
        fence = (await claim(db, task_id))["fence"]
        assert await db.fetchval("SELECT tf_complete($1, $2, '{}', $3)", task_id, fence, reply)
    assert (await rows(db, silent))["assistant"] == ("pending", "")
    assert (await rows(db, replied))["assistant"] == ("completed", "hi there")


async def test_fail_then_rerun(db: asyncpg.Pool) -> None:
    task_id = uuid4()
    fence = (await claim(db, task_id))["fence"]
    await db.execute("SELECT tf_complete($1, $2, '{}', 'partial')", task_id, fence + 1)  # stale
    error = {"code": "permanent", "message": "no"}
    assert await db.fetchval("SELECT tf_fail($1, $2, $3, $4, 'x')", task_id, fence, error, QUEUE)
    assert (await rows(db, task_id))["assistant"] == ("failed", "")

    rerun = await db.fetchrow("SELECT * FROM tf_rerun($1, $2, 60)", task_id, QUEUE)
    assert rerun["outcome"] == "queued"
    assert (await rows(db, task_id))["assistant"] == ("pending", "")


async def test_a_cancel_fails_the_reply_unless_it_was_complete(db: asyncpg.Pool) -> None:
    running, queued = uuid4(), uuid4()
    fence = (await claim(db, running))["fence"]
    assert await db.fetchval("SELECT tf_cancelled($1, $2, NULL)", running, fence)
    assert (await rows(db, running))["assistant"] == ("failed", "")

    fence = (await claim(db, queued))["fence"]
    assert await db.fetchval("SELECT tf_complete($1, $2, '{}', 'done')", queued, fence)
    await db.execute("UPDATE tasks SET status = 'queued' WHERE id = $1", queued)
    outcome = await db.fetchrow("SELECT * FROM tf_request_cancel($1)", queued)
    assert outcome["outcome"] == "cancelled"
    assert (await rows(db, queued))["assistant"] == ("completed", "done")


async def test_an_exhausted_claim_fails_the_reply(db: asyncpg.Pool) -> None:
    task_id = uuid4()
    await claim(db, task_id, max_attempts=1)
    await db.execute("UPDATE tasks SET status = 'queued' WHERE id = $1", task_id)
    assert (await claim(db, task_id, attempt=2))["verdict"] == "exhausted"
    assert (await rows(db, task_id))["assistant"] == ("failed", "")


async def test_a_task_of_another_type_has_no_messages(db: asyncpg.Pool) -> None:
    task_id = uuid4()
    await db.execute(
        "INSERT INTO tasks (id, type, user_id, chat_id, max_attempts)"
        " VALUES ($1, 'tool_execution', 'chat-rows', 'c-rows', 3)",
        task_id,
    )
    claimed = await claim(db, task_id, type="tool_execution")
    assert (claimed["verdict"], claimed["message_id"]) == ("claimed", None)
    assert await db.fetchval(
        "SELECT tf_complete($1, $2, '{}', 'ignored')", task_id, claimed["fence"]
    )
    assert await rows(db, task_id) == {}


async def test_a_chat_submitted_through_the_api_has_time_ordered_ids(kernel: Kernel) -> None:
    """The API makes the task's id (core/ids.py) and the database its messages' (tf_uuid7):
    UUIDv7 all, so that months of history do not scatter their inserts (migrations/0030)."""
    user = new_user("ids")
    async with api(kernel) as client:
        body = await submit(client, user, chat="c-ids")
    task_id = UUID(body["task_id"])
    made = await kernel.pool.fetch("SELECT id FROM messages WHERE task_id = $1", task_id)
    assert [task_id.version, *(r["id"].version for r in made)] == [7, 7, 7]
