"""Document routes (DESIGN.md §7): upload, read, list, delete and search documents.

A document belongs to a user; every query filters by the caller's user, so another user's
document answers 404 as if absent, and search never sees it. A service token may act for any
user with `?user_id=`.

The upload is streamed and counted against DOCUMENT_MAX_BYTES (the app's 1 MiB body limit is
for JSON routes; aiohttp applies it to whole-body reads only), and its type is decided by its
bytes, never by what the client claims. It goes through a spool (memory, then a temporary
file) to the blob store a chunk at a time, never whole in memory; each replica receives at
most DOCUMENT_MAX_UPLOADS at once, and answers 503 with Retry-After beyond.
"""

import asyncio
import codecs
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import unquote
from uuid import UUID

import asyncpg
from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fleet_api.auth import acting_for
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
from taskfleet.broker.publisher import new_task
from taskfleet.core.constants import TaskType
from taskfleet.core.messages import ID_PATTERN
from taskfleet.data import documents, operations
from taskfleet.data.blobs import BlobStore, blob_store
from taskfleet.store.records import Outgoing

CHUNK = 64 * 1024
# What tells a PDF (its header may follow a little junk, as readers allow).
SNIFF_BYTES = 1024
UPLOAD_SLOTS = web.AppKey("upload_slots", asyncio.Semaphore)
# Boundaries and part headers around the file: the Content-Length precheck allows this much.
MULTIPART_SLACK = 64 * 1024
# A 300-character title of 4-byte characters, with room to spare.
FIELD_MAX_BYTES = 2048
MARKDOWN_SUFFIXES = (".md", ".markdown", ".mdown", ".mkd")
MARKDOWN_TYPES = ("text/markdown", "text/x-markdown")


# -- bodies --------------------------------------------------------------------------------


class OwnerQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(None, pattern=ID_PATTERN, description="Service scope only.")


class ListQuery(OwnerQuery):
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, pattern=documents.CURSOR_PATTERN,
                               description="The `next_cursor` of the previous page.")  # fmt: skip


class SearchQuery(OwnerQuery):
    # Optional like every query parameter of the spec: no words, no results.
    q: str = Field(
        "",
        max_length=documents.MAX_QUERY_CHARS,
        description='Words, "a phrase", -excluded, or: web-search syntax.',
    )
    limit: int = Field(10, ge=1, le=50)


class UploadFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(None, max_length=300, description="Blank: the file's name.")


class DocumentAccepted(BaseModel):
    document_id: UUID
    task_id: UUID = Field(description="The document_processing task that indexes it.")


class DocumentTask(BaseModel):
    id: UUID
    status: str
    progress: float
    stage: str | None
    status_message: str | None = Field(description="e.g. `page 7 of 40`.")
    error: dict[str, Any] | None
    attempts: int
    max_attempts: int


class Document(BaseModel):
    id: UUID
    user_id: str
    title: str
    filename: str | None
    media_type: Literal["application/pdf", "text/plain", "text/markdown"]
    size_bytes: int
    sha256: str
    status: Literal["queued", "processing", "indexed", "failed", "cancelled"] = Field(
        description="Searchable once `indexed`."
    )
    pages: int | None = Field(description="Known once parsing started.")
    chunks: int = Field(description="Chunks indexed so far.")
    task_id: UUID | None
    task: DocumentTask | None = Field(description="null once retention deleted the task.")
    created_at: datetime
    indexed_at: datetime | None


class DocumentList(BaseModel):
    documents: list[Document] = Field(description="Newest first.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class SearchResult(BaseModel):
    document_id: UUID
    title: str
    page: int = Field(description="1-based page of the document.")
    chunk_index: int
    snippet: str = Field(description="The matching words are marked **like this**.")
    score: float = Field(description="ts_rank_cd: higher is better; compare within one query.")


class SearchResults(BaseModel):
    query: str
    results: list[SearchResult] = Field(description="Best first.")


# -- reading the upload ----------------------------------------------------------------------


@dataclass
class FilePart:
    head: bytes  # the first SNIFF_BYTES; the whole file is in the caller's spool
    size: int
    sha256: str
    filename: str | None
    declared_type: str | None  # what the client claims: only tells Markdown from plain text
    is_text: bool


@dataclass
class Upload:
    size: int
    sha256: str
    media_type: str
    filename: str | None
    title: str | None


class TextProbe:
    """Fed the file as it streams: is it UTF-8 text (no NUL, every sequence complete)?"""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self.ok = True

    def feed(self, chunk: bytes, *, final: bool = False) -> None:
        if not self.ok:
            return
        if b"\x00" in chunk:
            self.ok = False
            return
        try:
            self._decoder.decode(chunk, final=final)
        except UnicodeDecodeError:
            self.ok = False


def sniff(head: bytes, is_text: bool, filename: str | None, declared: str | None) -> str | None:
    """PDF by its header; text by its bytes (UTF-8), Markdown when also named or declared so."""
    if b"%PDF-" in head[:SNIFF_BYTES]:
        return documents.PDF
    if not is_text:
        return None
    name = (filename or "").lower()
    if name.endswith(MARKDOWN_SUFFIXES) or (declared or "").split(";")[0] in MARKDOWN_TYPES:
        return documents.MARKDOWN
    return documents.TEXT


def too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"a document may be at most {limit} bytes",
                    {"max_bytes": limit})  # fmt: skip


