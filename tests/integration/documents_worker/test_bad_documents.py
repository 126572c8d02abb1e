"""A bad document fails its own task clearly: a memory bomb, a file that is not a PDF, a slow
parser (a timeout, no child left behind), a parser that floods stderr; the worker serves the
next and stays small."""

import os
import resource
import sys
from typing import Any
from uuid import UUID

import pytest

from taskfleet.runtime.kernel import Kernel
from tests.conftest import wait_for
from tests.doc_fixtures import live_parsers, store_document
from tests.integration.api_client import new_user
from tests.integration.conftest import ConsumerFactory, drain_dlq, wait_status
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
from tests.pdfs import memory_bomb_pdf, text_pdf

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


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
