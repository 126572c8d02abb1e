"""taskfleet.llm.openai.OpenAIModel against a fake OpenAI-compatible server (real HTTP):
streaming, tool calls, retries on 429/5xx honouring Retry-After, and a stream that stalls."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from taskfleet.core.metrics import LLM_REQUESTS
from taskfleet.llm.openai import OpenAIModel
from taskfleet.llm.openai_errors import retry_after
from taskfleet.llm.types import (
    LlmRateLimited,
    LlmRejected,
    LlmServerError,
    LlmTimeout,
    LlmUnavailable,
    StreamItem,
    ToolCall,
    ToolSpec,
)
from tests.conftest import free_port
from tests.llm_server import Calls, FakeLLM, JsonReply, Respond, Stall, Status, Text, script

HELLO = [{"role": "user", "content": "hello"}]
CALC = ToolSpec("calculator", "Arithmetic.", {"type": "object", "properties": {}})


@pytest.fixture
async def serve() -> AsyncIterator[Any]:
    servers: list[FakeLLM] = []

    async def start(respond: Respond) -> FakeLLM:
        servers.append(await FakeLLM(respond).start())
        return servers[-1]

    yield start
    for server in servers:
        await server.stop()


class Sleeps:
    """Records the waits tenacity asks for, without waiting: the test sees the values."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def model(server: FakeLLM | None, **fields: Any) -> OpenAIModel:
    url = server.url if server else f"http://127.0.0.1:{free_port()}/v1"
    return OpenAIModel(base_url=url, model="fake-1", **fields)


async def collect(m: OpenAIModel, **kwargs: Any) -> list[StreamItem]:
    try:
        async with asyncio.timeout(20):  # a guard against a hang, not a timing assertion
            return [item async for item in m.stream(HELLO, **kwargs)]
    finally:
        await m.aclose()


def count(outcome: str) -> float:
    return float(LLM_REQUESTS.labels(outcome)._value.get())


async def test_a_streamed_reply_arrives_as_deltas(serve: Any) -> None:
    server = await serve(script(Text("Hello there, Ann!", pieces=4)))
    ok = count("ok")
    items = await collect(model(server, api_key="sk-test"))
    assert len(items) == 4
    assert "".join(str(i) for i in items) == "Hello there, Ann!"
    body = server.requests[0]
    assert (body["model"], body["stream"], body["messages"]) == ("fake-1", True, HELLO)
    assert "tools" not in body
    assert server.headers[0]["Authorization"] == "Bearer sk-test"
    assert count("ok") == ok + 1


async def test_tool_calls_are_assembled_from_their_fragments(serve: Any) -> None:
    server = await serve(
        script(Calls([("calculator", '{"expression": "2*21"}'), ("current_time", "{}")]))
    )
    items = await collect(model(server), tools=[CALC])
    assert items == [
        ToolCall(id="call_0", name="calculator", arguments='{"expression": "2*21"}'),
        ToolCall(id="call_1", name="current_time", arguments="{}"),
    ]
    assert server.requests[0]["tools"] == [CALC.openai()]
    assert server.requests[0]["tool_choice"] == "auto"


async def test_a_429_with_retry_after_is_waited_then_retried(serve: Any) -> None:
    server = await serve(script(Status(429, {"Retry-After": "1.5"}), Text("after the wait")))
    sleeps, limited = Sleeps(), count("rate_limited")
    items = await collect(model(server, sleep=sleeps))
    assert "".join(str(i) for i in items) == "after the wait"
    assert len(server.requests) == 2
    assert sleeps.waits == [1.5]  # the server's Retry-After, not our own backoff
    assert count("rate_limited") == limited + 1


async def test_a_retry_after_longer_than_the_max_wait_becomes_the_tasks_delay(
    serve: Any,
) -> None:
    server = await serve(script(Status(429, {"Retry-After": "120"})))
    sleeps = Sleeps()
    with pytest.raises(LlmRateLimited) as info:
        await collect(model(server, sleep=sleeps, max_wait_s=20))
    assert (info.value.retryable, info.value.delay_s) == (True, 120.0)
    assert sleeps.waits == []  # no worker sleeps through it: the task retries later
    assert len(server.requests) == 1


async def test_a_500_three_times_fails_retryable_after_backoff(serve: Any) -> None:
    server = await serve(script(then=Status(500)))
    sleeps, errors = Sleeps(), count("server_error")
    with pytest.raises(LlmServerError) as info:
        await collect(model(server, sleep=sleeps, max_attempts=3))
    assert info.value.retryable is True
    assert info.value.code == "llm_server_error"
    assert len(server.requests) == 3
    assert len(sleeps.waits) == 2
    assert all(w > 0 for w in sleeps.waits)
    assert count("server_error") == errors + 3


async def test_a_stream_that_stops_mid_reply_times_out_and_is_not_retried(
    serve: Any,
) -> None:
    server = await serve(script(then=Stall(before="The answer")))
    timeouts = count("timeout")
    got: list[StreamItem] = []
    m = model(server, timeout_s=0.5)

    async def read() -> None:
        async with asyncio.timeout(20):  # a guard against a hang, not a timing assertion
            async for item in m.stream(HELLO):
                got.append(item)

    with pytest.raises(LlmTimeout) as info:
        await read()
    await m.aclose()
    assert got == ["The answer"]
    assert info.value.retryable is True
    # Text was already handed on: a retry here would repeat it; the task's retry restarts.
    assert len(server.requests) == 1
    assert count("timeout") == timeouts + 1