async def read_upload(request: web.Request, limit: int, spool: Spool) -> Upload:
    """The form's fields; the file's bytes go to `spool` as they arrive."""
    if request.content_type != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type",
                       "send multipart/form-data with a `file` field")  # fmt: skip
    if request.content_length is not None and request.content_length > limit + MULTIPART_SLACK:
        raise too_large(limit)
    fields: dict[str, str] = {}
    file: FilePart | None = None
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise ApiError(422, "invalid_request", "nested multipart is not supported")
            if part.name == "file" and file is None:
                file = await _read_file(part, limit, spool)
            elif part.name == "title" and part.name not in fields:
                fields[part.name] = await _read_field(part)
            else:
                where = [{"loc": ["body", part.name], "msg": "unexpected or repeated"}]
                raise ApiError(
                    422, "invalid_request", f"unexpected form field {part.name!r}", where
                )
    except (ValueError, HttpProcessingError) as exc:  # aiohttp: a malformed multipart body
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ApiError(400, "bad_multipart", f"malformed multipart body: {reason}") from None
    if file is None:
        raise ApiError(422, "invalid_request", "the `file` field is required",
                       [{"loc": ["body", "file"], "msg": "Field required"}])  # fmt: skip
    if not file.size:
        raise ApiError(422, "empty_file", "the file is empty")
    media_type = sniff(file.head, file.is_text, file.filename, file.declared_type)
    if media_type is None:
        raise ApiError(415, "unsupported_media_type",
                       "a document must be a PDF or UTF-8 plain text or Markdown",
                       {"supported": list(documents.MEDIA_TYPES)})  # fmt: skip
    try:
        form = UploadFields.model_validate(fields)
    except ValidationError as exc:
        details = exc.errors(include_url=False, include_context=False, include_input=False)
        raise ApiError(422, "invalid_request", "form fields do not fit the schema",
                       details) from None  # fmt: skip
    return Upload(file.size, file.sha256, media_type, file.filename, _printable(form.title))


async def _read_file(part: BodyPartReader, limit: int, spool: Spool) -> FilePart:
    head, digest, probe = b"", hashlib.sha256(), TextProbe()
    while chunk := await part.read_chunk(CHUNK):
        if spool.size + len(chunk) > limit:
            raise too_large(limit)
        if len(head) < SNIFF_BYTES:
            head += chunk[: SNIFF_BYTES - len(head)]
        digest.update(chunk)
        probe.feed(chunk)
        await spool.write(chunk)
    probe.feed(b"", final=True)
    return FilePart(head, spool.size, digest.hexdigest(), _clean_filename(part.filename),
                    part.headers.get("Content-Type"), probe.ok)  # fmt: skip


async def _read_field(part: BodyPartReader) -> str:
    raw = bytearray()
    while chunk := await part.read_chunk(FIELD_MAX_BYTES):
        raw += chunk
        if len(raw) > FIELD_MAX_BYTES:
            raise ApiError(422, "invalid_request", f"form field {part.name!r} is too long")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(422, "invalid_request", f"form field {part.name!r} is not UTF-8") from None


def _printable(text: str | None, limit: int = 300) -> str | None:
    """Printable characters only (PostgreSQL text cannot even hold NUL), trimmed; None if
    nothing is left."""
    kept = "".join(c for c in text or "" if c.isprintable()).strip()[:limit]
    return kept or None


def _clean_filename(name: str | None) -> str | None:
    """The last path component, printable, at most 255 characters: it is only shown.
    Percent-escapes are undone first (aiohttp and some browsers quote the name)."""
    if not name:
        return None
    return _printable(unquote(name).replace("\\", "/").rsplit("/", 1)[-1], 255)


# -- routes ----------------------------------------------------------------------------------


def owner(request: web.Request, query: OwnerQuery, *, reading: bool) -> str:
    return acting_for(request, query.user_id, reading=reading, what="document")


def document_id_param(request: web.Request) -> UUID:
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
    user_id = owner(request, parse_query(request, OwnerQuery), reading=False)
    slots = request.app[UPLOAD_SLOTS]
    if slots.locked():  # refused at once: a queue of waiting uploads is no better a bound
        limit = request.app[SETTINGS].document_max_uploads
        raise ApiError(503, "busy", f"this replica is receiving {limit} uploads already;"
                       " retry shortly", headers=RETRY_AFTER)  # fmt: skip
    async with slots:
        await enforce_quota(request, user_id)
        spool = Spool()
        try:
            return await _accept_document(request, user_id, spool)
        finally:
            spool.close()


