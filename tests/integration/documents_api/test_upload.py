"""Uploading a document (DESIGN.md §7): accepted and stored with its task, the message holding ids
only; typed by its bytes, not its name or claim; 415 for what is not a document or not
multipart, 413 over the limit, 400 or 4xx with the error body for bad forms; the app's 1 MiB
body limit does not apply; the title field names the document."""

from collections.abc import AsyncIterator, Awaitable, Callable
from unittest.mock import ANY
from uuid import UUID

import aiohttp
import pytest

from taskfleet.runtime.kernel import Kernel
from tests.doc_fixtures import form
from tests.integration.api_client import auth, new_user
from tests.integration.documents_api.helpers import Client, error_of, upload
from tests.pdfs import text_pdf

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


class TestUpload:
    async def test_accepted_document_is_stored_with_its_task_and_the_message_holds_ids_only(
        self, client: Client, kernel: Kernel
    ) -> None:
        user, pdf = new_user(), text_pdf(["one", "two"])
        accepted = await upload(client, user, pdf, filename="../../etc/Report.pdf")
        assert accepted == {"document_id": ANY, "task_id": ANY, "status": "queued"}
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
