"""The agent with the real HTTP client against a fake OpenAI-compatible server: streamed
replies, repaired JSON, memory extraction that cannot fail the reply, a stream that stalls,
5xx, and the step limit (DESIGN.md §8)."""

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from taskfleet.core.metrics import LLM_JSON_REPAIRS
from taskfleet.llm import prompts
from taskfleet.llm.openai import OpenAIModel
from taskfleet.runtime.kernel import Kernel
from tests.integration.agent_helpers import (
    TOOL,
    chat_handler,
    children,
    revealed,
    tool_handler,
)
from tests.integration.api_client import new_user
from tests.integration.conftest import ConsumerFactory, chat_message, publish, wait_status
from tests.llm_server import (
    Behaviour,
    Calls,
    FakeLLM,
    Hang,
    Stall,
    Status,
    Text,
    is_memory_request,
)

Answer = Callable[[dict[str, Any]], Behaviour]


@pytest.fixture
async def llm() -> AsyncIterator[Callable[..., Any]]:
    """Start a fake LLM answering chat requests with `chat` and memory requests with
    `memory`; returns (server, model) with the model's test-sized limits."""
    started: list[tuple[FakeLLM, OpenAIModel]] = []

    async def start(
        chat: Answer, memory: Answer = lambda _: Text("[]"), **limits: Any
    ) -> tuple[FakeLLM, OpenAIModel]:
        def respond(body: dict[str, Any]) -> Behaviour:
            return memory(body) if is_memory_request(body) else chat(body)

        server = await FakeLLM(respond).start()

        async def no_wait(_: float) -> None:  # retries without sleeping through backoff
            pass

        model = OpenAIModel(
            base_url=server.url, model="fake-1", sleep=no_wait, **{"timeout_s": 5.0, **limits}
        )
        started.append((server, model))
        return server, model

    yield start
    for server, model in started:
        await model.aclose()
        await server.stop()


def tool_round_done(body: dict[str, Any]) -> bool:
    return any(m.get("role") == "tool" for m in body["messages"])


def repairs() -> float:
    return float(LLM_JSON_REPAIRS._value.get())


async def test_streamed_reply_with_malformed_tool_call_and_memory_json_repaired(
    kernel: Kernel, consume: ConsumerFactory, llm: Any
) -> None:
    def chat(body: dict[str, Any]) -> Behaviour:
        if not tool_round_done(body):  # the arguments lack their closing brace
            return Calls([("calculator", '{"expression": "2*21"')])
        return Text("The answer is 42, as you asked.", pieces=4)

    server, model = await llm(chat, memory=lambda _: Text('["The user likes tea."'))
    await consume(chat_handler(kernel, model))
    await consume(tool_handler(kernel), spec=TOOL)
    before = repairs()
    msg = chat_message(user_id=new_user(), content="What is 2*21? I like tea.")
    await publish(kernel, msg)
    done = await wait_status(kernel, msg.task_id, "completed")
    # The tool call's arguments were repaired before the child was made
    [child] = await children(kernel, msg.task_id)
    assert child["input"]["arguments"] == {"expression": "2*21"}
    assert child["status"] == "completed"
    # The model's second request carries its call (repaired) and the tool's result
    second = server.chat_requests()[1]
    assert [m["role"] for m in second["messages"]][-3:] == ["user", "assistant", "tool"]
    call = second["messages"][-2]["tool_calls"][0]
    assert orjson.loads(call["function"]["arguments"]) == {"expression": "2*21"}
    assert orjson.loads(second["messages"][-1]["content"]) == {
        "ok": True,
        "result": {"expression": "2*21", "result": 42},
    }
    assert second["messages"][-1]["tool_call_id"] == call["id"]
    # The streamed reply is the task's reply; the memory JSON was repaired and saved
    assert done["output"]["reply"] == "The answer is 42, as you asked."
    assert done["output"]["model"] == "fake-1"
    assert revealed(kernel, done)["output"]["memories"] == {
        "facts": ["The user likes tea."],
        "saved": 1,
        "reasked": False,
    }
    assert "warnings" not in done["output"]
    assert repairs() - before >= 2


