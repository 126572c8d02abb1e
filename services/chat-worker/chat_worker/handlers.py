"""What a chat task is: read the user's text, stream the model's reply, save it."""

import time
from typing import Any

from taskfleet.context import TaskContext, TaskResult
from taskfleet.errors import InvalidPayload
from taskfleet.llm import ChatModel

# The partial reply is saved at most this often while it streams.
PARTIAL_EVERY_S = 0.25


def user_text(payload: Any) -> str:
    content = payload.get("content") if isinstance(payload, dict) else None
    if not isinstance(content, str) or not content.strip():
        raise InvalidPayload("payload.content must be non-empty text")
    return content


async def handle_chat(ctx: TaskContext, *, model: ChatModel) -> TaskResult:
    """Answer one chat message. The reply is committed with the task's completion."""
    content = user_text(ctx.input)
    parts: list[str] = []
    saved_at = time.monotonic()
    async for delta in model.stream([{"role": "user", "content": content}]):
        parts.append(delta)
        if time.monotonic() - saved_at >= PARTIAL_EVERY_S:
            reply = "".join(parts)
            await ctx.partial({"reply": reply}, reply=reply)
            saved_at = time.monotonic()
    reply = "".join(parts)
    return TaskResult(output={"reply": reply, "model": model.name}, reply=reply)
