"""Webhook endpoints through the API: created with a secret shown once, listed without it, a
user's own; a task's end and a batch's completion reach a real receiver, signed so that the
Standard Webhooks reference library verifies them; private targets refused unless allowed."""

from typing import Any

import asyncpg
import pytest

from taskfleet.data.retention import cleanup
from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.runtime.kernel import Kernel
from tests.integration.api_client import auth, new_user, submit
from tests.integration.conftest import ConsumerFactory
from tests.integration.webhook_helpers import (
    add_webhook,
    cancelled_task,
    deliveries,
    hooks_api,
    wait_delivery,
)
from tests.webhook_receiver import Receiver


async def test_an_endpoint_is_the_users_own_and_its_secret_is_shown_once(kernel: Kernel) -> None:
    user, other = new_user(), new_user()
    async with hooks_api(kernel) as client:
        created = await add_webhook(client, user, "http://127.0.0.1:9/hook", "task.failed")
        assert created["secret"].startswith("whsec_")
        assert created["events"] == ["task.failed"]
        listed = await (await client.get("/api/webhooks", headers=auth(user))).json()
        assert [w["id"] for w in listed["webhooks"]] == [created["id"]]
        assert "secret" not in listed["webhooks"][0]
        # Sealed at rest: the row holds no secret in the clear.
        row = await kernel.pool.fetchval(
            "SELECT secret::text FROM webhook_endpoints WHERE id = $1", created["id"]
        )
        assert created["secret"] not in row
        assert '"$sealed"' in row
        # Another user sees nothing of it; a service token acts for the owner.
        theirs = await (await client.get("/api/webhooks", headers=auth(other))).json()
        assert theirs["webhooks"] == []
        path = f"/api/webhooks/{created['id']}"
        mine = await client.get(path, headers=auth(user))
        assert (await mine.json())["url"] == "http://127.0.0.1:9/hook"
        assert "secret" not in await mine.json()
        assert (await client.get(path, headers=auth(other))).status == 404
        assert (await client.get(f"{path}/deliveries", headers=auth(other))).status == 404
        assert (await client.delete(path, headers=auth(other))).status == 404
        service = await client.get(f"/api/webhooks?user_id={user}", headers=auth("b", "service"))
        assert len((await service.json())["webhooks"]) == 1
        # A service token creates one for a user; a user token may not for another user.
        body = {"url": "http://127.0.0.1:9/other", "user_id": other}
        made = await client.post("/api/webhooks", json=body, headers=auth("b", "service"))
        assert made.status == 201
        assert (await made.json())["user_id"] == other
        refused = await client.post("/api/webhooks", json=body, headers=auth(user))
        assert refused.status == 403
        as_service = await client.get(path, headers=auth("b", "service"))
        assert (await as_service.json())["user_id"] == user
        assert (await client.delete(path, headers=auth(user))).status == 204
        assert (await client.delete(path, headers=auth(user))).status == 404


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:192.168.0.1]/hook",
        "ftp://example.com/hook",
        "http://user:pw@example.com/hook",
    ],
)
async def test_a_private_or_loopback_target_is_refused_unless_allowed(
    kernel: Kernel, url: str
) -> None:
    user = new_user()
    async with hooks_api(kernel, WEBHOOK_ALLOWED_HOSTS="") as client:
        resp = await client.post("/api/webhooks", json={"url": url}, headers=auth(user))
        assert resp.status == 422, url
        if url.startswith("http://") and "@" not in url:
            assert (await resp.json())["error"]["code"] == "webhook_url_refused"
    allowed = "127.0.0.0/8,localhost,10.0.0.0/8,169.254.169.254,::1,192.168.0.0/16"
    async with hooks_api(kernel, WEBHOOK_ALLOWED_HOSTS=allowed) as client:
        resp = await client.post("/api/webhooks", json={"url": url}, headers=auth(user))
        assert resp.status == (201 if url.startswith("http://") and "@" not in url else 422)


async def test_a_completed_task_is_delivered_signed_as_standard_webhooks_says(
    kernel: Kernel, consume: ConsumerFactory, receiver: Receiver
) -> None:
    async def handler(ctx: TaskContext[Any]) -> TaskResult:
        return TaskResult({"answer": 42})

    await consume(handler)
    user = new_user()
    async with hooks_api(kernel) as client:
        hook = await add_webhook(client, user, receiver.url)
        task_id = (await submit(client, user))["task_id"]
        [got] = await receiver.wait_for(1)
        event = got.verified(hook["secret"])  # raises unless the signature verifies
        assert event["type"] == "task.completed"
        assert event["data"]["task_id"] == task_id
        assert event["data"]["status"] == "completed"
        assert got.headers["Content-Type"] == "application/json"
        delivery = await wait_delivery(client, user, hook["id"], "delivered")
        assert delivery["id"] == got.webhook_id
        assert (delivery["attempts"], delivery["response_status"]) == (1, 200)
        assert delivery["payload"] == event
        # Another secret does not verify it.
        other = await add_webhook(client, user, receiver.url, "task.failed")
        with pytest.raises(Exception, match="signature"):
            got.verified(other["secret"])