async def test_a_rejected_request_is_permanent_and_not_retried(serve: Any) -> None:
    server = await serve(script(then=Status(401, body='{"error": "bad key"}')))
    with pytest.raises(LlmRejected) as info:
        await collect(model(server, sleep=Sleeps()))
    assert info.value.retryable is False
    assert "401" in str(info.value)
    assert len(server.requests) == 1


async def test_an_unreachable_server_is_retried_then_unavailable() -> None:
    sleeps = Sleeps()
    with pytest.raises(LlmUnavailable) as info:
        await collect(model(None, sleep=sleeps, max_attempts=3))
    assert info.value.retryable is True
    assert len(sleeps.waits) == 2


async def test_a_server_that_ignores_stream_answers_in_one_piece(serve: Any) -> None:
    server = await serve(script(JsonReply("one piece", calls=[("calculator", "{}")])))
    items = await collect(model(server), tools=[CALC])
    assert items == ["one piece", ToolCall(id="call_0", name="calculator", arguments="{}")]


async def test_nul_is_dropped_from_text_and_tool_calls(serve: Any) -> None:
    # PostgreSQL text and jsonb cannot hold U+0000: whatever the model sends, none gets past
    # the provider, neither raw (a delta) nor escaped in a tool call's JSON arguments.
    arguments = r'{"expression": "2*21\u0000", "note": "a\\u0000b"}' + "\x00"
    server = await serve(
        script(
            Text("He\x00llo\x00 Ann", pieces=5),
            Text("\x00", pieces=1),
            Calls([("calculator", arguments)]),
            JsonReply("one\x00 piece"),
        )
    )
    text = await collect(model(server))
    assert "".join(str(i) for i in text) == "Hello Ann"
    assert await collect(model(server)) == []  # a reply of NUL alone yields no empty delta
    [call] = await collect(model(server), tools=[CALC])
    assert isinstance(call, ToolCall)
    assert "\x00" not in call.arguments
    # The escaped backslash before `u0000` is text, not a NUL: it stays
    assert json.loads(call.arguments) == {"expression": "2*21", "note": "a\\u0000b"}
    assert await collect(model(server)) == ["one piece"]


@pytest.mark.parametrize(
    ("header", "expected"),
    [("3", 3.0), ("0.25", 0.25), ("-4", 0.0), (None, None), ("soon", None), ("", None)],
)
def test_retry_after_reads_seconds(header: str | None, expected: float | None) -> None:
    assert retry_after(header) == expected


def test_retry_after_reads_an_http_date() -> None:
    from email.utils import formatdate
    from time import time

    seconds = retry_after(formatdate(time() + 30, usegmt=True))
    assert seconds is not None
    assert 25 <= seconds <= 31


def test_build_model_picks_the_http_client_and_names_a_bad_setting() -> None:
    from taskfleet.core.errors import ConfigError
    from taskfleet.core.settings import Settings
    from taskfleet.llm import build_model
    from taskfleet.llm.scripted import ScriptedModel

    assert isinstance(build_model(Settings()), ScriptedModel)
    built = build_model(
        Settings(
            LLM_BASE_URL="http://127.0.0.1:8000/v1",
            LLM_MODEL="m",
            LLM_API_KEY="k",
            LLM_TIMEOUT_S=7,
            LLM_MAX_ATTEMPTS=2,
        )
    )
    assert isinstance(built, OpenAIModel)
    assert (built.url, built.model, built.api_key, built.timeout_s, built.max_attempts) == (
        "http://127.0.0.1:8000/v1/chat/completions",
        "m",
        "k",
        7.0,
        2,
    )
    with pytest.raises(ConfigError, match=r"^LLM_MODEL: "):
        build_model(Settings(LLM_BASE_URL="http://127.0.0.1:8000/v1"))
    with pytest.raises(ConfigError, match=r"^LLM_BASE_URL: "):
        build_model(Settings(LLM_BASE_URL="127.0.0.1:8000", LLM_MODEL="m"))


async def test_a_server_without_tool_support_is_asked_again_without_tools(serve: Any) -> None:
    def respond(body: dict[str, Any]) -> Any:
        if "tools" in body:
            return Status(400, body='{"error": "tool choice requires --enable-auto-tool-choice"}')
        return Text("plain answer")

    server = await serve(respond)
    m = model(server)
    first = [item async for item in m.stream(HELLO, tools=[CALC])]
    second = [item async for item in m.stream(HELLO, tools=[CALC])]
    await m.aclose()
    assert "".join(map(str, first)) == "".join(map(str, second)) == "plain answer"
    # Refused once with tools, then never offered them again
    assert ["tools" in r for r in server.requests] == [True, False, False]


async def test_a_server_that_refuses_stream_options_is_asked_again_without_them(
    serve: Any,
) -> None:
    def respond(body: dict[str, Any]) -> Any:
        if "stream_options" in body:
            return Status(400, body='{"error": "unknown field: stream_options"}')
        return Text("no usage here")

    server = await serve(respond)
    m = model(server)
    first = [item async for item in m.stream(HELLO, tools=[CALC])]
    second = [item async for item in m.stream(HELLO, tools=[CALC])]
    await m.aclose()
    assert "".join(map(str, first)) == "".join(map(str, second)) == "no usage here"
    # Without tools first (still refused: the usage was the trouble), then without the usage
    # request, keeping the tools; never asked for usage again.
    asked = [("tools" in r, "stream_options" in r) for r in server.requests]
    assert asked == [(True, True), (False, True), (True, False), (True, False)]


async def test_a_400_for_the_request_itself_stands(serve: Any) -> None:
    server = await serve(script(then=Status(400, body='{"error": "bad model"}')))
    with pytest.raises(LlmRejected):
        await collect(model(server), tools=[CALC])
    # Asked once whole, then once without each optional part; nothing else is retried.
    assert len(server.requests) == 3
