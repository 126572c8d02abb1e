"""What a chat task is: read the user's text, run the agent loop (chat_worker.agent)."""

from typing import Any

from chat_worker.agent import Agent
from taskfleet.core.errors import InvalidPayload
from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.path.waiting import Waiting


def user_text(payload: Any) -> str:
    content = payload.get("content") if isinstance(payload, dict) else None
    if not isinstance(content, str) or not content.strip():
        raise InvalidPayload("payload.content must be non-empty text")
    return content


async def handle_chat(ctx: TaskContext, *, agent: Agent) -> TaskResult | Waiting:
    """Answer one chat message, or wait for the tools it asked for and answer on resume.

    The reply streams live as `message.delta` events and is committed with the completion.
    """
    return await agent.run(ctx, user_text(ctx.input))
