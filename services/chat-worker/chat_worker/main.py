"""Bootstrap of chat-worker: bind the model to the handler and run the kernel's worker."""

from functools import partial

from chat_worker.handlers import handle_chat
from taskfleet.constants import QUEUES, TaskType
from taskfleet.kernel import Kernel
from taskfleet.llm import build_model
from taskfleet.runner import Handler
from taskfleet.settings import Settings
from taskfleet.worker import run_worker

SPEC = QUEUES[TaskType.CHAT]


def make_handler(kernel: Kernel) -> Handler:
    return partial(handle_chat, model=build_model(kernel.settings))


async def main(settings: Settings, concurrency: int) -> None:
    await run_worker(settings, SPEC, make_handler, concurrency=concurrency)
