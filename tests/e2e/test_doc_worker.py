"""Real `taskfleet worker doc` processes: SIGKILL one half-way through a large document; the
redelivered task completes on another, resuming after the last checkpointed batch."""

import json
import os
import signal
from collections.abc import Callable
from typing import Any

import asyncpg

from doc_worker.chunking import chunk_text
from doc_worker.parser import PdfDocument
from taskfleet.core.settings import Settings
from tests.conftest import Proc, process_env, wait_for
from tests.doc_fixtures import live_parsers, store_document
from tests.e2e.conftest import wait_task
from tests.pdfs import text_pdf

PAGES = 40
BATCH = 5


def long_pages() -> list[str]:
    """Pages long enough for two chunks each, every page's text its own."""
    line = "The committee reviewed budget line {n}.{i} and approved it without changes."
    return ["\n".join(line.format(n=n, i=i) for i in range(18)) for n in range(1, PAGES + 1)]


def events(proc: Proc, name: str, task_id: Any) -> list[dict[str, Any]]:
    found = []
    for raw in proc.output().splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if line.get("event") == name and line.get("task_id") == str(task_id):
            found.append(line)
    return found


class TestWorkerKilledMidDocument:
    async def test_sigkill_half_way_resumes_from_the_checkpoint_without_duplicate_chunks(
        self, settings: Settings, spawn: Callable[..., Proc], db: asyncpg.Pool
    ) -> None:
        data = text_pdf(long_pages())
        doc_id, task_id = await store_document(settings, db, "kim", data, title="big report")
        slow = process_env(settings, DOC_BATCH_PAGES=BATCH, DOC_PAGE_DELAY_MS=80)
        first = spawn(["worker", "doc"], slow, name="doc1")

        async def two_batches_done() -> int:
            done = await db.fetchval(
                "SELECT (checkpoint ->> 'pages_done')::int FROM tasks WHERE id = $1", task_id
            )
            return int(done or 0) >= 2 * BATCH

        await wait_for(two_batches_done, timeout_s=30, what="two checkpointed batches")
        os.kill(first.popen.pid, signal.SIGKILL)
        first.popen.wait(timeout=10)
        # Its parser child dies with it (PR_SET_PDEATHSIG), not left to parse for nobody.
        await wait_for(_none_left(first.popen.pid), timeout_s=10, what="the orphan parser to die")
        checkpoint = await db.fetchval("SELECT checkpoint FROM tasks WHERE id = $1", task_id)
        done = checkpoint["pages_done"]
        assert 2 * BATCH <= done < PAGES

        second = spawn(["worker", "doc"], process_env(settings, DOC_BATCH_PAGES=BATCH), name="doc2")
        task = await wait_task(db, task_id, "completed", "failed", timeout_s=60)
        assert task["status"] == "completed", task["error"]
        assert task["attempts"] == 2
        output = task["output"]
        assert (output["pages"], output["document_id"]) == (PAGES, str(doc_id))

        # The second worker started the parser after the checkpoint and never before it.
        (started,) = events(second, "document_parse_started", task_id)
        assert (started["first_page"], started["resumed"]) == (done + 1, True)
        redone = events(second, "document_pages_indexed", task_id)
        assert min(b["first_page"] for b in redone) == done + 1
        assert max(b["last_page"] for b in redone) == PAGES
        before = events(first, "document_pages_indexed", task_id)
        assert max(b["last_page"] for b in before) >= done

        # Every chunk exactly once: the rows are exactly what one clean pass produces.
        expected = {
            (number, i, chunk)
            for number, text, _ in PdfDocument(data, reopen_every=BATCH).texts(1)
            for i, chunk in enumerate(chunk_text(text))
        }
        rows = await db.fetch(
            "SELECT page, chunk_index, content FROM document_chunks WHERE document_id = $1",
            doc_id,
        )
        assert len(rows) == len(expected) == 2 * PAGES
        assert {(r["page"], r["chunk_index"], r["content"]) for r in rows} == expected
        indexed = await db.fetchrow("SELECT pages, indexed_at FROM documents WHERE id = $1", doc_id)
        assert indexed["pages"] == PAGES
        assert indexed["indexed_at"] is not None


def _none_left(pid: int) -> Callable[[], Any]:
    async def probe() -> bool:
        return not live_parsers(pid)

    return probe
