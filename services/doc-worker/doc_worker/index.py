"""The doc-worker's writes: the document it indexes, its page count, its chunks.

Every write is idempotent, so a stale holder of the task (one whose message went to another
worker) or a redelivered batch can only write what is already there.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from taskfleet.handler import TaskCancelled
from taskfleet.store.tenancy import Db


def deleted(document_id: UUID) -> TaskCancelled:
    """Only its owner deletes a document (and asks to cancel its task meanwhile): a document
    gone while it is indexed is a cancellation, not a failure."""
    return TaskCancelled(f"document {document_id} was deleted while it was indexed")


@dataclass(frozen=True, slots=True)
class StoredDocument:
    id: UUID
    user_id: str
    media_type: str
    blob_key: str
    indexed_at: datetime | None


@dataclass(frozen=True, slots=True)
class Chunk:
    page: int
    index: int
    content: str


async def load_document(pool: Db, document_id: UUID, user_id: str) -> StoredDocument | None:
    """The user's document; the user comes from the task row, never from the message."""
    row = await pool.fetchrow(
        "SELECT id, user_id, media_type, blob_key, indexed_at FROM documents"
        " WHERE id = $1 AND user_id = $2",
        document_id,
        user_id,
    )
    return StoredDocument(**dict(row)) if row is not None else None


async def set_page_count(pool: Db, document_id: UUID, pages: int) -> None:
    """Record the page count as soon as the parser knows it, so the document shows it while it
    is indexed."""
    await pool.execute(
        "UPDATE documents SET pages = $2, updated_at = now() WHERE id = $1", document_id, pages
    )


async def save_chunks(pool: Db, document_id: UUID, user_id: str, chunks: Sequence[Chunk]) -> None:
    """One round trip for a batch; chunks already there (a batch done again) are skipped."""
    if not chunks:
        return
    try:
        await pool.execute(
            "INSERT INTO document_chunks (document_id, page, chunk_index, user_id, content)"
            " SELECT $1, u.page, u.idx, $2, u.content"
            " FROM unnest($3::int[], $4::int[], $5::text[]) AS u(page, idx, content)"
            " ON CONFLICT (document_id, page, chunk_index) DO NOTHING",
            document_id,
            user_id,
            [c.page for c in chunks],
            [c.index for c in chunks],
            [c.content for c in chunks],
        )
    except asyncpg.ForeignKeyViolationError:
        raise deleted(document_id) from None


async def mark_indexed(pool: Db, document_id: UUID) -> tuple[int, int]:
    """The document is searchable from now on. Returns its (pages, chunks)."""
    row = await pool.fetchrow(
        "UPDATE documents SET indexed_at = coalesce(indexed_at, now()), updated_at = now()"
        " WHERE id = $1 RETURNING coalesce(pages, 0) AS pages,"
        " (SELECT count(*) FROM document_chunks WHERE document_id = $1) AS chunks",
        document_id,
    )
    if row is None:
        raise deleted(document_id)
    return int(row["pages"]), int(row["chunks"])
