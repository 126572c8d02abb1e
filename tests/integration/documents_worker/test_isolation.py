"""A user's documents are their own: another user's never appear in search or by id, and a
message naming another user's document fails and changes nothing."""

from collections.abc import Awaitable
from typing import Any
from uuid import uuid4

import pytest

from taskfleet.core.constants import TaskType
from taskfleet.core.messages import TaskMessage
from taskfleet.runtime.kernel import Kernel
from taskfleet.store.records import NewTask
from tests.conftest import wait_for
from tests.integration.api_client import auth, new_user
from tests.integration.conftest import ConsumerFactory, drain_dlq, wait_status
from tests.integration.documents_worker.helpers import (
    DOCS,
    Client,
    handler,
    search,
    upload,
    wait_document,
)
from tests.pdfs import text_pdf

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


class TestIsolation:
    async def test_another_users_documents_never_appear_in_search_or_by_id(
        self, kernel: Kernel, consume: ConsumerFactory, client: Client
    ) -> None:
        await consume(handler(kernel), spec=DOCS)
        alice, bob = new_user("alice"), new_user("bob")
        mine = await upload(client, alice, text_pdf(["Aardvark notes: the armadillo plan."]))
        theirs = await upload(client, bob, text_pdf(["Aardvark notes of bob, nothing more."]))
        for user, accepted in ((alice, mine), (bob, theirs)):
            doc = await wait_document(client, user, accepted["document_id"], "indexed", "failed")
            assert doc["status"] == "indexed"

        assert {h["document_id"] for h in await search(client, alice, "aardvark")} == {
            mine["document_id"]
        }
        assert {h["document_id"] for h in await search(client, bob, "aardvark")} == {
            theirs["document_id"]
        }
        assert await search(client, bob, "armadillo") == []
        resp = await client.get(
            "/api/documents/search", params={"q": "armadillo", "user_id": alice}, headers=auth(bob)
        )
        assert resp.status == 403  # a user token searches its own documents only
        resp = await client.get(f"/api/documents/{mine['document_id']}", headers=auth(bob))
        assert resp.status == 404
        resp = await client.delete(f"/api/documents/{mine['document_id']}", headers=auth(bob))
        assert resp.status == 404
        service = auth("backend", scope="service")
        params = {"q": "armadillo", "user_id": alice}
        resp = await client.get("/api/documents/search", params=params, headers=service)
        assert [h["document_id"] for h in (await resp.json())["results"]] == [mine["document_id"]]

    async def test_a_message_naming_another_users_document_fails_and_changes_nothing(
        self, kernel: Kernel, consume: ConsumerFactory, client: Client
    ) -> None:
        await consume(handler(kernel), spec=DOCS)
        alice, mallory = new_user("alice"), new_user("mallory")
        mine = await upload(client, alice, text_pdf(["Secret pangolin itinerary."]))
        await wait_document(client, alice, mine["document_id"], "indexed")
        # Published straight to the queue: only a chat message creates its task from a
        # message, so this one is dead-lettered and no task is made for it.
        await drain_dlq(kernel, DOCS.name)
        forged = TaskMessage(
            task_id=uuid4(),
            type=TaskType.DOCUMENT,
            user_id=mallory,
            payload={"document_id": mine["document_id"]},
        )
        await kernel.broker.publish(
            kernel.settings.queue(DOCS.name), forged.dumps(), message_id=str(forged.task_id)
        )
        [letter] = await wait_for(
            lambda: _some(drain_dlq(kernel, DOCS.name)), what="the forged message's dead letter"
        )
        assert "no task" in str(letter.headers["x-taskfleet-reason"])
        assert await kernel.store.get_task(forged.task_id) is None
        # A task row of that user naming it (as if created by the kernel) finds nothing either
        named = NewTask(
            type=TaskType.DOCUMENT,
            user_id=mallory,
            max_attempts=1,
            input={"document_id": mine["document_id"]},
        )
        async with kernel.pool.acquire() as conn:
            outgoing = await kernel.store.insert_task(conn, named, relay_grace_s=0)
        assert outgoing is not None
        failed = await wait_status(kernel, named.task_id, "failed")
        assert failed["error"]["code"] == "document_not_found"
        assert await search(client, mallory, "pangolin") == []
        assert [h["page"] for h in await search(client, alice, "pangolin")] == [1]
        await drain_dlq(kernel, DOCS.name)


async def _some(found: Awaitable[list[Any]]) -> list[Any] | None:
    return (await found) or None
