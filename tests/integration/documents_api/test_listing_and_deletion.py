"""Listing and deleting documents: newest first and paginated; a deletion removes the document,
its bytes, and cancels its task."""

from uuid import UUID

import pytest

from taskfleet.runtime.kernel import Kernel
from tests.integration.api_client import auth, new_user
from tests.integration.documents_api.helpers import Client, error_of, upload

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


class TestListAndDelete:
    async def test_list_is_newest_first_and_paginates(self, client: Client) -> None:
        user = new_user()
        ids = [
            (await upload(client, user, f"doc {i}".encode(), filename=f"{i}.txt"))["document_id"]
            for i in range(3)
        ]
        resp = await client.get("/api/documents?limit=2", headers=auth(user))
        first = await resp.json()
        assert [d["id"] for d in first["documents"]] == ids[::-1][:2]
        resp = await client.get(
            f"/api/documents?limit=2&cursor={first['next_cursor']}", headers=auth(user)
        )
        second = await resp.json()
        assert [d["id"] for d in second["documents"]] == [ids[0]]
        assert second["next_cursor"] is None
        resp = await client.get("/api/documents?cursor=bogus", headers=auth(user))
        assert (await error_of(resp, 422))["code"] == "invalid_query"
        # Any cursor of the documented form is a position: one before everything ends the list.
        resp = await client.get(f"/api/documents?cursor=0_{UUID(int=0)}", headers=auth(user))
        assert (await resp.json()) == {"documents": [], "next_cursor": None}

    async def test_delete_removes_the_document_and_its_bytes_and_cancels_its_task(
        self, client: Client, kernel: Kernel
    ) -> None:
        user = new_user()
        accepted = await upload(client, user, b"soon gone", filename="a.txt")
        doc_id, task_id = accepted["document_id"], accepted["task_id"]
        resp = await client.delete(f"/api/documents/{doc_id}", headers=auth(user))
        assert resp.status == 204
        resp = await client.get(f"/api/documents/{doc_id}", headers=auth(user))
        await error_of(resp, 404)
        resp = await client.delete(f"/api/documents/{doc_id}", headers=auth(user))
        await error_of(resp, 404)
        assert (
            await kernel.pool.fetchval(
                "SELECT count(*) FROM document_blobs WHERE key = $1", f"documents/{user}/{doc_id}"
            )
            == 0
        )
        task = await kernel.store.get_task(UUID(task_id))
        assert task is not None
        assert task["status"] == "cancelled"
