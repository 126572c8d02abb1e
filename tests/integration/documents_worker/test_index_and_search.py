"""Upload → document_processing → doc-worker handler (real parser children) → search: a
multi-page PDF and a Markdown file are indexed and found by their words."""

from uuid import UUID

import pytest

from doc_worker.main import make_handler
from taskfleet.runtime.kernel import Kernel
from tests.integration.api_client import new_user
from tests.integration.conftest import ConsumerFactory, wait_status
from tests.integration.documents_worker.helpers import (
    DOCS,
    Client,
    document,
    handler,
    pages_with,
    search,
    upload,
    wait_document,
)
from tests.pdfs import text_pdf

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


class TestIndexAndSearch:
    async def test_a_multi_page_pdf_is_indexed_and_found_by_a_word_on_its_third_page(
        self, kernel: Kernel, consume: ConsumerFactory, client: Client
    ) -> None:
        await consume(make_handler(kernel), spec=DOCS)  # the worker's own bootstrap
        user = new_user()
        pdf = text_pdf(pages_with({3: "The xylophonist arrived late to the meeting."}, 5))
        accepted = await upload(client, user, pdf)
        # Searchable from its handler's last write; its task completes right after.
        await wait_status(kernel, UUID(accepted["task_id"]), "completed", "failed")
        doc = await document(client, user, accepted["document_id"])
        assert doc["status"] == "indexed", doc["task"]
        assert (doc["pages"], doc["chunks"]) == (5, 5)
        assert doc["task"]["status"] == "completed"
        assert doc["task"]["progress"] == 1
        hits = await search(client, user, "xylophonist")
        assert [(h["document_id"], h["page"]) for h in hits] == [(accepted["document_id"], 3)]
        assert "**xylophonist**" in hits[0]["snippet"]
        assert hits[0]["score"] > 0
        assert hits[0]["title"] == "doc.pdf"
        # A word of every page finds every page; `limit` bounds the answer.
        assert sorted(h["page"] for h in await search(client, user, "revenue")) == [1, 2, 3, 4, 5]
        assert len(await search(client, user, "revenue", limit=2)) == 2
        task = await kernel.store.get_task(UUID(accepted["task_id"]))
        assert task is not None
        assert task["output"] == {"document_id": accepted["document_id"], "pages": 5,
                                  "chunks": 5, "skipped_pages": []}  # fmt: skip
        assert task["checkpoint"]["pages_done"] == 5

    async def test_markdown_is_indexed_too(
        self, kernel: Kernel, consume: ConsumerFactory, client: Client
    ) -> None:
        await consume(handler(kernel), spec=DOCS)
        user = new_user()
        text = "# Runbook\n\nRestart the **flux capacitor** before noon.\n"
        accepted = await upload(client, user, text.encode(), "runbook.md")
        doc = await wait_document(client, user, accepted["document_id"], "indexed", "failed")
        assert (doc["status"], doc["media_type"]) == ("indexed", "text/markdown")
        hits = await search(client, user, "capacitor")
        assert [h["page"] for h in hits] == [1]
