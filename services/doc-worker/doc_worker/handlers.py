"""What a document task is: parse the document in a limited child process, chunk each page,
index the chunks, and checkpoint after every batch of pages.

Resume: the checkpoint `{"pages_done": k, ...}` is written only after the chunks of pages
1..k are committed, and a new attempt starts the parser at page k+1, so pages already done
are never parsed again. A batch cut short by a crash is done again; its chunks have the same
keys and are skipped (doc_worker.index.save_chunks), never duplicated.
"""

import asyncio
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from doc_worker import index
from doc_worker.child import PARSER_COMMAND, ParsedPage, ParseLimits, run_parser
from doc_worker.chunking import chunk_text
from doc_worker.index import Chunk, StoredDocument
from doc_worker.settings import DocWorkerSettings
from taskfleet.core.tracing import tracer
from taskfleet.data.blobs import BlobStore
from taskfleet.handler import DocumentPayload, PermanentError, TaskContext, TaskResult
from taskfleet.store.tenancy import Db

log = structlog.get_logger("doc_worker")

STAGE = "indexing"


@dataclass(frozen=True, slots=True)
class DocConfig:
    batch_pages: int
    limits: ParseLimits
    parser: Sequence[str] = PARSER_COMMAND  # tests run a stand-in that misbehaves

    @classmethod
    def from_settings(cls, settings: DocWorkerSettings) -> "DocConfig":
        """The batch size and parser limits of the DOC_* settings, with the real parser."""
        return cls(settings.doc_batch_pages, ParseLimits.from_settings(settings))


@dataclass(frozen=True, slots=True)
class Resume:
    """The checkpoint: pages 1..pages_done are indexed; `skipped` pages had no readable text."""

    pages_done: int = 0
    skipped: tuple[int, ...] = field(default_factory=tuple)

    @classmethod
    def of(cls, checkpoint: Any) -> "Resume":
        """Where earlier attempts got to; from page 1 without a checkpoint, or one not of ours."""
        if not isinstance(checkpoint, dict):
            return cls()
        done, skipped = checkpoint.get("pages_done"), checkpoint.get("skipped_pages")
        if not isinstance(done, int) or done < 0:
            return cls()
        pages = tuple(p for p in skipped if isinstance(p, int)) if isinstance(skipped, list) else ()
        return cls(done, pages)

    def state(self, pages: int) -> dict[str, Any]:
        """The checkpoint to write, as `of` reads it back, with the document's page count beside."""
        return {"pages_done": self.pages_done, "pages": pages, "skipped_pages": list(self.skipped)}


async def handle_document(
    ctx: TaskContext[DocumentPayload], *, blobs: BlobStore, config: DocConfig
) -> TaskResult:
    """Index one document of the task's user; answers {document_id, pages, chunks, ...}."""
    db = ctx.db
    document_id = ctx.payload.document_id
    doc = await index.load_document(db, document_id, ctx.user_id)
    if doc is None:  # absent, deleted, or another user's: all the same to this user
        raise PermanentError(f"document {document_id} not found", code="document_not_found")
    resume = Resume.of(ctx.last_checkpoint)
    if doc.indexed_at is None:
        resume = await _parse_and_index(ctx, db, blobs, config, doc, resume)
    pages, chunks = await index.mark_indexed(db, doc.id)
    log.info("document_indexed", document_id=str(doc.id), pages=pages, chunks=chunks)
    return TaskResult(
        output={
            "document_id": str(doc.id),
            "pages": pages,
            "chunks": chunks,
            "skipped_pages": list(resume.skipped),
        }
    )


async def _parse_and_index(
    ctx: TaskContext,
    db: Db,
    blobs: BlobStore,
    config: DocConfig,
    doc: StoredDocument,
    resume: Resume,
) -> Resume:
    data = await blobs.get(doc.blob_key)
    if data is None:
        raise PermanentError(f"document {doc.id} has no stored bytes", code="document_not_found")
    first = resume.pages_done + 1
    with tempfile.TemporaryDirectory(prefix="taskfleet-doc-") as tmp:
        path = Path(tmp) / "document"
        await asyncio.to_thread(path.write_bytes, data)
        del data  # the child reads the file; do not hold 50 MB per task meanwhile
        async with (
            run_parser(path, doc.media_type, first, config.limits, config.parser) as parser,
            _traced(doc, first),
        ):
            total = parser.pages
            await index.set_page_count(db, doc.id, total)
            log.info(
                "document_parse_started",
                document_id=str(doc.id),
                pages=total,
                first_page=first,
                resumed=first > 1,
            )
            await ctx.progress(
                min(1.0, resume.pages_done / total) if total else 1.0,
                STAGE,
                f"page {resume.pages_done} of {total}",
            )
            batch: list[ParsedPage] = []
            async for page in parser.texts():
                batch.append(page)
                await ctx.progress(page.number / total, STAGE, f"page {page.number} of {total}")
                if len(batch) >= config.batch_pages:
                    resume = await _commit_batch(ctx, db, doc, batch, total, resume)
                    batch = []
            if batch:
                resume = await _commit_batch(ctx, db, doc, batch, total, resume)
    return resume


@asynccontextmanager
async def _traced(doc: StoredDocument, first_page: int) -> AsyncIterator[None]:
    """The parse, from its first page to its last commit, as a span of the task's trace."""
    attributes: dict[str, str | int] = {"taskfleet.document_id": str(doc.id),
        "taskfleet.document.media_type": doc.media_type,
        "taskfleet.document.first_page": first_page}  # fmt: skip
    with tracer.start_as_current_span("parse document", attributes=attributes):
        yield


async def _commit_batch(
    ctx: TaskContext,
    db: Db,
    doc: StoredDocument,
    batch: list[ParsedPage],
    total: int,
    resume: Resume,
) -> Resume:
    """Chunks first, then the checkpoint that says they are there (never the other order)."""
    chunks = [
        Chunk(page.number, i, text)
        for page in batch
        for i, text in enumerate(chunk_text(page.text))
    ]
    await index.save_chunks(db, doc.id, doc.user_id, chunks)
    skipped = [p.number for p in batch if p.warning is not None]
    for page in batch:
        if page.warning is not None:
            log.warning(
                "document_page_unreadable",
                document_id=str(doc.id),
                page=page.number,
                error=page.warning,
            )
    resume = Resume(batch[-1].number, (*resume.skipped, *skipped))
    await ctx.checkpoint(resume.state(total))
    log.info(
        "document_pages_indexed",
        document_id=str(doc.id),
        first_page=batch[0].number,
        last_page=batch[-1].number,
        chunks=len(chunks),
    )
    return resume