@pytest.mark.parametrize(
    ("answers", "saved", "warned"),
    [
        (["I'd rather not say.", "Still no list, sorry."], 0, True),
        (["I'd rather not say.", '["The user is a pilot."]'], 1, False),
    ],
)
async def test_memory_json_beyond_repair_gets_one_reask_and_never_fails_the_reply(
    kernel: Kernel,
    consume: ConsumerFactory,
    llm: Any,
    answers: list[str],
    saved: int,
    warned: bool,
) -> None:
    queue = list(answers)
    server, model = await llm(
        lambda _: Text("Nice to meet you."), memory=lambda _: Text(queue.pop(0))
    )
    await consume(chat_handler(kernel, model))
    msg = chat_message(user_id=new_user(), content="I fly planes for a living.")
    await publish(kernel, msg)
    done = await wait_status(kernel, msg.task_id, "completed")
    assert done["output"]["reply"] == "Nice to meet you."
    assert (done["output"]["memories"]["saved"], done["output"]["memories"]["reasked"]) == (
        saved,
        True,
    )
    assert ("warnings" in done["output"]) is warned
    if warned:
        [warning] = done["output"]["warnings"]
        assert warning.startswith("memory extraction: no JSON list of facts after one re-ask")
    first, second = server.memory_requests()
    assert first["messages"][0]["content"] == prompts.MEMORY_EXTRACTION
    assert second["messages"][-2] == {"role": "assistant", "content": "I'd rather not say."}
    assert second["messages"][-1]["content"].startswith("That answer was not a JSON list")


async def test_a_memory_extraction_that_hangs_is_cut_at_its_own_timeout(
    kernel: Kernel, consume: ConsumerFactory, llm: Any
) -> None:
    _, model = await llm(lambda _: Text("Hello!"), memory=lambda _: Hang())
    await consume(chat_handler(kernel, model, memory_timeout_s=0.5))
    msg = chat_message(user_id=new_user(), content="hi")
    await publish(kernel, msg)
    done = await wait_status(kernel, msg.task_id, "completed")
    assert done["output"]["reply"] == "Hello!"
    assert done["output"]["warnings"] == ["memory extraction timed out after 0.5s"]


async def test_a_stream_that_stalls_fails_its_attempt_instead_of_hanging(
    kernel: Kernel, consume: ConsumerFactory, llm: Any
) -> None:
    _, model = await llm(lambda _: Stall(before="Let me think"), timeout_s=0.5)
    await consume(chat_handler(kernel, model), max_attempts=1)
    msg = chat_message(user_id=new_user(), content="hi")
    await publish(kernel, msg)
    failed = await wait_status(kernel, msg.task_id, "failed")
    assert failed["error"]["code"] == "llm_timeout"
    assert failed["error"]["retryable"] is True  # it failed only for want of attempts


async def test_three_5xx_fail_the_attempt_retryably_and_the_retry_completes(
    kernel: Kernel, consume: ConsumerFactory, llm: Any
) -> None:
    answers: list[Behaviour] = [Status(500), Status(502), Status(503)]
    server, model = await llm(
        lambda _: answers.pop(0) if answers else Text("Back again."), max_attempts=3
    )
    await consume(chat_handler(kernel, model))
    msg = chat_message(user_id=new_user(), content="hi")
    await publish(kernel, msg)
    done = await wait_status(kernel, msg.task_id, "completed")
    assert done["output"]["reply"] == "Back again."
    assert done["attempts"] == 2  # three HTTP attempts in the first, one in the second
    assert len(server.chat_requests()) == 4


async def test_after_max_agent_steps_the_model_answers_without_tools(
    kernel: Kernel, consume: ConsumerFactory, llm: Any
) -> None:
    def chat(body: dict[str, Any]) -> Behaviour:  # a model that would call tools forever
        if "tools" in body:
            return Calls([("calculator", '{"expression": "1+1"}')])
        return Text("Here is what I have.")

    server, model = await llm(chat)
    await consume(chat_handler(kernel, model, max_agent_steps=2))
    await consume(tool_handler(kernel), spec=TOOL)
    msg = chat_message(user_id=new_user(), content="loop forever")
    await publish(kernel, msg)
    done = await wait_status(kernel, msg.task_id, "completed")
    assert len(await children(kernel, msg.task_id)) == 2
    assert (done["attempts"], done["output"]["steps"]) == (3, 2)
    assert done["output"]["reply"] == "Here is what I have."
    last = server.chat_requests()[-1]
    assert "tools" not in last
    assert [m["role"] for m in last["messages"]].count("system") == 1
    assert last["messages"][0]["content"].endswith(prompts.FINAL_STEP)
    assert [m["role"] for m in last["messages"]].count("tool") == 2