async def test_a_rotated_secret_signs_beside_the_old_one_for_a_while_or_alone(
    kernel: Kernel, receiver: Receiver
) -> None:
    user = new_user()
    async with hooks_api(kernel) as client:
        hook = await add_webhook(client, user, receiver.url, "task.cancelled")
        resp = await client.post(f"/api/webhooks/{hook['id']}/rotate", headers=auth(user))
        rotated = await resp.json()
        assert resp.status == 200, rotated
        assert resp.headers["Cache-Control"] == "no-store"
        assert rotated["secret"].startswith("whsec_")
        assert rotated["secret"] != hook["secret"]
        assert rotated["previous_valid_until"] is not None
        await cancelled_task(client, user)
        [got] = await receiver.wait_for(1)
        # Two signatures: a receiver still holding the old secret verifies it, as does one
        # that moved to the new one.
        assert len(got.headers["webhook-signature"].split(" ")) == 2
        assert got.verified(rotated["secret"])["type"] == "task.cancelled"
        assert got.verified(hook["secret"])["type"] == "task.cancelled"

        # A leaked secret is rotated out at once: only the newest signs.
        path = f"/api/webhooks/{hook['id']}/rotate?previous_for_s=0"
        leaked = await (await client.post(path, headers=auth(user))).json()
        assert leaked["previous_valid_until"] is None
        await cancelled_task(client, user)
        [_, second] = await receiver.wait_for(2)
        assert second.verified(leaked["secret"])["type"] == "task.cancelled"
        for old in (hook["secret"], rotated["secret"]):
            with pytest.raises(Exception, match="signature"):
                second.verified(old)
        bad = await client.post(path.replace("=0", "=-1"), headers=auth(user))
        assert bad.status == 422


async def test_only_the_events_an_endpoint_takes_reach_it_and_a_batch_completes(
    kernel: Kernel, receiver: Receiver
) -> None:
    user = new_user()
    async with hooks_api(kernel) as client:
        hook = await add_webhook(client, user, receiver.url, "batch.completed")
        resp = await client.post(
            "/api/batches",
            json={"tasks": [{"chat_id": "b", "content": "one"}, {"chat_id": "b", "content": "2"}]},
            headers=auth(user),
        )
        batch = await resp.json()
        assert resp.status == 202, batch
        cancel = await client.post(f"/api/batches/{batch['batch_id']}/cancel", headers=auth(user))
        assert cancel.status == 202
        [got] = await receiver.wait_for(1)
        event = got.verified(hook["secret"])
        assert event["type"] == "batch.completed"
        assert event["data"]["batch_id"] == batch["batch_id"]
        assert event["data"]["counts"] == {"cancelled": 2}
        await wait_delivery(client, user, hook["id"], "delivered")
        # The members' own ends (task.cancelled) were not for this endpoint.
        assert [d["event"] for d in await deliveries(client, user, hook["id"])] == [
            "batch.completed"
        ]
        assert len(receiver.got) == 1


async def test_a_user_has_at_most_twenty_endpoints(kernel: Kernel) -> None:
    user = new_user()
    async with hooks_api(kernel) as client:
        for n in range(20):
            await add_webhook(client, user, f"http://127.0.0.1:9/hook{n}")
        resp = await client.post(
            "/api/webhooks", json={"url": "http://127.0.0.1:9/more"}, headers=auth(user)
        )
        assert resp.status == 409
        assert (await resp.json())["error"]["code"] == "too_many_webhooks"


async def test_retention_deletes_a_tasks_deliveries_with_it(
    kernel: Kernel, receiver: Receiver
) -> None:
    user = new_user()
    async with hooks_api(kernel) as client:
        hook = await add_webhook(client, user, receiver.url, "task.cancelled")
        task_id = await cancelled_task(client, user)
        await wait_delivery(client, user, hook["id"], "delivered")
        await kernel.pool.execute(
            "UPDATE tasks SET completed_at = now() - interval '2 days' WHERE id = $1", task_id
        )
        conn = await asyncpg.connect(kernel.settings.database_url)
        try:
            await cleanup(conn, 86_400)
        finally:
            await conn.close()
        assert await deliveries(client, user, hook["id"]) == []
