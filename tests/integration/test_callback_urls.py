"""A submission's `callback_url` through the API (docs/integrating.md#a-callback-per-task): the
task's end reaches a real receiver once, signed with the secret the 202 answered; a URL the
fleet will not send to is refused before any task exists; the callback is not one of the
user's endpoints (not listed, not counted); a repeated Idempotency-Key gives the same task and
the same callback, never a second; every submission route and the typed client take it."""

from typing import Any
from uuid import UUID

import pytest

from taskfleet.client import Taskfleet
from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.runtime.kernel import Kernel
from tests.camera_images import frame
from tests.integration.api_client import auth, new_user, submit, token
from tests.integration.conftest import ConsumerFactory
from tests.integration.webhook_helpers import (
    Client,
    add_webhook,
    deliveries,
    hooks_api,
    wait_delivery,
)
from tests.webhook_receiver import Receiver


async def _chat(
    client: Client, user: str, callback_url: str, *, key: str | None = None, status: int = 202
) -> dict[str, Any]:
    headers = auth(user) | ({"Idempotency-Key": key} if key else {})
    body = {"chat_id": "cb", "content": "hello", "callback_url": callback_url}
    resp = await client.post("/api/chat/stream", json=body, headers=headers)
    answer: dict[str, Any] = await resp.json()
    assert resp.status == status, answer
    if status == 202:
        assert resp.headers["Cache-Control"] == "no-store"  # it holds a secret
    return answer


async def _callbacks(kernel: Kernel, user: str) -> list[dict[str, Any]]:
    rows = await kernel.pool.fetch(
        "SELECT id, task_id, batch_id, events FROM webhook_endpoints"
        " WHERE user_id = $1 AND (task_id IS NOT NULL OR batch_id IS NOT NULL)",
        user,
    )
    return [dict(r) for r in rows]


async def wait_for_task(receiver: Receiver, task_id: str) -> None:
    """Until `receiver` got the end of `task_id`."""
    for n in range(1, 10):
        got = await receiver.wait_for(n)
        if got[-1].event["data"]["task_id"] == task_id:
            return
    raise AssertionError(f"no event for {task_id}")


async def test_a_chat_task_s_end_reaches_its_callback_once_signed_with_its_secret(
    kernel: Kernel, consume: ConsumerFactory, receiver: Receiver
) -> None:
    async def handler(ctx: TaskContext[Any]) -> TaskResult:
        return TaskResult({"answer": 42})

    await consume(handler)
    others = Receiver()  # the user's own endpoint, which gets every task's end
    await others.start()
    user = new_user()
    try:
        async with hooks_api(kernel) as client:
            own = await add_webhook(client, user, others.url, "task.completed")
            accepted = await _chat(client, user, receiver.url)
            assert accepted["callback_secret"].startswith("whsec_")
            [got] = await receiver.wait_for(1)
            event = got.verified(accepted["callback_secret"])  # raises unless it verifies
            assert event["type"] == "task.completed"
            assert event["data"]["task_id"] == accepted["task_id"]
            assert event["data"]["status"] == "completed"
            with pytest.raises(Exception, match="signature"):  # not the endpoint's secret
                got.verified(own["secret"])
            log = await wait_delivery(client, user, accepted["callback_id"], "delivered")
            assert log["id"] == got.webhook_id
            assert (log["attempts"], log["event"]) == (1, "task.completed")

            # Another task of the user's ends: its own endpoint gets it, the callback does not.
            second = await submit(client, user)
            await wait_for_task(others, second["task_id"])
            assert len(await deliveries(client, user, accepted["callback_id"])) == 1
            assert len(receiver.got) == 1

            # Not one of the user's endpoints: not listed, but readable by its id.
            listed = await (await client.get("/api/webhooks", headers=auth(user))).json()
            assert [h["id"] for h in listed["webhooks"]] == [own["id"]]
            assert listed["webhooks"][0]["task_id"] is None
            resp = await client.get(f"/api/webhooks/{accepted['callback_id']}", headers=auth(user))
            hook = await resp.json()
            assert resp.status == 200, hook
            assert (hook["url"], hook["task_id"]) == (receiver.url, accepted["task_id"])
            assert hook["events"] == ["task.completed", "task.failed", "task.cancelled"]
    finally:
        await others.stop()


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://127.0.0.1:9/hook", "callback_url_refused"),  # loopback, not allowed
        ("http://10.1.2.3/hook", "callback_url_refused"),  # private
        ("ftp://example.com/hook", "invalid_request"),  # not http(s)
        ("https://example.com/" + "a" * 2000, "invalid_request"),  # too long
    ],
)
async def test_a_refused_callback_url_is_422_and_no_task_is_made(
    kernel: Kernel, url: str, code: str
) -> None:
    user = new_user()
    async with hooks_api(kernel, WEBHOOK_ALLOWED_HOSTS="") as client:
        refused = await _chat(client, user, url, status=422)
        assert refused["error"]["code"] == code
        resp = await client.post(
            "/api/batches",
            json={"tasks": [{"chat_id": "cb", "content": "x"}], "callback_url": url},
            headers=auth(user),
        )
        assert resp.status == 422
        assert (await resp.json())["error"]["code"] == code
        resp = await client.post(
            "/api/cameras/cam/frames", params={"callback_url": url}, data=frame(),
            headers=auth(user) | {"Content-Type": "image/jpeg"},
        )  # fmt: skip
        assert resp.status == 422
        tasks = await (await client.get("/api/tasks", headers=auth(user))).json()
    assert tasks["tasks"] == []
    assert await _callbacks(kernel, user) == []


