"""What a chat task is: the user's text, answered by the agent loop (chat_worker.agent)."""

from chat_worker.agent import Agent
from taskfleet.handler import ChatPayload, TaskContext, TaskResult, Waiting


async def handle_chat(ctx: TaskContext[ChatPayload], *, agent: Agent) -> TaskResult | Waiting:
    """Answer one chat message, or wait for the tools it asked for and answer on resume.

    The reply streams live as `message.delta` events and is committed with the completion.
    """
    return await agent.run(ctx, ctx.payload.content)
