"""A fake OpenAI-compatible server for the tests: a real aiohttp server on 127.0.0.1 serving
`POST /v1/chat/completions`, streamed (SSE) or not, slow, failing or malformed on demand.

Each request is answered by `respond(body)`: a test passes a function of the request body
(e.g. "memory extraction gets this, the chat gets that") or a fixed script with `script()`.
Every request body is recorded.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from taskfleet.llm import prompts
from tests.conftest import free_port


@dataclass
class Text:
    """A streamed text reply, in `pieces` deltas."""

    text: str
    pieces: int = 3


@dataclass
class Calls:
    """Streamed tool calls: (name, raw arguments text); the arguments arrive in fragments."""

    calls: list[tuple[str, str]]


@dataclass
class Status:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = '{"error": {"message": "fake failure"}}'


@dataclass
class Stall:
    """Sends `before` as a first delta, then nothing more, ever (until the server stops)."""

    before: str = "Thinking"


@dataclass
class Hang:
    """Answers nothing at all."""


@dataclass
class JsonReply:
    """A non-streamed completion (a server that ignores `stream`)."""

    text: str
    calls: list[tuple[str, str]] = field(default_factory=list)


Behaviour = Text | Calls | Status | Stall | Hang | JsonReply
Respond = Callable[[dict[str, Any]], Behaviour]


def script(*behaviours: Behaviour, then: Behaviour | None = None) -> Respond:
    """Answer the requests in order with `behaviours`, then always with `then`."""
    queue = list(behaviours)

    def respond(_: dict[str, Any]) -> Behaviour:
        if queue:
            return queue.pop(0)
        assert then is not None, "the fake LLM got more requests than the test scripted"
        return then

    return respond


def is_memory_request(body: dict[str, Any]) -> bool:
    messages = body.get("messages") or []
    return bool(messages) and messages[0].get("content") == prompts.MEMORY_EXTRACTION


@dataclass
class FakeLLM:
    respond: Respond
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    _runner: web.AppRunner | None = None
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def chat_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if not is_memory_request(r)]

    def memory_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if is_memory_request(r)]

    async def start(self) -> "FakeLLM":
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        self._runner = web.AppRunner(app, shutdown_timeout=0.2)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        behaviour = self.respond(body)
        if isinstance(behaviour, Status):
            return web.Response(
                status=behaviour.status,
                text=behaviour.body,
                headers=behaviour.headers,
                content_type="application/json",
            )
        if isinstance(behaviour, Hang):
            await self._release.wait()
            return web.Response(status=503)
        if isinstance(behaviour, JsonReply):
            message: dict[str, Any] = {"role": "assistant", "content": behaviour.text}
            if behaviour.calls:
                message["tool_calls"] = [
                    {
                        "id": f"call_{i}",
                        "type": "function",
                        "function": {"name": name, "arguments": arguments},
                    }
                    for i, (name, arguments) in enumerate(behaviour.calls)
                ]
            return web.json_response(
                {
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": usage(body, 1),
                }
            )
        stream = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await stream.prepare(request)
        if isinstance(behaviour, Stall):
            await stream.write(_event({"content": behaviour.before}))
            await self._release.wait()
            return stream
        sent = await _stream_reply(stream, behaviour)
        if (body.get("stream_options") or {}).get("include_usage"):
            # As OpenAI sends it: a last chunk with no choices and the call's token counts.
            chunk = {"object": "chat.completion.chunk", "choices": [], "usage": usage(body, sent)}
            await stream.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        await stream.write(b"data: [DONE]\n\n")
        await stream.write_eof()
        return stream


async def _stream_reply(stream: web.StreamResponse, behaviour: Text | Calls) -> int:
    """Streams the text or the tool calls; returns how many chunks carried them."""
    sent = 0
    if isinstance(behaviour, Text):
        for piece in _pieces(behaviour.text, behaviour.pieces):
            await stream.write(_event({"content": piece}))
            sent += 1
        await stream.write(_event({}, finish="stop"))
        return sent
    for index, (name, arguments) in enumerate(behaviour.calls):
        head = {
            "index": index,
            "id": f"call_{index}",
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        await stream.write(_event({"tool_calls": [head]}))
        for piece in _pieces(arguments, 3):
            fragment = {"index": index, "function": {"arguments": piece}}
            await stream.write(_event({"tool_calls": [fragment]}))
            sent += 1
    await stream.write(_event({}, finish="tool_calls"))
    return sent


def usage(body: dict[str, Any], sent: int) -> dict[str, int]:
    """The fake's token counts: a word of the request is a token in, a chunk sent a token out."""
    words = sum(len(str(m.get("content") or "").split()) for m in body.get("messages") or [])
    return {"prompt_tokens": words, "completion_tokens": sent, "total_tokens": words + sent}


def _event(delta: dict[str, Any], finish: str | None = None) -> bytes:
    chunk = {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _pieces(text: str, n: int) -> list[str]:
    size = max(1, -(-len(text) // max(1, n)))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]
