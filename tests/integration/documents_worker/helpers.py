"""What the document-worker tests share: the doc-worker handler (real parser children), an upload,
reading a document and waiting for its status, a search, and the pages that hold a text."""

from collections.abc import Sequence
from functools import partial
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from doc_worker.child import PARSER_COMMAND, ParseLimits
from doc_worker.handlers import DocConfig, handle_document
from taskfleet.core.constants import QUEUES, TaskType
from taskfleet.data.blobs import blob_store
from taskfleet.path.consumer import Handler
from taskfleet.runtime.kernel import Kernel
from tests.conftest import wait_for
from tests.doc_fixtures import form
from tests.integration.api_client import auth

DOCS = QUEUES[TaskType.DOCUMENT]
Client = TestClient[web.Request, web.Application]


def handler(kernel: Kernel, parser: Sequence[str] = PARSER_COMMAND, **limits: Any) -> Handler:
    """The real handler with small batches, and parser limits a test may change."""
    parse = {"memory_mb": 512, "cpu_s": 30, "timeout_s": 60, "reopen_every": 10, **limits}
    config = DocConfig(batch_pages=2, limits=ParseLimits(**parse), parser=parser)
    return partial(handle_document, blobs=blob_store(kernel.pool), config=config)


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
