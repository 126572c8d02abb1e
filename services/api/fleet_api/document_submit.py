"""POST /api/documents (DESIGN.md §7): accept a document as a task.

The upload is read by `document_upload` (streamed, counted, typed by its bytes) into a spool,
then to the blob store a chunk at a time, never whole in memory; each replica receives at most
DOCUMENT_MAX_UPLOADS at once, and answers 503 with Retry-After beyond.
"""

import asyncio
from datetime import datetime
from uuid import UUID

import asyncpg
from aiohttp import web

from fleet_api.auth import acting_for, principal
from fleet_api.delays import due_at
from fleet_api.document_models import UploadQuery
from fleet_api.document_upload import read_upload
from fleet_api.errors import RETRY_AFTER, ApiError
from fleet_api.routes import (
    KERNEL,
    PUBLISHER,
    SETTINGS,
    create_in,
    enforce_quota,
    parse_query,
    user_db,
)
from fleet_api.spool import Spool
from fleet_api.submitting import (
    accepted,
    accepted_body,
    callback_answer,
    callback_digest,
    callback_for,
    check_repeat,
    how_to_check_after_loss,
    idempotency_key,
    metadata_of,
    priority_of,
    repeat_callback,
    request_digest,
)
from taskfleet.broker.publisher import new_task
from taskfleet.client.models import DocumentAccepted
from taskfleet.core.constants import TaskType
from taskfleet.data import documents
from taskfleet.data.blobs import blob_store
from taskfleet.store.records import Existing, Outgoing

UPLOAD_SLOTS = web.AppKey("upload_slots", asyncio.Semaphore)


async def upload_document(request: web.Request) -> web.Response:
    """Accept a document: 202 with its id and task id; parsing and indexing go on in
    doc-worker. The bytes are committed with the task; the message carries ids only."""
    query = parse_query(request, UploadQuery)
    user_id = acting_for(request, query.user_id, reading=False, what="document")
    due = due_at(query, request.app[SETTINGS].max_delay_s)
    slots = request.app[UPLOAD_SLOTS]
    if slots.locked():  # refused at once: a queue of waiting uploads is no better a bound
        limit = request.app[SETTINGS].document_max_uploads
        raise ApiError(
            503,
            "busy",
            f"this replica is receiving {limit} uploads already; retry shortly",
            headers=RETRY_AFTER,
        )
    async with slots:
        await enforce_quota(request, user_id)
        spool = Spool()
        try:
            return await _accept_document(request, user_id, spool, query, due)
        finally:
            spool.close()


async def _accept_document(
    request: web.Request, user_id: str, spool: Spool, query: UploadQuery, due: datetime | None
) -> web.Response:
    kernel, key = request.app[KERNEL], idempotency_key(request)
    upload = await read_upload(request, request.app[SETTINGS].document_max_bytes, spool)
    metadata = metadata_of(upload.metadata)
    digest = request_digest(
        "document", sha256=upload.sha256, title=upload.title, filename=upload.filename,
        metadata=metadata, run_at=query.run_at, delay_s=query.delay_s,
        **callback_digest(query.callback_url),
    )  # fmt: skip
    callback = await callback_for(request.app[SETTINGS], kernel.keyring, query.callback_url)
    doc = documents.NewDocument(
        user_id=user_id,
        title=upload.title or upload.filename or "untitled",
        filename=upload.filename,
        media_type=upload.media_type,
        size_bytes=upload.size,
        sha256=upload.sha256,
    )
    new = new_task(
        kernel.settings, type=TaskType.DOCUMENT, user_id=user_id,
        input={"document_id": str(doc.id)}, idempotency_key=key, metadata=metadata,
        request_digest=digest if key is not None else None, run_at=due,
        priority=priority_of(request.app[SETTINGS], principal(request), query.priority),
        callback=callback[0] if callback else None,
    )  # fmt: skip

    async def write(conn: asyncpg.Connection) -> Outgoing | Existing:
        outgoing = await kernel.store.insert_task(
            conn, new, relay_grace_s=kernel.settings.outbox_grace_s
        )
        if outgoing is None:  # the key's task exists: its document, not a second one
            assert key is not None
            return await kernel.store.existing(conn, user_id, key)
        blobs = blob_store(kernel.pool)
        await documents.insert_document(conn, blobs, doc, spool.chunks(), new.task_id)
        return outgoing

    how_to_check = how_to_check_after_loss(key, "GET /api/documents")
    db = user_db(request, user_id)
    written = await create_in(db, write, how_to_check)
    if isinstance(written, Existing):
        check_repeat(written.request_digest, digest)
        answer = DocumentAccepted(
            document_id=UUID(written.input["document_id"]), task_id=written.task_id,
            status=written.status,
            **await repeat_callback(db, kernel.keyring, task_id=written.task_id),
        )  # fmt: skip
        return accepted(accepted_body(answer), written.task_id)
    # A delayed task's message goes out from the outbox when it is due.
    if due is None:
        await request.app[PUBLISHER].send(written)
    answer = DocumentAccepted(
        document_id=doc.id, task_id=new.task_id, status=new.status, **callback_answer(callback)
    )
    return accepted(accepted_body(answer), new.task_id)
