"""Bootstrap of tool-worker: the registry of tools bound to the handler, and the email
notifier beside it."""

from functools import partial

from taskfleet.core.faults import Faults
from taskfleet.core.supervisor import CoroFactory
from taskfleet.handler import QUEUES, Handler, Kernel, TaskType, run_worker
from taskfleet.path.slots import SlotRange
from tool_worker.handlers import ToolWorker, handle_tool
from tool_worker.notifier import run_notifier
from tool_worker.registry import Registry
from tool_worker.settings import ToolWorkerSettings
from tool_worker.tools import default_registry

SPEC = QUEUES[TaskType.TOOL]


def make_handler(kernel: Kernel, registry: Registry | None = None) -> Handler:
    """`registry` defaults to the built-in tools (tests add their own)."""
    settings = ToolWorkerSettings.of(kernel.settings)
    worker = ToolWorker(
        registry=registry or default_registry(settings),
        settings=settings,
        faults=Faults.parse(settings.faults),
    )
    return partial(handle_tool, worker=worker)


def background(kernel: Kernel) -> list[tuple[str, CoroFactory]]:
    """The email notifier (tool_worker.notifier), beside the tool calls."""
    settings = ToolWorkerSettings.of(kernel.settings)
    faults = Faults.parse(settings.faults)
    return [("notifier", partial(run_notifier, kernel, settings, faults))]


async def main(settings: ToolWorkerSettings, slots: SlotRange) -> None:
    """Run tool-worker (`taskfleet worker tool`) until SIGTERM/SIGINT."""
    await run_worker(settings, SPEC, make_handler, slots=slots, background=background)
