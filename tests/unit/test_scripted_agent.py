"""The `scripted` provider plays the agent offline: tool calls for commands when tools are
offered, an answer from tool results, facts for memory extraction; `You said:` otherwise."""

import orjson
import pytest

from taskfleet.data.toolspecs import tool_specs
from taskfleet.llm import prompts
from taskfleet.llm.scripted import ScriptedModel
from taskfleet.llm.types import ChatHistory, StreamItem, ToolCall

TOOLS = tool_specs()


async def collect(messages: ChatHistory, *, tools: bool = True) -> list[StreamItem]:
    return [item async for item in ScriptedModel().stream(messages, tools=TOOLS if tools else None)]


def user(text: str) -> ChatHistory:
    return [{"role": "system", "content": prompts.SYSTEM}, {"role": "user", "content": text}]


@pytest.mark.parametrize(
    ("text", "name", "arguments"),
    [
        ("calc: 2*21", "calculator", {"expression": "2*21"}),
        ("search: quarterly report", "search_documents", {"query": "quarterly report"}),
        ("time?", "current_time", {}),
        ("time? Europe/Paris", "current_time", {"timezone": "Europe/Paris"}),
        ("fetch: https://example.com/a", "http_get", {"url": "https://example.com/a"}),
        (
            "email: bob@example.com | Hi | Hello Bob",
            "send_email",
            {"to": ["bob@example.com"], "subject": "Hi", "body": "Hello Bob"},
        ),
        ('tool: anything {"x": 1}', "anything", {"x": 1}),
    ],
)
async def test_commands_become_tool_calls(text: str, name: str, arguments: object) -> None:
    [call] = await collect(user(text))
    assert isinstance(call, ToolCall)
    assert (call.id, call.name, orjson.loads(call.arguments)) == ("call_1_0", name, arguments)


async def test_raw_arguments_go_as_they_are_and_commands_combine() -> None:
    calls = await collect(user('calc: 1+1 && tool: calculator {"expression": "2*'))
    assert [(c.name, c.arguments) for c in calls if isinstance(c, ToolCall)] == [
        ("calculator", '{"expression":"1+1"}'),
        ("calculator", '{"expression": "2*'),
    ]


@pytest.mark.parametrize("tools", [True, False])
async def test_anything_else_is_echoed_exactly(tools: bool) -> None:
    items = await collect(user("calc: 2*21 please and thanks && hello"), tools=tools)
    assert "".join(map(str, items)) == "You said: calc: 2*21 please and thanks && hello"
    items = await collect(user("calc: 2*21"), tools=False)
    assert "".join(map(str, items)) == "You said: calc: 2*21"


async def test_tool_results_are_answered_and_failures_said() -> None:
    messages = [
        *user("calc: 2*21 && tool: explode {}"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "calculator", "arguments": "{}"},
                },
                {
                    "id": "c2",
                    "type": "function",
                    "function": {"name": "explode", "arguments": "{}"},
                },
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "c1",
            "content": '{"ok": true, "result": {"expression": "2*21", "result": 42}}',
        },
        {
            "role": "tool",
            "tool_call_id": "c2",
            "content": '{"ok": false, "error": {"code": "tool_failed", "message": "it blew up"}}',
        },
        {"role": "system", "content": prompts.FINAL_STEP},
    ]
    text = "".join(map(str, await collect(messages)))
    assert text == "2*21 = 42\nexplode failed: it blew up"


async def test_memory_extraction_answers_the_facts_the_user_gave() -> None:
    exchange = {
        "user": "Hi, my name is Ann. I like green tea and I live in Paris.",
        "assistant": "Hello",
        "known": [],
    }
    messages = [
        {"role": "system", "content": prompts.MEMORY_EXTRACTION},
        {"role": "user", "content": orjson.dumps(exchange).decode()},
    ]
    [answer] = await collect(messages, tools=False)
    assert orjson.loads(str(answer)) == [
        "The user's name is Ann.",
        "The user lives in Paris.",
        "The user likes green tea.",
    ]