async def test_a_repeated_key_gives_the_same_task_and_callback_and_another_url_409(
    kernel: Kernel, receiver: Receiver
) -> None:
    user = new_user()
    async with hooks_api(kernel) as client:
        first = await _chat(client, user, receiver.url, key="k-1")
        again = await _chat(client, user, receiver.url, key="k-1")
        # The first answer may have been lost: the repeat answers the callback again (and
        # the task's status as it is now).
        assert again | {"status": None} == first | {"status": None}
        [callback] = await _callbacks(kernel, user)
        assert (callback["id"], callback["task_id"]) == (
            UUID(first["callback_id"]),
            UUID(first["task_id"]),
        )
        other = await _chat(client, user, receiver.url + "/other", key="k-1", status=409)
        assert other["error"]["code"] == "idempotency_conflict"
        bare = await client.post(
            "/api/chat/stream", json={"chat_id": "cb", "content": "hello"},
            headers=auth(user) | {"Idempotency-Key": "k-1"},
        )  # fmt: skip
        assert bare.status == 409
        assert len(await _callbacks(kernel, user)) == 1


async def test_callbacks_are_not_counted_against_the_endpoint_limit(
    kernel: Kernel, receiver: Receiver
) -> None:
    user = new_user()
    async with hooks_api(kernel) as client:
        for n in range(19):
            await add_webhook(client, user, f"http://127.0.0.1:9/hook{n}")
        for _ in range(2):
            await _chat(client, user, receiver.url)
        await add_webhook(client, user, "http://127.0.0.1:9/twentieth")
        resp = await client.post(
            "/api/webhooks", json={"url": "http://127.0.0.1:9/more"}, headers=auth(user)
        )
        assert resp.status == 409
        await _chat(client, user, receiver.url)  # a callback still goes
    assert len(await _callbacks(kernel, user)) == 3


async def test_documents_frames_batches_take_one_through_the_client_and_it_goes_with_its_task(
    kernel: Kernel, receiver: Receiver
) -> None:
    user = new_user()
    async with (
        hooks_api(kernel) as client,
        Taskfleet(str(client.make_url("")), token(user)) as tf,
    ):
        doc = await tf.upload_document(b"# notes", filename="a.md", callback_url=receiver.url)
        shot = await tf.submit_frame("cam", frame(), callback_url=receiver.url)
        batch = await tf.submit_batch([("cb", "one"), ("cb", "two")], callback_url=receiver.url)
        chat = await tf.submit_chat("cb", "hi", callback_url=receiver.url)
        secrets = {doc.task_id: doc.callback_secret, shot.task_id: shot.callback_secret}
        for task_id in secrets:
            await tf.cancel(task_id)
        await tf.cancel_batch(batch.batch_id)
        got = await receiver.wait_for(3)
        by_type: dict[str, list[Any]] = {}
        for r in got:
            by_type.setdefault(r.event["type"], []).append(r)
        # Each task's own end, signed with its own secret; the batch's completion alone (its
        # members' ends are no business of its callback).
        assert sorted(by_type) == ["batch.completed", "task.cancelled"]
        for r in by_type["task.cancelled"]:
            task_id = UUID(r.event["data"]["task_id"])
            assert r.verified(str(secrets[task_id]))["type"] == "task.cancelled"
        [done] = by_type["batch.completed"]
        assert done.verified(str(batch.callback_secret))["data"]["batch_id"] == str(batch.batch_id)

        # Deleting a task deletes its callback (and its log) with it.
        await tf.cancel(chat.task_id)
        await tf.delete(chat.task_id)
        resp = await client.get(f"/api/webhooks/{chat.callback_id}", headers=auth(user))
        assert resp.status == 404
    remaining = await _callbacks(kernel, user)
    assert {r["id"] for r in remaining} == {doc.callback_id, shot.callback_id, batch.callback_id}
    assert [r["events"] for r in remaining if r["batch_id"]] == [["batch.completed"]]
