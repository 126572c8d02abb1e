"""Bootstrap of chat-worker: one model and one agent for the process, bound to the handler."""

from functools import partial

from chat_worker.agent import MEMORY_CONTEXT, Agent
from chat_worker.handlers import handle_chat
from chat_worker.history import CONTEXT_FUNCTION
from chat_worker.settings import ChatWorkerSettings
from taskfleet.data.plugins import all_tool_specs
from taskfleet.handler import QUEUES, Handler, Kernel, TaskType, run_worker
from taskfleet.llm import ChatModel, build_model
from taskfleet.path.slots import SlotRange
from taskfleet.store.records import Preload

SPEC = QUEUES[TaskType.CHAT]


def context_preload(settings: ChatWorkerSettings) -> Preload:
    """The chat's context, read by each claim in its own statement (one round trip less)."""
    return Preload(CONTEXT_FUNCTION, (settings.chat_history_messages, MEMORY_CONTEXT))


def make_handler(kernel: Kernel, model: ChatModel) -> Handler:
    """The chat handler: one agent for every task of the process, on its one model, offering
    the built-in tools and those installed packages declare (taskfleet.data.plugins)."""
    agent = Agent(
        model=model, settings=ChatWorkerSettings.of(kernel.settings), tools=all_tool_specs()
    )
    return partial(handle_chat, agent=agent)


async def main(settings: ChatWorkerSettings, slots: SlotRange) -> None:
    """Run chat-worker (`taskfleet worker chat`) until SIGTERM/SIGINT, then close the model."""
    # Built before the worker, so a bad LLM setting stops the process at start; closed after
    # it, when no handler uses its connections any more.
    model = build_model(settings)
    try:
        await run_worker(
            settings,
            SPEC,
            lambda kernel: make_handler(kernel, model),
            slots=slots,
            preload=context_preload(settings),
        )
    finally:
        await model.aclose()
