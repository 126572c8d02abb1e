"""Deleting a document that is being indexed cancels its task and leaves nothing behind."""

from uuid import UUID

import pytest

from taskfleet.runtime.kernel import Kernel
from tests.conftest import wait_for
from tests.integration.api_client import auth, new_user
from tests.integration.conftest import ConsumerFactory, wait_status
from tests.integration.documents_worker.helpers import DOCS, Client, handler, pages_with, upload
from tests.pdfs import text_pdf

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


class TestDeleteWhileIndexing:
    async def test_deleting_a_document_being_indexed_cancels_its_task_and_leaves_nothing(
        self, kernel: Kernel, consume: ConsumerFactory, client: Client
    ) -> None:
        await consume(handler(kernel, page_delay_ms=100), spec=DOCS)
        user = new_user()
        accepted = await upload(client, user, text_pdf(pages_with({}, 30)))
        doc_id, task_id = UUID(accepted["document_id"]), UUID(accepted["task_id"])

        async def some_pages_indexed() -> bool:
            count = await kernel.pool.fetchval(
                "SELECT count(*) FROM document_chunks WHERE document_id = $1", doc_id
            )
            return bool(count)

        await wait_for(some_pages_indexed, what="the first batch")
        resp = await client.delete(f"/api/documents/{doc_id}", headers=auth(user))
        assert resp.status == 204
        task = await wait_status(kernel, task_id, "cancelled", "failed")
        assert task["status"] == "cancelled"
        for table, column in (("document_chunks", "document_id"), ("documents", "id")):
            assert (
                await kernel.pool.fetchval(
                    f"SELECT count(*) FROM {table} WHERE {column} = $1", doc_id
                )
                == 0
            )
