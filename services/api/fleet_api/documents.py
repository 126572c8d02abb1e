"""Document routes (DESIGN.md §7): upload, read, list, delete and search documents.

A document belongs to a user; every query filters by the caller's user, so another user's
document answers 404 as if absent, and search never sees it. A service token may act for any
user with `?user_id=`.

The upload is read by `document_upload` (streamed, counted, typed by its bytes) into a spool,
then to the blob store a chunk at a time, never whole in memory; each replica receives at most
DOCUMENT_MAX_UPLOADS at once, and answers 503 with Retry-After beyond.
"""

import asyncio
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from aiohttp import web

from fleet_api.auth import acting_for, principal
from fleet_api.delays import due_at
from fleet_api.document_models import (
    UPLOAD_FORM,
    Document,
    DocumentList,
    ListQuery,
    OwnerQuery,
    SearchQuery,
    SearchResult,
    SearchResults,
    UploadQuery,
)
from fleet_api.document_upload import read_upload
from fleet_api.errors import RETRY_AFTER, ApiError, json_response, not_found
from fleet_api.openapi import Operation
from fleet_api.routes import (
    KERNEL,
    OPENAPI,
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
    check_repeat,
    how_to_check_after_loss,
    idempotency_key,
    metadata_of,
    priority_of,
    request_digest,
)
from taskfleet.broker.publisher import new_task
from taskfleet.client.models import DocumentAccepted
from taskfleet.core.constants import TaskType
from taskfleet.data import documents, operations
from taskfleet.data.blobs import BlobStore, blob_store
from taskfleet.store.records import Existing, Outgoing

UPLOAD_SLOTS = web.AppKey("upload_slots", asyncio.Semaphore)


def owner(request: web.Request, query: OwnerQuery, *, reading: bool) -> str:
    """The user the request acts for (fleet_api.auth.acting_for): another user's document
    reads as absent (404); writing for another user is 403."""
    return acting_for(request, query.user_id, reading=reading, what="document")


def document_id_param(request: web.Request) -> UUID:
    """The document id in the path; 404 for one that is no UUID, as if absent."""
    try:
        return UUID(request.match_info["document_id"])
    except ValueError:
        raise not_found("document not found") from None


def _blobs(request: web.Request) -> BlobStore:
    return blob_store(request.app[KERNEL].pool)


def _document(row: dict[str, Any]) -> dict[str, Any]:
    return Document.model_validate(row).model_dump(mode="json")


async def upload_document(request: web.Request) -> web.Response:
    """Accept a document: 202 with its id and task id; parsing and indexing go on in
    doc-worker. The bytes are committed with the task; the message carries ids only."""
    query = parse_query(request, UploadQuery)
    user_id = owner(request, query, reading=False)
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
    )  # fmt: skip
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
    )  # fmt: skip

    async def write(conn: asyncpg.Connection) -> Outgoing | Existing:
        outgoing = await kernel.store.insert_task(
            conn, new, relay_grace_s=kernel.settings.outbox_grace_s
        )
        if outgoing is None:  # the key's task exists: its document, not a second one
            assert key is not None
            return await kernel.store.existing(conn, user_id, key)
        await documents.insert_document(conn, _blobs(request), doc, spool.chunks(), new.task_id)
        return outgoing

    how_to_check = how_to_check_after_loss(key, "GET /api/documents")
    written = await create_in(user_db(request, user_id), write, how_to_check)
    if isinstance(written, Existing):
        check_repeat(written.request_digest, digest)
        document_id = UUID(written.input["document_id"])
        answer = DocumentAccepted(
            document_id=document_id, task_id=written.task_id, status=written.status
        )
        return accepted(answer.model_dump(mode="json"), written.task_id)
    # A delayed task's message goes out from the outbox when it is due.
    if due is None:
        await request.app[PUBLISHER].send(written)
    answer = DocumentAccepted(document_id=doc.id, task_id=new.task_id, status=new.status)
    return accepted(answer.model_dump(mode="json"), new.task_id)


