"""Documents as the API and the tools see them: create, read, list, delete and search.

Every read takes the caller's user_id and filters by it, so another user's document is absent
(DESIGN.md §7). `search_documents` is the one search query: the API's
`GET /api/documents/search` and the tool-worker's `search_documents` tool both call it.
The doc-worker's writes (chunks, page counts) are in doc_worker.index.
"""

from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from uuid import UUID, uuid4

import asyncpg

from taskfleet.data.blobs import BlobStore, one_chunk
from taskfleet.store.tenancy import Db

PDF: Final = "application/pdf"
TEXT: Final = "text/plain"
MARKDOWN: Final = "text/markdown"
MEDIA_TYPES: Final = (PDF, TEXT, MARKDOWN)

# A list cursor: the (created_at, id) of the last document of the previous page, as
# `<microseconds since the epoch>_<uuid>`. Every string of this pattern is a valid cursor, so
# the API's schema says exactly which cursors it takes.
CURSOR_PATTERN: Final = (
    r"^[0-9]{1,16}_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

# The text search configuration of the index (migrations/0003: the generated tsvector).
TS_CONFIG: Final = "english"
MAX_QUERY_CHARS: Final = 500
# Matches in a snippet are marked as Markdown bold: the snippet goes to an LLM or a chat UI.
_HEADLINE = "StartSel=**, StopSel=**, MaxWords=35, MinWords=15, MaxFragments=2"

# A document's status, from its own row and its task's (the task may be gone: retention
# deletes only terminal tasks, so a missing task of an unindexed document means it failed).
_STATUS = """
CASE WHEN d.indexed_at IS NOT NULL THEN 'indexed'
     WHEN t.status = 'scheduled' THEN 'scheduled'
     WHEN t.status IN ('queued', 'retrying') THEN 'queued'
     WHEN t.status = 'processing' THEN 'processing'
     WHEN t.status = 'cancelled' THEN 'cancelled'
     ELSE 'failed' END
"""
_TASK = """
CASE WHEN t.id IS NULL THEN NULL ELSE jsonb_build_object(
    'id', t.id, 'status', t.status, 'progress', t.progress, 'stage', t.stage,
    'status_message', t.status_message, 'error', t.error, 'attempts', t.attempts,
    'max_attempts', t.max_attempts) END
"""
_SELECT = f"""
SELECT d.id, d.user_id, d.title, d.filename, d.media_type, d.size_bytes, d.sha256, d.pages,
       (SELECT count(*) FROM document_chunks c WHERE c.document_id = d.id) AS chunks,
       {_STATUS} AS status, d.task_id, {_TASK} AS task, d.created_at, d.indexed_at
FROM documents d LEFT JOIN tasks t ON t.id = d.task_id
"""


class BadCursor(ValueError):
    """A list cursor that is not of CURSOR_PATTERN."""


def encode_cursor(created_at: datetime, document_id: UUID) -> str:
    """The list cursor after this document: its exact microseconds since the epoch, and its id."""
    micros = (created_at - _EPOCH) // timedelta(microseconds=1)  # exact, unlike a float
    return f"{micros}_{document_id}"


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """The (created_at, id) a cursor names; BadCursor for one we did not hand out."""
    micros, _, raw_id = cursor.partition("_")
    try:
        if not micros.isdigit():
            raise ValueError(micros)
        return _EPOCH + timedelta(microseconds=int(micros)), UUID(raw_id)
    except (ValueError, OverflowError):
        raise BadCursor(f"invalid cursor {cursor[:80]!r}") from None


@dataclass(frozen=True, slots=True)
class NewDocument:
    user_id: str
    title: str
    filename: str | None
    media_type: str
    size_bytes: int
    sha256: str
    id: UUID = field(default_factory=uuid4)

    @property
    def blob_key(self) -> str:
        """Where the document's bytes are stored: `documents/<user_id>/<id>`."""
        # The owner in the key: row security lets a user's transaction reach its own blobs.
        return f"documents/{self.user_id}/{self.id}"


@dataclass(frozen=True, slots=True)
class DocumentPage:
    documents: list[dict[str, Any]]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Deleted:
    document_id: UUID
    task_id: UUID | None


@dataclass(frozen=True, slots=True)
class SearchHit:
    document_id: UUID
    title: str
    page: int
    chunk_index: int
    snippet: str
    score: float


async def insert_document(
    conn: asyncpg.Connection,
    blobs: BlobStore,
    doc: NewDocument,
    data: bytes | AsyncIterable[bytes],
    task_id: UUID,
) -> None:
    """The document row and its bytes (whole, or as chunks read while they are stored),
    inside the caller's transaction (with its task)."""
    await blobs.put(conn, doc.blob_key, one_chunk(data) if isinstance(data, bytes) else data)
    await conn.execute(
        "INSERT INTO documents (id, user_id, title, filename, media_type, size_bytes, sha256,"
        " blob_key, task_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        doc.id,
        doc.user_id,
        doc.title,
        doc.filename,
        doc.media_type,
        doc.size_bytes,
        doc.sha256,
        doc.blob_key,
        task_id,
    )


async def get_document(pool: Db, document_id: UUID, user_id: str) -> dict[str, Any] | None:
    """The document as listed (status, task, chunk count), or None if it is not `user_id`'s."""
    row = await pool.fetchrow(f"{_SELECT} WHERE d.id = $1 AND d.user_id = $2", document_id, user_id)
    return dict(row) if row is not None else None


async def list_documents(
    pool: Db, user_id: str, *, limit: int = 50, cursor: str | None = None
) -> DocumentPage:
    """Newest first; `cursor` is the previous page's `next_cursor` (else BadCursor)."""
    args: list[Any] = [user_id, limit + 1]
    where = "d.user_id = $1"
    if cursor is not None:
        args += list(decode_cursor(cursor))
        where += " AND (d.created_at, d.id) < ($3, $4)"
    rows = await pool.fetch(
        f"{_SELECT} WHERE {where} ORDER BY d.created_at DESC, d.id DESC LIMIT $2", *args
    )
    documents = [dict(r) for r in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    return DocumentPage(documents, encode_cursor(last["created_at"], last["id"]) if last else None)


async def delete_document(
    pool: Db, blobs: BlobStore, document_id: UUID, user_id: str
) -> Deleted | None:
    """Delete the document, its chunks and its bytes in one transaction; None if the user has
    no such document. The caller cancels the returned task if it is still running."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "DELETE FROM documents WHERE id = $1 AND user_id = $2 RETURNING blob_key, task_id",
            document_id,
            user_id,
        )
        if row is None:
            return None
        await blobs.delete(conn, row["blob_key"])
    return Deleted(document_id, row["task_id"])


async def search_documents(
    pool: Db | asyncpg.Connection, user_id: str, query: str, *, limit: int = 10
) -> list[SearchHit]:
    """The user's best-matching chunks, best first, from fully indexed documents only.

    The query is web-search syntax (`websearch_to_tsquery`: words, "a phrase", -not, or), so
    any text is a valid query; one of stop words only matches nothing. Chunks of a document
    still being indexed are not searched: its results would change under the reader.
    """
    # PostgreSQL text cannot hold NUL; it separates words like any other symbol.
    query = query[:MAX_QUERY_CHARS].replace("\x00", " ")
    if not query.strip():
        return []
    rows = await pool.fetch(
        f"""
        WITH q AS (SELECT websearch_to_tsquery('{TS_CONFIG}', $2) AS query),
        hits AS (
            SELECT c.document_id, d.title, d.created_at, c.page, c.chunk_index, c.content,
                   ts_rank_cd(c.tsv, q.query) AS score
            FROM q, document_chunks c JOIN documents d ON d.id = c.document_id
            WHERE c.user_id = $1 AND d.user_id = $1 AND d.indexed_at IS NOT NULL
              AND c.tsv @@ q.query
            ORDER BY score DESC, d.created_at DESC, c.document_id, c.page, c.chunk_index
            LIMIT $3
        )
        SELECT h.document_id, h.title, h.page, h.chunk_index, h.score,
               ts_headline('{TS_CONFIG}', h.content, q.query, '{_HEADLINE}') AS snippet
        FROM hits h, q
        ORDER BY h.score DESC, h.created_at DESC, h.document_id, h.page, h.chunk_index
        """,
        user_id,
        query,
        limit,
    )
    return [
        SearchHit(
            document_id=r["document_id"],
            title=r["title"],
            page=r["page"],
            chunk_index=r["chunk_index"],
            snippet=r["snippet"],
            score=float(r["score"]),
        )
        for r in rows
    ]
