"""A document is its owner's: another user's is 404 for read and delete, a user token cannot
upload for another user, a service token can, and an id that is not a UUID is 404."""

from uuid import UUID

import pytest

from taskfleet.runtime.kernel import Kernel
from tests.doc_fixtures import form
from tests.integration.api_client import auth, new_user
from tests.integration.documents_api.helpers import Client, error_of, upload

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


class TestOwnership:
    async def test_another_users_document_is_404_for_read_and_delete(
        self, client: Client, kernel: Kernel
    ) -> None:
        alice, bob = new_user("alice"), new_user("bob")
        doc_id = (await upload(client, alice, b"alice's text"))["document_id"]
        for method in ("GET", "DELETE"):
            resp = await client.request(method, f"/api/documents/{doc_id}", headers=auth(bob))
            assert (await error_of(resp, 404))["code"] == "not_found"
            resp = await client.request(
                method, f"/api/documents/{doc_id}?user_id={alice}", headers=auth(bob)
            )
            await error_of(resp, 404)
        resp = await client.get("/api/documents", headers=auth(bob))
        assert (await resp.json())["documents"] == []
        assert (
            await kernel.pool.fetchval("SELECT count(*) FROM documents WHERE id = $1", UUID(doc_id))
            == 1
        )
        # The backend's service token may act for alice.
        service = auth("backend", scope="service")
        resp = await client.get(f"/api/documents/{doc_id}?user_id={alice}", headers=service)
        assert (await resp.json())["user_id"] == alice

    async def test_a_user_token_cannot_upload_for_another_user(self, client: Client) -> None:
        resp = await client.post(
            "/api/documents?user_id=someone", data=form(b"x", "a.txt"), headers=auth("a")
        )
        assert (await error_of(resp, 403))["code"] == "forbidden"

    async def test_a_service_token_uploads_for_a_user(self, client: Client) -> None:
        user = new_user()
        resp = await client.post(
            f"/api/documents?user_id={user}",
            data=form(b"x", "a.txt"),
            headers=auth("backend", scope="service"),
        )
        doc_id = (await resp.json())["document_id"]
        resp = await client.get(f"/api/documents/{doc_id}", headers=auth(user))
        assert resp.status == 200

    async def test_an_id_that_is_not_a_uuid_is_404(self, client: Client) -> None:
        resp = await client.get("/api/documents/not-a-uuid", headers=auth("a"))
        await error_of(resp, 404)
