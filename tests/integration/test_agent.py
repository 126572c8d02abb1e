"""The agent loop with the scripted provider, on the real RabbitMQ and PostgreSQL: tool calls
as child tasks, a parent that waits without a worker, failures the model is told about,
memories (docs/agent.md)."""

import asyncio
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from taskfleet.core.errors import StaleClaim
from taskfleet.data import operations
from taskfleet.data.toolspecs import ToolArgs
from taskfleet.llm import prompts
from taskfleet.llm.scripted import ScriptedModel
from taskfleet.llm.types import ChatHistory
from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.path.waiting import Waiting
from taskfleet.runtime.kernel import Kernel
from taskfleet.store.records import NewTask
from tests.conftest import wait_for
from tests.integration.agent_helpers import (
    TOOL,
    chat_handler,
    children,
    revealed,
    tool_handler,
)
from tests.integration.api_client import api, auth, new_user
from tests.integration.conftest import (
    ConsumerFactory,
    chat_message,
    drain_dlq,
    publish,
    task_row,
    wait_status,
)
from tool_worker.registry import RateLimit, Tool, ToolContext
from tool_worker.settings import ToolWorkerSettings
from tool_worker.tools import default_registry


class TestToolRound:
    async def test_calc_runs_as_a_child_while_the_parent_waits_without_its_worker(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        # Given one chat worker slot and no tool worker yet
        chat = await consume(chat_handler(kernel), concurrency=1)
        user = new_user()
        msg = chat_message(user_id=user, content="calc: 2*21", chat_id="calc")
        await publish(kernel, msg)
        # When the model asks for the calculator, the chat task waits for a child tool task
        waiting = await wait_status(kernel, msg.task_id, "waiting")
        [child] = await children(kernel, msg.task_id)
        assert (child["type"], child["user_id"], child["chat_id"]) == (
            "tool_execution",
            user,
            "calc",
        )
        assert child["input"] == {
            "call_id": "call_1_0",
            "name": "calculator",
            "arguments": {"expression": "2*21"},
        }
        assert revealed(kernel, waiting)["checkpoint"]["pending"] == [
            {"call_id": "call_1_0", "name": "calculator", "task_id": str(child["id"])}
        ]
        assert (waiting["stage"], waiting["status_message"]) == ("tools", "waiting for calculator")
        # ... and its message was acknowledged: the only slot answers another chat meanwhile
        assert chat.inflight == {}
        other = chat_message(user_id=user, content="meanwhile", chat_id="other")
        await publish(kernel, other)
        assert (await wait_status(kernel, other.task_id, "completed"))["output"][
            "reply"
        ] == "You said: meanwhile"
        assert (await task_row(kernel, msg.task_id))["status"] == "waiting"  # type: ignore[index]

        # When a tool worker runs the child, the parent resumes and answers with the result
        await consume(tool_handler(kernel), spec=TOOL)
        done = await wait_status(kernel, msg.task_id, "completed")
        child = revealed(kernel, await task_row(kernel, child["id"]))  # type: ignore[arg-type]
        assert (child["status"], child["output"]) == (
            "completed",
            {
                "call_id": "call_1_0",
                "name": "calculator",
                "result": {"expression": "2*21", "result": 42},
            },
        )
        assert done["output"]["reply"] == "2*21 = 42"
        assert done["output"]["steps"] == 1
        assert done["output"]["tool_calls"] == [
            {"call_id": "call_1_0", "name": "calculator", "task_id": str(child["id"]), "ok": True}
        ]
        # The resume was a second attempt, and the waiting step gave its attempt back
        assert (done["attempts"], done["max_attempts"]) == (2, 6)
        reply = await kernel.pool.fetchrow(
            "SELECT content, status FROM messages WHERE task_id = $1 AND role = 'assistant'",
            msg.task_id,
        )
        assert (reply["content"], reply["status"]) == ("2*21 = 42", "completed")

    async def test_failing_unknown_and_invalid_calls_are_told_and_the_parent_answers(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        # Given a tool that raises, next to the built-in ones
        class NoArgs(ToolArgs):
            pass

        async def explode(_: NoArgs, __: ToolContext) -> None:
            raise RuntimeError("the fuse was lit")

        registry = default_registry(ToolWorkerSettings.of(kernel.settings))
        registry.add(
            Tool(
                name="explode",
                args=NoArgs,
                fn=explode,
                timeout_s=5,
                rate=RateLimit(per_s=100, burst=10),
            )
        )
        await consume(chat_handler(kernel))
        await consume(tool_handler(kernel, registry), spec=TOOL)
        # When one message asks for three calls that cannot succeed
        msg = chat_message(
            user_id=new_user(),
            content=('tool: explode {} && tool: nope {} && tool: calculator {"expr": 1}'),
        )
        await publish(kernel, msg)
        done = await wait_status(kernel, msg.task_id, "completed")
        # Then each child failed permanently at once, and the parent resumed once
        kids = await children(kernel, msg.task_id)
        assert [(k["status"], k["attempts"], k["error"]["code"]) for k in kids] == [
            ("failed", 1, "tool_failed"),
            ("failed", 1, "tool_unknown"),
            ("failed", 1, "tool_invalid_arguments"),
        ]
        assert done["attempts"] == 2
        # And the answer says what failed and why
        lines = done["output"]["reply"].splitlines()
        assert lines[0] == "explode failed: explode raised RuntimeError: the fuse was lit"
        assert lines[1].startswith("nope failed: unknown tool 'nope'")
        assert lines[2].startswith("calculator failed: invalid arguments for calculator")
        assert [c["error"]["code"] for c in done["output"]["tool_calls"]] == [
            "tool_failed",
            "tool_unknown",
            "tool_invalid_arguments",
        ]
        assert len(await drain_dlq(kernel, TOOL.name)) == 3

    async def test_a_parent_cancelled_while_waiting_stays_cancelled(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        await consume(chat_handler(kernel))
        msg = chat_message(user_id=new_user(), content="calc: 1+1")
        await publish(kernel, msg)
        await wait_status(kernel, msg.task_id, "waiting")
        assert await operations.request_cancel(kernel, kernel.pool, msg.task_id) == "cancelled"
        # When its child still runs to the end
        await consume(tool_handler(kernel), spec=TOOL)
        [child] = await children(kernel, msg.task_id)
        await wait_status(kernel, child["id"], "completed")
        # Then nothing re-queues the parent
        parent = await task_row(kernel, msg.task_id)
        assert parent is not None
        assert (parent["status"], parent["attempts"]) == ("cancelled", 1)
        assert not await kernel.pool.fetchval(
            "SELECT count(*) FROM outbox WHERE task_id = $1", msg.task_id
        )


class Spy(ScriptedModel):
    """The scripted model, keeping every conversation it was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[ChatHistory] = []

    def stream(self, messages: ChatHistory, **kwargs: Any) -> Any:
        self.seen.append(list(messages))
        return super().stream(messages, **kwargs)


class TestMemories:
    async def test_facts_are_saved_once_loaded_into_the_next_chat_and_listed(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        spy = Spy()
        await consume(chat_handler(kernel, spy))
        user = new_user()

        async def say(text: str, chat: str) -> dict[str, Any]:
            msg = chat_message(user_id=user, content=text, chat_id=chat)
            await publish(kernel, msg)
            return await wait_status(kernel, msg.task_id, "completed")

        first = await say("Hi, my name is Ann and I live in Oslo.", "c1")
        assert first["output"]["reply"] == "You said: Hi, my name is Ann and I live in Oslo."
        assert revealed(kernel, first)["output"]["memories"] == {
            "facts": ["The user's name is Ann.", "The user lives in Oslo."],
            "saved": 2,
            "reasked": False,
        }
        # The same fact told again, spelt differently, is not stored twice
        again = await say("my name is ann", "c2")
        assert again["output"]["memories"]["saved"] == 0
        # And the next chat's model sees the memories and the chat's history
        spy.seen.clear()
        await say("what do you know?", "c1")
        conversation = spy.seen[0]
        assert conversation[0] == {
            "role": "system",
            "content": f"{prompts.SYSTEM}\n\n{prompts.MEMORIES_HEAD}\n"
            "- The user's name is Ann.\n- The user lives in Oslo.",
        }
        assert conversation[1:] == [
            {"role": "user", "content": "Hi, my name is Ann and I live in Oslo."},
            {"role": "assistant", "content": "You said: Hi, my name is Ann and I live in Oslo."},
            {"role": "user", "content": "what do you know?"},
        ]
        # The API lists them: to their user, to a service; to anyone else they do not exist
        async with api(kernel) as client:
            mine = await client.get(f"/api/users/{user}/memories", headers=auth(user))
            body = await mine.json()
            assert mine.status == 200, body
            assert sorted(m["fact"] for m in body["memories"]) == [
                "The user lives in Oslo.",
                "The user's name is Ann.",
            ]
            assert {UUID(m["source_task_id"]) for m in body["memories"]} == {first["id"]}
            theirs = await client.get(f"/api/users/{user}/memories", headers=auth("mallory"))
            assert theirs.status == 404
            assert (await theirs.json())["error"]["code"] == "not_found"
            service = await client.get(
                f"/api/users/{user}/memories?limit=1", headers=auth("backend", "service")
            )
            assert service.status == 200
            assert len((await service.json())["memories"]) == 1
            bad = await client.get(f"/api/users/{user}/memories?limit=0", headers=auth(user))
            assert bad.status == 422


async def test_an_attempt_that_lost_its_claim_cannot_go_waiting(
    kernel: Kernel, consume: ConsumerFactory
) -> None:
    """tf_wait is fenced like every outcome: no children for a task another attempt holds or
    that is already over."""
    fences: list[int] = []  # the attempt's, as it ran

    async def done(ctx: TaskContext) -> TaskResult:
        fence = await kernel.pool.fetchval("SELECT fence FROM tasks WHERE id = $1", ctx.task_id)
        fences.append(fence)
        return TaskResult({"ok": True})

    await consume(done)
    msg = chat_message(user_id=new_user())
    await publish(kernel, msg)
    await wait_status(kernel, msg.task_id, "completed")
    child = NewTask(type=TOOL.task_type, user_id=msg.user_id, input={}, max_attempts=1)
    waiting = Waiting([child], {"v": 1})
    with pytest.raises(StaleClaim):
        await kernel.store.wait(msg.task_id, fences[0], waiting.state, waiting.rows(), 0)
    assert await children(kernel, msg.task_id) == []


async def test_the_parent_is_requeued_once_when_its_last_children_end_together(
    kernel: Kernel,
) -> None:
    """Two children ending in concurrent transactions: the second sees the first's commit."""
    user = new_user()
    parent = chat_message(user_id=user)
    async with kernel.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO tasks (id, type, user_id, chat_id, input, max_attempts, status, attempts,"
            " fence) VALUES ($1, 'chat_message', $2, 'c', '{}', 5, 'processing', 1, 1)",
            parent.task_id,
            user,
        )
    kids = [NewTask(type=TOOL.task_type, user_id=user, input={}, max_attempts=1) for _ in "ab"]
    waiting = Waiting(kids, {"v": 1})
    await kernel.store.wait(parent.task_id, 1, waiting.state, waiting.rows(), 60)
    a, b = await kernel.pool.acquire(), await kernel.pool.acquire()
    try:
        ta, tb = a.transaction(), b.transaction()
        await ta.start()
        await tb.start()
        end = "UPDATE tasks SET status = 'completed' WHERE id = $1"
        await a.execute(end, kids[0].task_id)  # holds the parent's lock until it commits
        second = asyncio.create_task(b.execute(end, kids[1].task_id))
        await wait_for(lambda: _blocked(kernel, b), what="the second child to wait for the lock")
        await ta.commit()
        await second
        await tb.commit()
    finally:
        await kernel.pool.release(a)
        await kernel.pool.release(b)
    row = await task_row(kernel, parent.task_id)
    assert row is not None
    assert row["status"] == "queued"
    rows = await kernel.pool.fetch(
        "SELECT queue, attempt, kind FROM outbox WHERE task_id = $1", parent.task_id
    )
    assert [tuple(r) for r in rows] == [("chat_tasks", 2, "task")]


async def _blocked(kernel: Kernel, conn: Any) -> bool:
    # As the login role: the kernel's role may not read other sessions' wait events.
    watcher = await asyncpg.connect(kernel.settings.database_url)
    try:
        return bool(
            await watcher.fetchval(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1",
                conn.get_server_pid(),
            )
        )
    finally:
        await watcher.close()
