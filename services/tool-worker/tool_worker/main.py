"""Bootstrap of tool-worker: the registry of built-in tools bound to the handler."""

from functools import partial

from taskfleet.core.faults import Faults
from taskfleet.handler import QUEUES, Handler, Kernel, TaskType, run_worker
from tool_worker.handlers import ToolWorker, handle_tool
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


async def main(settings: ToolWorkerSettings, concurrency: int) -> None:
    """Run tool-worker (`taskfleet worker tool`) until SIGTERM/SIGINT."""
    await run_worker(settings, SPEC, make_handler, concurrency=concurrency)
