"""Reading the reply of an OpenAI-compatible `/chat/completions`: the server-sent events of a
stream, or one JSON completion when the server ignored `stream`; each read is bounded by what is
left of the call's deadline. NUL is dropped from every item (PostgreSQL cannot store it)."""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson

from taskfleet.core.metrics import LLM_REQUESTS
from taskfleet.llm.openai_errors import counted
from taskfleet.llm.sse import SseParser, ToolCallAssembler
from taskfleet.llm.types import (
    LlmBadResponse,
    LlmError,
    LlmServerError,
    LlmTimeout,
    LlmUnavailable,
    StreamItem,
    without_nul,
)

# Told the server's `usage` object (token counts), when it sends one.
OnUsage = Callable[[Any], None]

# A JSON reply (no streaming) may be large, but not without bound.
MAX_JSON_REPLY_BYTES = 8 * 1024 * 1024


async def read_reply(
    response: aiohttp.ClientResponse, deadline: float, timeout_s: float, usage: OnUsage
) -> AsyncIterator[StreamItem]:
    """The reply's text deltas, then its tool calls; the attempt's outcome is counted here,
    and the `usage` the server reports is handed to `usage`."""
    try:
        if response.content_type == "application/json":  # the server ignored `stream`
            items = _read_json(response, deadline, timeout_s, usage)
        else:
            items = _read_stream(response, deadline, timeout_s, usage)
        async for item in items:
            if cleaned := without_nul(item):  # a delta of NUL alone is no delta
                yield cleaned
    except LlmError as exc:
        raise counted(exc) from None
    except aiohttp.ClientError as exc:
        raise counted(LlmUnavailable(f"the LLM's stream broke: {exc!r}")) from None
    LLM_REQUESTS.labels("ok").inc()


async def _read_stream(
    response: aiohttp.ClientResponse, deadline: float, timeout_s: float, usage: OnUsage
) -> AsyncIterator[StreamItem]:
    parser, calls = SseParser(), ToolCallAssembler()
    done = finished = False
    while not done:
        chunk = await _within(response.content.readany(), deadline, timeout_s)
        events = parser.feed(chunk) if chunk else parser.close()
        for data in events:
            if data.strip() == "[DONE]":
                done = True
                break
            event = _event(data)
            if event.get("usage"):  # the last chunk (include_usage), its choices empty
                usage(event["usage"])
            for text in _apply(event, calls):
                if text is None:
                    finished = True
                else:
                    yield text
        if not chunk:
            break
    if not (done or finished):
        raise LlmBadResponse("the stream ended before the reply did")
    for call in calls.calls():
        yield call


async def _read_json(
    response: aiohttp.ClientResponse, deadline: float, timeout_s: float, usage: OnUsage
) -> AsyncIterator[StreamItem]:
    raw = await _within(response.content.read(MAX_JSON_REPLY_BYTES), deadline, timeout_s)
    try:
        completion = orjson.loads(raw)
        message = completion["choices"][0]["message"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        raise LlmBadResponse("the reply is not a chat completion") from None
    usage(completion.get("usage"))
    calls = ToolCallAssembler()
    if message.get("tool_calls"):
        calls.add(message["tool_calls"])
    if isinstance(message.get("content"), str) and message["content"]:
        yield message["content"]
    for call in calls.calls():
        yield call


async def _within(read: Awaitable[bytes], deadline: float, timeout_s: float) -> bytes:
    """One read, bounded by what is left of the call's deadline (a stall fails here).

    The timeout wraps the read only, never a `yield`: a timeout around a yield would
    cancel whatever the consumer is doing at that moment instead.
    """
    remaining = deadline - time.monotonic()
    try:
        if remaining <= 0:
            raise TimeoutError
        async with asyncio.timeout(remaining):
            return await read
    except TimeoutError:
        if asyncio.iscoroutine(read):
            read.close()
        raise LlmTimeout(f"the reply did not finish within LLM_TIMEOUT_S={timeout_s:g}s") from None


def _event(data: str) -> dict[str, Any]:
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise LlmBadResponse(f"a stream event is not JSON: {data[:100]!r}") from None
    if not isinstance(event, dict):
        raise LlmBadResponse("a stream event is not an object")
    if "error" in event:  # some servers report a failure inside a 200 stream
        raise LlmServerError(f"the LLM failed mid-stream: {str(event['error'])[:300]}")
    return event


def _apply(event: dict[str, Any], calls: ToolCallAssembler) -> list[str | None]:
    """Text deltas of the event's first choice, and None where the choice finished."""
    out: list[str | None] = []
    for choice in (event.get("choices") or [])[:1]:
        delta = choice.get("delta") or {}
        content = delta.get("content")
        if isinstance(content, str) and content:
            out.append(content)
        if delta.get("tool_calls"):
            calls.add(delta["tool_calls"])
        if choice.get("finish_reason"):
            out.append(None)
    return out
