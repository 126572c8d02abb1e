"""The model client measures each call by model: its duration by outcome, its time to first
token, and the tokens in and out that the server reports in the stream (asked for with
`stream_options.include_usage`); against the fake OpenAI-compatible server."""

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from taskfleet.llm.openai import OpenAIModel
from taskfleet.llm.types import LlmRateLimited
from tests.llm_server import FakeLLM, JsonReply, Respond, Status, Text, script

HELLO = [{"role": "user", "content": "hello there model"}]  # 3 words: 3 tokens in, to the fake


@pytest.fixture
async def serve() -> AsyncIterator[Any]:
    servers: list[FakeLLM] = []

    async def start(respond: Respond) -> FakeLLM:
        servers.append(await FakeLLM(respond).start())
        return servers[-1]

    yield start
    for server in servers:
        await server.stop()


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def tokens(model: str, direction: str) -> float:
    return sample("taskfleet_llm_tokens_total", model=model, direction=direction)


def calls(model: str, outcome: str) -> float:
    return sample("taskfleet_llm_request_duration_seconds_count", model=model, outcome=outcome)


def first_tokens(model: str) -> float:
    return sample("taskfleet_llm_time_to_first_token_seconds_count", model=model)


async def collect(model: OpenAIModel, limit: int | None = None) -> list[object]:
    items: list[object] = []
    reply = model.stream(HELLO)
    assert isinstance(reply, AsyncGenerator)  # closed at once when the reader stops early
    try:
        async with asyncio.timeout(20), contextlib.aclosing(reply) as stream:
            async for item in stream:
                items.append(item)
                if limit is not None and len(items) >= limit:
                    break
    finally:
        await model.aclose()
    return items


async def test_a_streamed_call_counts_its_tokens_first_token_and_duration(serve: Any) -> None:
    server = await serve(script(Text("one two three four", pieces=4)))
    model = OpenAIModel(base_url=server.url, model="m-stream")
    assert len(await collect(model)) == 4
    assert server.requests[0]["stream_options"] == {"include_usage": True}
    assert (tokens("m-stream", "input"), tokens("m-stream", "output")) == (3, 4)
    assert (calls("m-stream", "ok"), first_tokens("m-stream")) == (1, 1)
    # The time to the first token is part of the call's whole duration.
    first = sample("taskfleet_llm_time_to_first_token_seconds_sum", model="m-stream")
    whole = sample("taskfleet_llm_request_duration_seconds_sum", model="m-stream", outcome="ok")
    assert 0 < first <= whole


async def test_a_reply_in_one_piece_counts_its_usage_too(serve: Any) -> None:
    server = await serve(script(JsonReply("all at once")))
    await collect(OpenAIModel(base_url=server.url, model="m-json"))
    assert (tokens("m-json", "input"), tokens("m-json", "output")) == (3, 1)
    assert calls("m-json", "ok") == 1


async def test_a_failed_call_is_timed_by_its_outcome_without_a_first_token(serve: Any) -> None:
    server = await serve(script(Status(429, {"Retry-After": "120"})))
    with pytest.raises(LlmRateLimited):
        await collect(OpenAIModel(base_url=server.url, model="m-limited", max_wait_s=1))
    assert (calls("m-limited", "rate_limited"), calls("m-limited", "ok")) == (1, 0)
    assert first_tokens("m-limited") == 0
    assert tokens("m-limited", "input") == 0


async def test_a_call_whose_reader_stops_early_is_abandoned(serve: Any) -> None:
    server = await serve(script(Text("a b c d e f", pieces=6)))
    assert len(await collect(OpenAIModel(base_url=server.url, model="m-left"), limit=2)) == 2
    assert (calls("m-left", "abandoned"), calls("m-left", "ok")) == (1, 0)
    assert first_tokens("m-left") == 1
