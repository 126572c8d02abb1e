"""The document routes on their own (no worker): upload limits and types, ownership, listing,
deletion and the error body of every refusal (DESIGN.md §7)."""

import asyncio
import dataclasses
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from hashlib import sha256
from typing import Any
from uuid import UUID

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from fleet_api.app import create_app
from fleet_api.documents import UPLOAD_SLOTS
from fleet_api.settings import ApiSettings
from fleet_api.spool import SPOOL_MEMORY_BYTES
from taskfleet.core.settings import Settings
from taskfleet.runtime.kernel import Kernel
from tests.conftest import wait_for
from tests.doc_fixtures import form
from tests.integration.api_client import auth, new_user
from tests.pdfs import text_pdf

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

Client = TestClient[Any, Any]


@pytest.fixture
async def make_client(kernel: Kernel) -> AsyncIterator[Callable[..., Awaitable[Client]]]:
    """An API whose publish is a no-op (nothing consumes here), with settings overrides."""
    clients: list[Client] = []

    async def no_publish(queue: str, body: bytes, message_id: str, headers: dict[str, Any]) -> None:
        """The task and its outbox row are committed; keep the queue empty for other tests."""

    async def make(**overrides: Any) -> Client:
        k = kernel
        if overrides:
            k = dataclasses.replace(kernel, settings=ApiSettings.of(kernel.settings, **overrides))
        client: Client = TestClient(TestServer(create_app(k, publish=no_publish)))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def client(make_client: Callable[..., Awaitable[Client]]) -> Client:
    return await make_client()


