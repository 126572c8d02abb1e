"""Bootstrap of doc-worker: bind the database, the blob store and the parser limits to the
handler and run the kernel's worker."""

from functools import partial

from doc_worker.handlers import DocConfig, handle_document
from doc_worker.settings import DocWorkerSettings
from taskfleet.data.blobs import blob_store
from taskfleet.handler import QUEUES, Handler, Kernel, TaskType, run_worker
from taskfleet.path.slots import SlotRange

SPEC = QUEUES[TaskType.DOCUMENT]


def make_handler(kernel: Kernel) -> Handler:
    """The document handler, with the blob store on the kernel's pool and the DOC_* limits."""
    config = DocConfig.from_settings(DocWorkerSettings.of(kernel.settings))
    return partial(handle_document, blobs=blob_store(kernel.pool), config=config)


async def main(settings: DocWorkerSettings, slots: SlotRange) -> None:
    """Run doc-worker (`taskfleet worker doc`) until SIGTERM/SIGINT."""
    await run_worker(settings, SPEC, make_handler, slots=slots)
