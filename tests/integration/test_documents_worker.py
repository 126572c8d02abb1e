"""Upload → document_processing → doc-worker handler (real parser children) → search.

The consumer runs in this process with the real handler; the parser runs in real child
processes under their limits, so a child that blows up is a real one and the consumer that
goes on afterwards is the same one.
"""

import os
import resource
import sys
from collections.abc import AsyncIterator, Awaitable, Sequence
from functools import partial
from typing import Any
from uuid import UUID, uuid4

import pytest
from aiohttp.test_utils import TestClient

from doc_worker.child import PARSER_COMMAND, ParseLimits
from doc_worker.handlers import DocConfig, handle_document
from doc_worker.main import make_handler
from taskfleet.core.constants import QUEUES, TaskType
from taskfleet.core.messages import TaskMessage
from taskfleet.data.blobs import blob_store
from taskfleet.path.consumer import Handler
from taskfleet.runtime.kernel import Kernel
from taskfleet.store.records import NewTask
from tests.conftest import wait_for
from tests.doc_fixtures import form, live_parsers, store_document
from tests.integration.api_client import api, auth, new_user
from tests.integration.conftest import ConsumerFactory, drain_dlq, wait_status
from tests.pdfs import memory_bomb_pdf, text_pdf

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

DOCS = QUEUES[TaskType.DOCUMENT]
Client = TestClient[Any, Any]


def handler(kernel: Kernel, parser: Sequence[str] = PARSER_COMMAND, **limits: Any) -> Handler:
    """The real handler with small batches, and parser limits a test may change."""
    parse = {"memory_mb": 512, "cpu_s": 30, "timeout_s": 60, "reopen_every": 10, **limits}
    config = DocConfig(batch_pages=2, limits=ParseLimits(**parse), parser=parser)
    return partial(handle_document, blobs=blob_store(kernel.pool), config=config)


@pytest.fixture
async def client(kernel: Kernel) -> AsyncIterator[Client]:
    async with api(kernel) as c:  # publishes for real: the consumer below takes it
        yield c


async def upload(client: Client, user: str, data: bytes, name: str = "doc.pdf") -> dict[str, Any]:
    resp = await client.post("/api/documents", data=form(data, name), headers=auth(user))
    body: dict[str, Any] = await resp.json()
    assert resp.status == 202, body
    return body


async def document(client: Client, user: str, doc_id: str) -> dict[str, Any]:
    resp = await client.get(f"/api/documents/{doc_id}", headers=auth(user))
    body: dict[str, Any] = await resp.json()
    assert resp.status == 200, body
    return body


async def wait_document(client: Client, user: str, doc_id: str, *statuses: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        doc = await document(client, user, doc_id)
        return doc if doc["status"] in statuses else None

    found: dict[str, Any] = await wait_for(probe, timeout_s=30, what=f"document {statuses}")
    return found


async def search(client: Client, user: str, q: str, **params: Any) -> list[dict[str, Any]]:
    resp = await client.get("/api/documents/search", params={"q": q, **params}, headers=auth(user))
    body = await resp.json()
    assert resp.status == 200, body
    results: list[dict[str, Any]] = body["results"]
    return results


def pages_with(words: dict[int, str], count: int) -> list[str]:
    """`count` pages of ordinary prose, with words[n] on page n (1-based)."""
    return [
        f"Page {n} of the quarterly report.\nRevenue grew in every region this quarter.\n"
        + words.get(n, "Nothing else of note happened here.")
        for n in range(1, count + 1)
    ]


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


class TestBadDocuments:
    async def test_a_memory_bomb_and_a_non_pdf_fail_clearly_and_the_worker_serves_the_next(
        self, kernel: Kernel, consume: ConsumerFactory, client: Client
    ) -> None:
        await drain_dlq(kernel, DOCS.name)
        consumer = await consume(handler(kernel), concurrency=1, spec=DOCS)
        user = new_user()
        bomb = await upload(client, user, memory_bomb_pdf(pages=8), "bomb.pdf")
        # Bytes that only claim to be a PDF: the API refuses those, a backend might not.
        _, junk_task = await store_document(
            kernel.settings, kernel.pool, user, b"GIF89a" + bytes(4000)
        )
        good = await upload(client, user, text_pdf(pages_with({2: "Quokkas everywhere."}, 3)))

        failed = await wait_status(kernel, UUID(bomb["task_id"]), "failed", timeout_s=30)
        assert failed["error"]["code"] == "parser_memory_limit"
        assert "memory limit of 512 MiB" in failed["error"]["message"]
        assert failed["error"]["retryable"] is False
        assert failed["attempts"] == 1  # permanent: not tried again
        failed = await wait_status(kernel, junk_task, "failed", timeout_s=30)
        assert failed["error"]["code"] == "invalid_document"
        assert "not a PDF" in failed["error"]["message"]
        doc = await wait_document(client, user, good["document_id"], "indexed", "failed")
        assert doc["status"] == "indexed"
        assert [h["page"] for h in await search(client, user, "quokkas")] == [2]
        # The failed documents say so, and are not searchable.
        bomb_doc = await document(client, user, bomb["document_id"])
        assert bomb_doc["status"] == "failed"
        assert bomb_doc["task"]["error"]["code"] == "parser_memory_limit"
        assert consumer.consuming
        # Each failure dead-lettered its message (through the outbox: soon, not at once).
        dead: set[Any] = set()

        async def both_dead_lettered() -> bool:
            letters = await drain_dlq(kernel, DOCS.name)
            dead.update(m.headers.get("x-taskfleet-error") for m in letters)
            return dead == {"parser_memory_limit", "invalid_document"}

        await wait_for(both_dead_lettered, what="two dead letters")

    async def test_a_slow_parser_fails_with_a_timeout_and_leaves_no_child_behind(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        await consume(handler(kernel, timeout_s=0.5, page_delay_ms=3000), spec=DOCS)
        _, task_id = await store_document(
            kernel.settings, kernel.pool, new_user(), text_pdf(["slow page"])
        )
        failed = await wait_status(kernel, task_id, "failed", timeout_s=30)
        assert failed["error"]["code"] == "parser_timeout"
        assert "page 1" in failed["error"]["message"]
        assert live_parsers(os.getpid()) == []  # killed and reaped, not left sleeping
        await drain_dlq(kernel, DOCS.name)

    async def test_a_parser_that_floods_stderr_fails_its_task_and_the_worker_stays_small(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        # A stand-in for a parser gone wrong: a page count, then 512 MiB on stderr
        flood = [sys.executable, "-c", "import sys\nprint('{\"pages\": 2}', flush=True)\n"
                 "for _ in range(512): sys.stderr.buffer.write(b'!' * 1024 * 1024)\n"]  # fmt: skip
        consumer = await consume(handler(kernel, parser=flood), concurrency=1, spec=DOCS)
        _, task_id = await store_document(
            kernel.settings, kernel.pool, new_user(), text_pdf(["one", "two"])
        )
        peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        failed = await wait_status(kernel, task_id, "failed", timeout_s=30)
        assert failed["error"] == {
            "code": "parser_crashed", "retryable": False,
            "message": "page 1: the parser wrote more than 64 KiB to stderr",
        }  # fmt: skip
        assert failed["attempts"] == 1
        growth_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
        assert growth_kib < 64 * 1024  # the flood did not land in the worker
        assert live_parsers(os.getpid()) == []
        assert consumer.consuming
        await drain_dlq(kernel, DOCS.name)


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


async def _some(found: Awaitable[list[Any]]) -> list[Any] | None:
    return (await found) or None
