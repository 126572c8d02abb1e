"""A document is streamed to storage: a large one is stored exactly as sent, never whole in the
API's memory, and uploads beyond the cap are 503 with Retry-After until one ends."""

import asyncio
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from hashlib import sha256
from uuid import UUID

import aiohttp
import asyncpg
import pytest

from fleet_api.documents import UPLOAD_SLOTS
from fleet_api.spool import SPOOL_MEMORY_BYTES
from taskfleet.core.settings import Settings
from taskfleet.runtime.kernel import Kernel
from tests.conftest import wait_for
from tests.doc_fixtures import form
from tests.integration.api_client import auth, new_user
from tests.integration.documents_api.helpers import Client, error_of, upload

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


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
        slots = client.app[UPLOAD_SLOTS]

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