async def error_of(resp: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    body = await resp.json()
    assert resp.status == status, body
    assert set(body) == {"error"}
    assert {"code", "message", "details"} <= set(body["error"])
    return body["error"]  # type: ignore[no-any-return]


async def upload(client: Client, user: str, data: bytes, **kw: Any) -> dict[str, Any]:
    resp = await client.post("/api/documents", data=form(data, **kw), headers=auth(user))
    body: dict[str, Any] = await resp.json()
    assert resp.status == 202, body
    return body


class TestUpload:
    async def test_accepted_document_is_stored_with_its_task_and_the_message_holds_ids_only(
        self, client: Client, kernel: Kernel
    ) -> None:
        user, pdf = new_user(), text_pdf(["one", "two"])
        accepted = await upload(client, user, pdf, filename="../../etc/Report.pdf")
        assert set(accepted) == {"document_id", "task_id"}
        resp = await client.get(f"/api/documents/{accepted['document_id']}", headers=auth(user))
        doc = await resp.json()
        assert resp.status == 200, doc
        assert doc["status"] == "queued"
        assert doc["media_type"] == "application/pdf"
        assert (doc["title"], doc["filename"]) == ("Report.pdf", "Report.pdf")
        assert doc["size_bytes"] == len(pdf)
        assert (doc["pages"], doc["chunks"]) == (None, 0)
        assert doc["task"]["id"] == accepted["task_id"]
        assert doc["task"]["status"] == "queued"
        task = await kernel.store.get_task(UUID(accepted["task_id"]))
        assert task is not None
        assert task["type"] == "document_processing"
        assert task["input"] == {"document_id": accepted["document_id"]}
        stored = await kernel.pool.fetchval(
            "SELECT data FROM document_blobs WHERE key = $1",
            f"documents/{user}/{accepted['document_id']}",
        )
        assert stored == pdf

    async def test_type_is_decided_by_the_bytes_not_the_name_or_the_claim(
        self, client: Client
    ) -> None:
        user = new_user()
        cases = [
            (b"# Title\n\nsome *markdown*\n", "notes.md", None, "text/markdown"),
            ("plain words, ünïcode ✓\n".encode(), "looks.pdf", "application/pdf", "text/plain"),
            (text_pdf(["x"]), "named.txt", "text/plain", "application/pdf"),
        ]
        for data, name, claimed, expected in cases:
            accepted = await upload(client, user, data, filename=name, content_type=claimed)
            resp = await client.get(f"/api/documents/{accepted['document_id']}", headers=auth(user))
            assert (await resp.json())["media_type"] == expected, name

    async def test_binary_that_is_not_a_document_is_415(self, client: Client) -> None:
        png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
        resp = await client.post(
            "/api/documents",
            headers=auth(new_user()),
            data=form(png, "scan.pdf", "application/pdf"),
        )
        err = await error_of(resp, 415)
        assert err["code"] == "unsupported_media_type"
        assert "application/pdf" in err["details"]["supported"]

    async def test_a_body_that_is_not_multipart_is_415(self, client: Client) -> None:
        resp = await client.post("/api/documents", json={"file": "x"}, headers=auth("a"))
        assert (await error_of(resp, 415))["code"] == "unsupported_media_type"

    async def test_over_the_limit_is_413_whether_announced_or_streamed(
        self, make_client: Callable[..., Awaitable[Client]]
    ) -> None:
        client = await make_client(document_max_bytes=10_000)
        # The server answers before it read the body, then drains what the client still
        # sends (aiohttp's lingering close): a client that hangs up ends that at once.
        headers = {**auth("a"), "Connection": "close"}
        big = b"word " * 4000  # 20 000 bytes
        resp = await client.post("/api/documents", data=form(big, "a.txt"), headers=headers)
        err = await error_of(resp, 413)
        assert (err["code"], err["details"]) == ("too_large", {"max_bytes": 10_000})

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
            for _ in range(10):
                yield b"word " * 400

        with aiohttp.MultipartWriter("form-data") as body:
            part = body.append(chunks())
            part.set_content_disposition("form-data", name="file", filename="a.txt")
        resp = await client.post("/api/documents", data=body, headers=headers)
        assert (await error_of(resp, 413))["code"] == "too_large"
        # Exactly at the limit is fine.
        await upload(client, "a", b"x" * 10_000, filename="a.txt")

    async def test_the_apps_one_mib_body_limit_does_not_apply_to_documents(
        self, client: Client
    ) -> None:
        accepted = await upload(client, new_user(), b"many words\n" * 300_000, filename="big.txt")
        assert accepted["document_id"]

    @pytest.mark.parametrize(
        ("body", "status", "code"),
        [
            (
                lambda: aiohttp.FormData({"title": "x"}, default_to_multipart=True),
                422,
                "invalid_request",
            ),
            (lambda: form(b""), 422, "empty_file"),
            (lambda: form(b"text", "a.txt", surprise="1"), 422, "invalid_request"),
            (lambda: form(b"text", "a.txt", title="t" * 301), 422, "invalid_request"),
        ],
        ids=["no-file", "empty-file", "unknown-field", "long-title"],
    )
    async def test_bad_forms_are_4xx_with_the_error_body(
        self, client: Client, body: Callable[[], aiohttp.FormData], status: int, code: str
    ) -> None:
        resp = await client.post("/api/documents", data=body(), headers=auth("a"))
        assert (await error_of(resp, status))["code"] == code

    async def test_a_malformed_multipart_body_is_400(self, client: Client) -> None:
        resp = await client.post(
            "/api/documents",
            data=b"--xyz\r\nno headers and no end",
            headers={**auth("a"), "Content-Type": "multipart/form-data; boundary=xyz"},
        )
        assert (await error_of(resp, 400))["code"] == "bad_multipart"

    @pytest.mark.parametrize(
        ("title", "expected"),
        [(" Q3 notes ", "Q3 notes"), ("", "a.txt"), ("  ", "a.txt"), ("N\x00U\x1fL", "NUL"),
         ("é" * 300, "é" * 300)],
        ids=["trimmed", "empty", "blank", "control-characters", "300-wide-characters"],
    )  # fmt: skip
    async def test_the_title_field_names_the_document(
        self, client: Client, title: str, expected: str
    ) -> None:
        user = new_user()
        accepted = await upload(client, user, b"text", filename="a.txt", title=title)
        resp = await client.get(f"/api/documents/{accepted['document_id']}", headers=auth(user))
        assert (await resp.json())["title"] == expected


def streamed(data: bytes, filename: str = "big.txt") -> aiohttp.MultipartWriter:
    """A form whose file the client sends in chunks of 64 KiB, as it reads them."""

    async def chunks() -> AsyncIterator[bytes]:
        for at in range(0, len(data), 64 * 1024):
            yield data[at : at + 64 * 1024]

    with aiohttp.MultipartWriter("form-data") as body:
        part = body.append(chunks(), {"Content-Type": "text/plain"})
        part.set_content_disposition("form-data", name="file", filename=filename)
    return body


async def large_objects(settings: Settings) -> int:
    conn = await asyncpg.connect(settings.database_url)  # the catalog needs no row security
    try:
        return int(await conn.fetchval("SELECT count(*) FROM pg_largeobject_metadata"))
    finally:
        await conn.close()


class TestStreamedUpload:
    async def test_a_large_document_is_stored_exactly_as_sent(
        self, client: Client, kernel: Kernel, settings: Settings
    ) -> None:
        # Over the spool's memory and over one chunk: via the temporary file and the database's
        # large object, each a chunk at a time.
        data = b"".join(b"line %d of a long text\n" % i for i in range(200_000))  # ~5 MiB
        assert len(data) > 3 * SPOOL_MEMORY_BYTES
        before = await large_objects(settings)
        user = new_user()
        resp = await client.post("/api/documents", data=streamed(data), headers=auth(user))
        accepted = await resp.json()
        assert resp.status == 202, accepted
        stored = await kernel.pool.fetchrow(
            "SELECT b.data, d.size_bytes, d.sha256 FROM document_blobs b JOIN documents d"
            " ON d.blob_key = b.key WHERE d.id = $1",
            UUID(accepted["document_id"]),
        )
        assert stored["data"] == data
        assert (stored["size_bytes"], stored["sha256"]) == (len(data), sha256(data).hexdigest())
        assert await large_objects(settings) == before  # the staging object went with its use

    async def test_an_upload_is_never_whole_in_the_apis_memory(self, client: Client) -> None:
        data = b"0123456789abcdef" * (20 * 1024 * 1024 // 16)  # 20 MiB
        body = streamed(data)
        tracemalloc.start()
        try:
            resp = await client.post("/api/documents", data=body, headers=auth(new_user()))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert resp.status == 202, await resp.text()
        # Client and server together, in this process: a few chunks, not the file (before:
        # the upload's bytes, a copy of them and asyncpg's buffer: 76 MiB).
        assert peak < 8 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"

    async def test_uploads_beyond_the_cap_are_503_with_retry_after_until_one_ends(
        self, make_client: Callable[..., Awaitable[Client]]
    ) -> None:
        client = await make_client(document_max_uploads=1)
        release = asyncio.Event()

        async def slow() -> AsyncIterator[bytes]:
            yield b"the first words, "
            await release.wait()
            yield b"the last words"

        with aiohttp.MultipartWriter("form-data") as body:
            part = body.append(slow())
            part.set_content_disposition("form-data", name="file", filename="a.txt")
        user = new_user()
        first = asyncio.ensure_future(client.post("/api/documents", data=body, headers=auth(user)))
        slots = client.server.app[UPLOAD_SLOTS]

        async def receiving() -> bool:
            return slots.locked()

        await wait_for(receiving, what="the first upload to take the one slot")
        resp = await client.post("/api/documents", data=form(b"x", "b.txt"), headers=auth(user))
        err = await error_of(resp, 503)
        assert err["code"] == "busy"
        assert resp.headers["Retry-After"]
        release.set()
        done = await first
        assert done.status == 202, await done.text()
        await upload(client, user, b"now there is room", filename="c.txt")


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


class TestSearchInput:
    @pytest.mark.parametrize(
        "query", ["?q=x&limit=0", "?q=x&limit=51", f"?q={'x' * 501}", "?q=x&bad=1"]
    )
    async def test_bad_queries_are_422(self, client: Client, query: str) -> None:
        resp = await client.get(f"/api/documents/search{query}", headers=auth("a"))
        assert (await error_of(resp, 422))["code"] == "invalid_query"

    async def test_a_query_of_stop_words_or_symbols_finds_nothing_and_is_no_error(
        self, client: Client
    ) -> None:
        for q in ("", "   ", "the", "!!! & | :*", '"unclosed', "nul\x00byte"):
            resp = await client.get(
                "/api/documents/search", params={"q": q}, headers=auth(new_user())
            )
            body = await resp.json()
            assert resp.status == 200, body
            assert body["results"] == []
