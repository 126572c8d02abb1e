"""Document routes (DESIGN.md §7): upload, read, list, delete and search documents.

A document belongs to a user; every query filters by the caller's user, so another user's
document answers 404 as if absent, and search never sees it. A service token may act for any
user with `?user_id=`.

The upload is accepted by `document_submit` and read by `document_upload`.
"""

import asyncio
from typing import Any
from uuid import UUID

from aiohttp import web

from fleet_api.auth import acting_for
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
from fleet_api.document_submit import UPLOAD_SLOTS as UPLOAD_SLOTS
from fleet_api.document_submit import upload_document
from fleet_api.errors import ApiError, json_response, not_found
from fleet_api.openapi import Operation
from fleet_api.routes import (
    KERNEL,
    OPENAPI,
    SETTINGS,
    parse_query,
    user_db,
)
from taskfleet.client.models import DocumentAccepted
from taskfleet.data import documents, operations
from taskfleet.data.blobs import BlobStore, blob_store


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
