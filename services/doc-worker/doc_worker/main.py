"""Bootstrap of doc-worker: bind the database, the blob store and the parser limits to the
handler and run the kernel's worker."""

from functools import partial

from doc_worker.handlers import DocConfig, handle_document
from taskfleet.data.blobs import blob_store
from taskfleet.handler import QUEUES, Handler, Kernel, Settings, TaskType, run_worker

SPEC = QUEUES[TaskType.DOCUMENT]


def make_handler(kernel: Kernel) -> Handler:
    return partial(handle_document, blobs=blob_store(kernel.pool),
                   config=DocConfig.from_settings(kernel.settings))  # fmt: skip


async def main(settings: Settings, concurrency: int) -> None:
    await run_worker(settings, SPEC, make_handler, concurrency=concurrency)
