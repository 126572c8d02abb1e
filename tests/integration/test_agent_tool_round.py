"""The agent loop with the scripted provider, on the real RabbitMQ and PostgreSQL (docs/agent.md):
tool calls run as child tasks while the parent waits without a worker; failing, unknown and
invalid calls are told to the model and the parent answers; a parent cancelled while waiting
stays cancelled."""

from taskfleet.data import operations
from taskfleet.data.toolspecs import ToolArgs
from taskfleet.runtime.kernel import Kernel
from tests.integration.agent_helpers import (
    TOOL,
    chat_handler,
    children,
    revealed,
    tool_handler,
)
from tests.integration.api_client import new_user
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