async def get_document(request: web.Request) -> web.Response:
    """A document: its status, pages, chunks and task; 404 if absent or another user's."""
    document_id = document_id_param(request)
    user_id = owner(request, parse_query(request, OwnerQuery), reading=True)
    row = await documents.get_document(user_db(request, user_id), document_id, user_id)
    if row is None:
        raise not_found("document not found")
    return json_response(_document(row))


async def list_documents(request: web.Request) -> web.Response:
    """The user's documents, newest first, a page at a time; 400 for a bad cursor."""
    query = parse_query(request, ListQuery)
    user_id = owner(request, query, reading=True)
    try:
        page = await documents.list_documents(
            user_db(request, user_id), user_id, limit=query.limit, cursor=query.cursor
        )
    except documents.BadCursor as exc:  # only for a cursor that the pattern let through
        raise ApiError(400, "bad_cursor", str(exc)) from None
    return json_response(
        {"documents": [_document(d) for d in page.documents], "next_cursor": page.next_cursor}
    )


async def delete_document(request: web.Request) -> web.Response:
    """Delete the document, its chunks and its bytes; cancel its task if still unfinished."""
    kernel = request.app[KERNEL]
    document_id = document_id_param(request)
    user_id = owner(request, parse_query(request, OwnerQuery), reading=True)
    db = user_db(request, user_id)
    deleted = await documents.delete_document(db, _blobs(request), document_id, user_id)
    if deleted is None:
        raise not_found("document not found")
    if deleted.task_id is not None:
        await operations.request_cancel(kernel, db, deleted.task_id)
    return web.Response(status=204)


async def search_documents(request: web.Request) -> web.Response:
    """The user's best-matching chunks of fully indexed documents, best first."""
    query = parse_query(request, SearchQuery)
    # Not an object to hide: naming another user is refused outright, as for an upload.
    user_id = owner(request, query, reading=False)
    hits = await documents.search_documents(
        user_db(request, user_id), user_id, query.q, limit=query.limit
    )
    results = SearchResults(
        query=query.q,
        results=[
            SearchResult(
                document_id=h.document_id,
                title=h.title,
                page=h.page,
                chunk_index=h.chunk_index,
                snippet=h.snippet,
                score=h.score,
            )
            for h in hits
        ],
    )
    return json_response(results.model_dump(mode="json"))


def add_document_routes(app: web.Application) -> None:
    """Declare the document routes, with the replica's DOCUMENT_MAX_UPLOADS upload slots."""
    api, tags = app[OPENAPI], ("documents",)
    app[UPLOAD_SLOTS] = asyncio.Semaphore(app[SETTINGS].document_max_uploads)
    # `search` before `{document_id}`: aiohttp matches routes in the order they were added.
    api.add(
        app,
        Operation(
            "GET",
            "/api/documents/search",
            search_documents,
            "Search the caller's indexed documents",
            SearchResults,
            query=SearchQuery,
            errors=(401, 403, 422, 503),
            tags=tags,
        ),
    )
    api.add(
        app,
        Operation(
            "POST",
            "/api/documents",
            upload_document,
            "Upload a document (multipart `file`, optional `title`) to index",
            DocumentAccepted,
            202,
            query=UploadQuery,
            errors=(400, 401, 403, 409, 413, 415, 422, 429, 503),
            tags=tags,
            raw_body={"multipart/form-data": UPLOAD_FORM},
            idempotent=True,
        ),
    )
    api.add(
        app,
        Operation(
            "GET",
            "/api/documents",
            list_documents,
            "The caller's documents",
            DocumentList,
            query=ListQuery,
            errors=(400, 401, 404, 422, 503),
            tags=tags,
        ),
    )
    api.add(
        app,
        Operation(
            "GET",
            "/api/documents/{document_id}",
            get_document,
            "A document: status, pages, chunks and its task",
            Document,
            query=OwnerQuery,
            errors=(401, 404, 422, 503),
            tags=tags,
        ),
    )
    api.add(
        app,
        Operation(
            "DELETE",
            "/api/documents/{document_id}",
            delete_document,
            "Delete a document, its chunks and its bytes",
            None,
            204,
            query=OwnerQuery,
            errors=(401, 404, 422, 503),
            tags=tags,
        ),
    )
