"""What a chat task is: read the user's text, stream the model's reply, save it."""

import time
from typing import Any

from taskfleet.context import TaskContext, TaskResult
from taskfleet.errors import InvalidPayload
from taskfleet.llm import ChatModel

# Reply text is sent live at most this often (deltas are batched in between) ...
DELTA_EVERY_S = 0.05
# ... and saved as the partial reply at most this often, so a reload shows it.
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
    unsent: list[str] = []
    sent_at = saved_at = time.monotonic()
    async for piece in model.stream([{"role": "user", "content": content}]):
        parts.append(piece)
        unsent.append(piece)
        now = time.monotonic()
        if now - sent_at >= DELTA_EVERY_S:
            await ctx.delta("".join(unsent))
            unsent.clear()
            sent_at = now
        if now - saved_at >= PARTIAL_EVERY_S:
            reply = "".join(parts)
            await ctx.partial({"reply": reply}, reply=reply)
            saved_at = now
    await ctx.delta("".join(unsent))
    reply = "".join(parts)
    return TaskResult(output={"reply": reply, "model": model.name}, reply=reply)
