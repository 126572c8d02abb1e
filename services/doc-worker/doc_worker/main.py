"""Bootstrap of doc-worker: bind the database, the blob store and the parser limits to the
handler and run the kernel's worker."""

from functools import partial

from doc_worker.handlers import DocConfig, handle_document
from taskfleet.blobs import blob_store
from taskfleet.constants import QUEUES, TaskType
from taskfleet.kernel import Kernel
from taskfleet.runner import Handler
from taskfleet.settings import Settings
from taskfleet.worker import run_worker

SPEC = QUEUES[TaskType.DOCUMENT]


def make_handler(kernel: Kernel) -> Handler:
    return partial(handle_document, blobs=blob_store(kernel.pool),
                   config=DocConfig.from_settings(kernel.settings))  # fmt: skip


async def main(settings: Settings, concurrency: int) -> None:
    await run_worker(settings, SPEC, make_handler, concurrency=concurrency)
