"""Documents made without the API, as a backend writing straight to the database would, so that
the worker can be given what the API would refuse (bytes that only claim to be a PDF)."""

import hashlib
from pathlib import Path
from uuid import UUID

import aiohttp
import asyncpg

from taskfleet.broker.publisher import new_task
from taskfleet.core.constants import TaskType
from taskfleet.core.settings import Settings
from taskfleet.data import documents
from taskfleet.data.blobs import blob_store
from taskfleet.store.tasks import TaskStore


def form(
    data: bytes, filename: str | None = "doc.pdf", content_type: str | None = None, **fields: str
) -> aiohttp.FormData:
    """A multipart upload: `file` (and any other fields, e.g. title)."""
    body = aiohttp.FormData()
    for name, value in fields.items():
        body.add_field(name, value)
    body.add_field("file", data, filename=filename, content_type=content_type)
    return body


def live_parsers(worker_pid: int) -> list[int]:
    """Parser children started by the worker process `worker_pid` that still run (Linux: read
    from /proc; each child's argv carries `--parent-pid`)."""
    alive = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if b"doc_worker.parser" in argv and state != "Z":
            at = argv.index(b"--parent-pid") if b"--parent-pid" in argv else -1
            if at >= 0 and argv[at + 1 : at + 2] == [str(worker_pid).encode()]:
                alive.append(int(proc.name))
    return alive


async def store_document(
    settings: Settings,
    pool: asyncpg.Pool,
    user_id: str,
    data: bytes,
    *,
    media_type: str = documents.PDF,
    title: str = "test document",
) -> tuple[UUID, UUID]:
    """Commit a document and its task; the outbox relay of any running process publishes it.
    Returns (document_id, task_id)."""
    doc = documents.NewDocument(
        user_id=user_id,
        title=title,
        filename=None,
        media_type=media_type,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    new = new_task(
        settings, type=TaskType.DOCUMENT, user_id=user_id, input={"document_id": str(doc.id)}
    )
    async with pool.acquire() as conn, conn.transaction():
        await TaskStore(pool).insert_task(conn, new, relay_grace_s=0)
        await documents.insert_document(conn, blob_store(pool), doc, data, new.task_id)
    return doc.id, new.task_id
