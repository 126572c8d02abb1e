"""Every route that creates a task takes an Idempotency-Key: the same key (per user) gives the
same task, never a second one; the same key with another request is 409; every 202 names its
task in Location; every submission carries its metadata, bounded."""

from typing import Any
from uuid import uuid4

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient

from taskfleet.runtime.kernel import Kernel
from tests.camera_images import frame
from tests.doc_fixtures import form
from tests.integration.api_client import api, auth, new_user

Client = TestClient[web.Request, web.Application]


def keyed(user: str, key: str) -> dict[str, str]:
    return auth(user) | {"Idempotency-Key": key}


async def accepted(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    body: dict[str, Any] = await resp.json()
    assert resp.status == 202, body
    assert resp.headers["Location"] == f"/api/tasks/{body['task_id']}"
    return body


async def refused(resp: aiohttp.ClientResponse, status: int, code: str) -> dict[str, Any]:
    body: dict[str, Any] = await resp.json()
    assert resp.status == status, body
    assert body["error"]["code"] == code, body
    return body["error"]  # type: ignore[no-any-return]


async def count_tasks(kernel: Kernel, user: str) -> int:
    return int(await kernel.pool.fetchval("SELECT count(*) FROM tasks WHERE user_id = $1", user))


class TestChat:
    async def test_the_same_key_gives_the_same_task_and_another_body_is_409(
        self, kernel: Kernel
    ) -> None:
        user, key = new_user(), f"k-{uuid4().hex}"
        body = {"chat_id": "c1", "content": "hello", "metadata": {"order": "o-1"}}
        async with api(kernel) as client:
            first = await accepted(
                await client.post("/api/chat/stream", json=body, headers=keyed(user, key))
            )
            again = await accepted(
                await client.post("/api/chat/stream", json=body, headers=keyed(user, key))
            )
            assert again["task_id"] == first["task_id"]
            assert again["message_id"] == first["message_id"]
            other = body | {"content": "something else"}
            resp = await client.post("/api/chat/stream", json=other, headers=keyed(user, key))
            error = await refused(resp, 409, "idempotency_conflict")
            assert "Idempotency-Key" in error["message"]
            # The key is per user: another user's same key is another task.
            someone = new_user()
            theirs = await accepted(
                await client.post("/api/chat/stream", json=body, headers=keyed(someone, key))
            )
            assert theirs["task_id"] != first["task_id"]
        assert await count_tasks(kernel, user) == 1

    async def test_the_body_key_and_the_header_are_one_mechanism(self, kernel: Kernel) -> None:
        user, key = new_user(), f"k-{uuid4().hex}"
        body = {"chat_id": "c1", "content": "hello"}
        async with api(kernel) as client:
            first = await accepted(
                await client.post(
                    "/api/chat/stream", json=body | {"idempotency_key": key}, headers=auth(user)
                )
            )
            by_header = await accepted(
                await client.post("/api/chat/stream", json=body, headers=keyed(user, key))
            )
            assert by_header["task_id"] == first["task_id"]
            both = body | {"idempotency_key": "another"}
            resp = await client.post("/api/chat/stream", json=both, headers=keyed(user, key))
            await refused(resp, 409, "idempotency_conflict")
            for bad in ("a\tb", "x" * 201, "caf\u00e9"):
                headers = auth(user) | {"Idempotency-Key": bad}
                resp = await client.post("/api/chat/stream", json=body, headers=headers)
                await refused(resp, 422, "invalid_idempotency_key")
        assert await count_tasks(kernel, user) == 1

    async def test_metadata_is_stored_returned_and_bounded(self, kernel: Kernel) -> None:
        user = new_user()
        async with api(kernel) as client:
            body = {"chat_id": "c1", "content": "hi", "metadata": {"order": "o-1", "x": "y"}}
            task_id = (
                await accepted(await client.post("/api/chat/stream", json=body, headers=auth(user)))
            )["task_id"]
            task = await (await client.get(f"/api/tasks/{task_id}", headers=auth(user))).json()
            assert task["metadata"] == {"order": "o-1", "x": "y"}
            plain = {"chat_id": "c1", "content": "hi"}
            task_id = (
                await accepted(
                    await client.post("/api/chat/stream", json=plain, headers=auth(user))
                )
            )["task_id"]
            task = await (await client.get(f"/api/tasks/{task_id}", headers=auth(user))).json()
            assert task["metadata"] == {}
            too_many = {f"k{i}": "v" for i in range(17)}
            too_long = {"k": "v" * 201}
            for metadata in (too_many, too_long, {"bad key": "v"}, {"n": 1}, ["a"]):
                resp = await client.post(
                    "/api/chat/stream", json=plain | {"metadata": metadata}, headers=auth(user)
                )
                error = await refused(resp, 422, "invalid_request")
                assert error["details"][0]["loc"][0] == "metadata", error
        assert await count_tasks(kernel, user) == 2


class TestDocumentsAndFrames:
    async def test_an_upload_sent_twice_with_its_key_is_one_document(self, kernel: Kernel) -> None:
        user, key = new_user(), f"k-{uuid4().hex}"
        text = b"the same document, sent twice"
        async with api(kernel) as client:
            first = await accepted(
                await client.post(
                    "/api/documents",
                    data=form(text, "a.txt", metadata='{"ticket": "T-7"}'),
                    headers=keyed(user, key),
                )
            )
            again = await accepted(
                await client.post(
                    "/api/documents",
                    data=form(text, "a.txt", metadata='{"ticket": "T-7"}'),
                    headers=keyed(user, key),
                )
            )
            assert again == first
            resp = await client.post(
                "/api/documents", data=form(b"another text", "a.txt"), headers=keyed(user, key)
            )
            await refused(resp, 409, "idempotency_conflict")
            task = await (
                await client.get(f"/api/tasks/{first['task_id']}", headers=auth(user))
            ).json()
            assert task["metadata"] == {"ticket": "T-7"}
            for bad in ("not json", '{"a": 1}', "[]"):
                resp = await client.post(
                    "/api/documents", data=form(text, "a.txt", metadata=bad), headers=auth(user)
                )
                await refused(resp, 422, "invalid_metadata")
        documents = await kernel.pool.fetchval(
            "SELECT count(*) FROM documents WHERE user_id = $1", user
        )
        assert documents == 1
        assert await count_tasks(kernel, user) == 1

    async def test_a_frame_sent_twice_with_its_key_is_one_frame(self, kernel: Kernel) -> None:
        user, key = new_user(), f"k-{uuid4().hex}"
        image = frame()
        url = "/api/cameras/cam-1/frames?metadata.site=north"
        headers = keyed(user, key) | {"Content-Type": "image/jpeg"}
        async with api(kernel) as client:
            first = await accepted(await client.post(url, data=image, headers=headers))
            again = await accepted(await client.post(url, data=image, headers=headers))
            assert again == first
            resp = await client.post(url, data=frame(10), headers=headers)
            await refused(resp, 409, "idempotency_conflict")
            task = await (
                await client.get(f"/api/tasks/{first['task_id']}", headers=auth(user))
            ).json()
            assert task["metadata"] == {"site": "north"}
            resp = await client.post(
                "/api/cameras/cam-1/frames?metadata.bad%20key=x", data=image, headers=auth(user)
            )
            await refused(resp, 422, "invalid_metadata")
        frames = await kernel.pool.fetchval(
            "SELECT count(*) FROM camera_frames WHERE user_id = $1", user
        )
        assert frames == 1


async def test_cancel_and_retry_answer_202_with_location(kernel: Kernel) -> None:
    user = new_user()
    async with api(kernel) as client:
        body = {"chat_id": "c1", "content": "hi"}
        task_id = (
            await accepted(await client.post("/api/chat/stream", json=body, headers=auth(user)))
        )["task_id"]
        for action in ("cancel", "retry"):
            resp = await client.post(f"/api/tasks/{task_id}/{action}", headers=auth(user))
            assert resp.status == 202, await resp.text()
            assert resp.headers["Location"] == f"/api/tasks/{task_id}"