async def _accept_document(request: web.Request, user_id: str, spool: Spool) -> web.Response:
    kernel = request.app[KERNEL]
    upload = await read_upload(request, request.app[SETTINGS].document_max_bytes, spool)
    doc = documents.NewDocument(
        user_id=user_id, title=upload.title or upload.filename or "untitled",
        filename=upload.filename, media_type=upload.media_type, size_bytes=upload.size,
        sha256=upload.sha256,
    )  # fmt: skip
    new = new_task(kernel.settings, type=TaskType.DOCUMENT, user_id=user_id,
                   input={"document_id": str(doc.id)})  # fmt: skip

    async def write(conn: asyncpg.Connection) -> Outgoing | None:
        outgoing = await kernel.store.insert_task(
            conn, new, relay_grace_s=kernel.settings.outbox_grace_s
        )
        await documents.insert_document(conn, _blobs(request), doc, spool.chunks(), new.task_id)
        return outgoing

    how_to_check = "look for it in GET /api/documents before uploading it again"
    outgoing = await create_in(user_db(request, user_id), write, how_to_check)
    if outgoing is not None:  # None only for an idempotent repeat, which these never are
        await request.app[PUBLISHER].send(outgoing)
    accepted = DocumentAccepted(document_id=doc.id, task_id=new.task_id)
    return json_response(accepted.model_dump(mode="json"), status=202)


async def get_document(request: web.Request) -> web.Response:
    document_id = document_id_param(request)
    user_id = owner(request, parse_query(request, OwnerQuery), reading=True)
    row = await documents.get_document(user_db(request, user_id), document_id, user_id)
    if row is None:
        raise not_found("document not found")
    return json_response(_document(row))


async def list_documents(request: web.Request) -> web.Response:
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
    query = parse_query(request, SearchQuery)
    # Not an object to hide: naming another user is refused outright, as for an upload.
    user_id = owner(request, query, reading=False)
    hits = await documents.search_documents(
        user_db(request, user_id), user_id, query.q, limit=query.limit
    )
    results = SearchResults(
        query=query.q,
        results=[SearchResult(document_id=h.document_id, title=h.title, page=h.page,
                              chunk_index=h.chunk_index, snippet=h.snippet, score=h.score)
                 for h in hits],
    )  # fmt: skip
    return json_response(results.model_dump(mode="json"))


def add_document_routes(app: web.Application) -> None:
    api, tags = app[OPENAPI], ("documents",)
    app[UPLOAD_SLOTS] = asyncio.Semaphore(app[SETTINGS].document_max_uploads)
    # `file` is declared as text that any client can send and we accept; the full rule (a PDF,
    # or UTF-8 text, read from the bytes) cannot be a JSON schema, so it is the description.
    # (As `format: binary`, a schema-driven client would send arbitrary bytes, rightly 415.)
    form = {
        "type": "object",
        "required": ["file"],
        "additionalProperties": False,  # any other field is 422, as `extra` in a JSON body
        "properties": {
            "file": {"type": "string", "minLength": 1, "pattern": "^[^\\u0000]+$",
                     "description": "The document: a PDF, or UTF-8 plain text or Markdown. Its"
                     " type is read from its bytes; the part's Content-Type (or a .md name)"
                     " only tells Markdown from plain text."},
            "title": {"type": "string", "maxLength": 300},
        },
    }  # fmt: skip
    # `search` before `{document_id}`: aiohttp matches routes in the order they were added.
    api.add(app, Operation("GET", "/api/documents/search", search_documents,
                           "Search the caller's indexed documents", SearchResults,
                           query=SearchQuery, errors=(401, 403, 422, 503), tags=tags))  # fmt: skip
    api.add(app, Operation("POST", "/api/documents", upload_document,
                           "Upload a document (multipart `file`, optional `title`) to index",
                           DocumentAccepted, 202, query=OwnerQuery,
                           errors=(400, 401, 403, 413, 415, 422, 429, 503), tags=tags,
                           raw_body={"multipart/form-data": form}))  # fmt: skip
    api.add(app, Operation("GET", "/api/documents", list_documents, "The caller's documents",
                           DocumentList, query=ListQuery, errors=(400, 401, 404, 422, 503),
                           tags=tags))  # fmt: skip
    api.add(app, Operation("GET", "/api/documents/{document_id}", get_document,
                           "A document: status, pages, chunks and its task", Document,
                           query=OwnerQuery, errors=(401, 404, 422, 503), tags=tags))  # fmt: skip
    api.add(app, Operation("DELETE", "/api/documents/{document_id}", delete_document,
                           "Delete a document, its chunks and its bytes", None, 204,
                           query=OwnerQuery, errors=(401, 404, 422, 503), tags=tags))  # fmt: skip
