"""The client sends a refused submission again after the Retry-After the API answered (503
`busy`: this replica receives its DOCUMENT_MAX_UPLOADS already), and it then goes through."""

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from fleet_api.app import create_app
from fleet_api.documents import UPLOAD_SLOTS
from fleet_api.settings import ApiSettings
from taskfleet.client import Taskfleet
from taskfleet.runtime.kernel import Kernel
from tests.conftest import wait_for
from tests.integration.api_client import auth, new_user, token
from tests.integration.documents_api.helpers import Client

ANSWERS = web.AppKey("answers", list[tuple[float, int, str | None]])


@pytest.fixture
async def client(kernel: Kernel) -> AsyncIterator[Client]:
    """An API with one upload slot, whose answers to POSTs are recorded (time, status,
    Retry-After) in `client.app[ANSWERS]`."""

    async def no_publish(queue: str, body: bytes, message_id: str, headers: dict[str, Any]) -> None:
        """Nothing consumes here."""

    one_slot = dataclasses.replace(
        kernel, settings=ApiSettings.of(kernel.settings, document_max_uploads=1)
    )
    app = create_app(one_slot, publish=no_publish)
    app[ANSWERS] = []

    async def record(request: web.Request, response: web.StreamResponse) -> None:
        if request.method == "POST":
            stamp = (time.monotonic(), response.status, response.headers.get("Retry-After"))
            app[ANSWERS].append(stamp)

    app.on_response_prepare.append(record)
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_a_busy_upload_is_sent_again_after_retry_after(client: Client) -> None:
    assert client.app is not None
    answers = client.app[ANSWERS]
    release = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"the first words, "
        await release.wait()
        yield b"the last words"

    with aiohttp.MultipartWriter("form-data") as body:
        part = body.append(slow())
        part.set_content_disposition("form-data", name="file", filename="a.txt")
    user = new_user()
    holder = asyncio.ensure_future(client.post("/api/documents", data=body, headers=auth(user)))
    slots = client.app[UPLOAD_SLOTS]

    async def held() -> bool:
        return slots.locked()

    await wait_for(held, what="the first upload to take the one slot")
    async with Taskfleet(str(client.make_url("")), token(user)) as tf:
        upload = asyncio.ensure_future(tf.upload_document(b"sent again", filename="b.txt"))

        async def refused() -> bool:
            return any(status == 503 for _, status, _ in answers)

        await wait_for(refused, what="the client's upload to be refused as busy")
        release.set()
        assert (await holder).status == 202
        accepted = await upload
    refused_at, _, retry_after = next(a for a in answers if a[1] == 503)
    accepted_at = answers[-1][0]
    assert answers[-1][1] == 202
    assert retry_after is not None
    assert accepted_at - refused_at >= float(retry_after) - 0.05  # it waited what it was told
    docs = await (await client.get("/api/documents", headers=auth(user))).json()
    assert str(accepted.document_id) in {d["id"] for d in docs["documents"]}
