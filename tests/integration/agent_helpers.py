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
from taskfleet.path.waiting import Waiting
from taskfleet.runtime.kernel import Kernel
from taskfleet.store.records import NewTask
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


async def waiting_parent(kernel: Kernel, user: str, parent_id: UUID, kids: int) -> list[NewTask]:
    """A chat task of `user` held at attempt 1 (fence 1), now waiting for `kids` tool tasks
    (queued, as tf_wait_for leaves them): the children."""
    await kernel.pool.execute(
        "INSERT INTO tasks (id, type, user_id, chat_id, input, max_attempts, status, attempts,"
        " fence) VALUES ($1, 'chat_message', $2, 'c', '{}', 5, 'processing', 1, 1)",
        parent_id,
        user,
    )
    made = [
        NewTask(type=TOOL.task_type, user_id=user, input={}, max_attempts=1) for _ in range(kids)
    ]
    waiting = Waiting(made, {"v": 1})
    await kernel.store.wait(parent_id, 1, waiting.state, waiting.rows(), 60)
    return made
