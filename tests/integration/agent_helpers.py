"""Consumers of chat_tasks (the agent) and tool_executions (the tools) on the test kernel."""

from functools import partial
from typing import Any
from uuid import UUID

from chat_worker.agent import Agent
from chat_worker.handlers import handle_chat
from chat_worker.settings import ChatWorkerSettings
from taskfleet.core.constants import QUEUES, TaskType
from taskfleet.data import operations
from taskfleet.data.toolspecs import tool_specs
from taskfleet.llm import ChatModel
from taskfleet.llm.scripted import ScriptedModel
from taskfleet.path.consumer import Handler
from taskfleet.runtime.kernel import Kernel
from tool_worker.main import make_handler
from tool_worker.registry import Registry

TOOL = QUEUES[TaskType.TOOL]


def chat_handler(kernel: Kernel, model: ChatModel | None = None, **overrides: Any) -> Handler:
    """The chat-worker's handler; `overrides` are its settings' fields (max_agent_steps=2...)."""
    settings = ChatWorkerSettings.of(kernel.settings, **overrides)
    agent = Agent(model=model or ScriptedModel(), settings=settings, tools=tool_specs())
    return partial(handle_chat, agent=agent)


def tool_handler(kernel: Kernel, registry: Registry | None = None) -> Handler:
    return make_handler(kernel, registry)


async def children(kernel: Kernel, parent_id: UUID) -> list[dict[str, Any]]:
    """The child tasks as their owner sees them: sealed arguments and results opened."""
    rows = await kernel.pool.fetch(
        "SELECT * FROM tasks WHERE parent_id = $1 ORDER BY input ->> 'call_id'", parent_id
    )
    return [revealed(kernel, dict(r)) for r in rows]


def revealed(kernel: Kernel, task: dict[str, Any]) -> dict[str, Any]:
    return operations.reveal_task(task, kernel.keyring)
