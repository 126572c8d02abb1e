"""What a chat task is: the user's text, answered by the agent loop (chat_worker.agent)."""

from chat_worker.agent import Agent
from chat_worker.chord import with_members
from taskfleet.handler import ChatPayload, TaskContext, TaskResult, Waiting


async def handle_chat(ctx: TaskContext[ChatPayload], *, agent: Agent) -> TaskResult | Waiting:
    """Answer one chat message, or wait for the tools it asked for and answer on resume.

    The reply streams live as `message.delta` events and is committed with the completion.
    """
    content = ctx.payload.content
    if ctx.payload.after_batch is not None:  # a batch's `then`: its members' outcomes too
        content = await with_members(ctx.db, content, ctx.payload.after_batch, ctx.payload.members)
    return await agent.run(ctx, content)
