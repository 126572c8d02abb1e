"""Bootstrap of doc-worker: bind the database, the blob store and the parser limits to the
handler and run the kernel's worker."""

from functools import partial

from doc_worker.handlers import DocConfig, handle_document
from taskfleet.core.constants import QUEUES, TaskType
from taskfleet.core.settings import Settings
from taskfleet.data.blobs import blob_store
from taskfleet.path.consumer import Handler
from taskfleet.runtime.kernel import Kernel
from taskfleet.worker import run_worker

SPEC = QUEUES[TaskType.DOCUMENT]


def make_handler(kernel: Kernel) -> Handler:
    return partial(handle_document, blobs=blob_store(kernel.pool),
                   config=DocConfig.from_settings(kernel.settings))  # fmt: skip


async def main(settings: Settings, concurrency: int) -> None:
    await run_worker(settings, SPEC, make_handler, concurrency=concurrency)
