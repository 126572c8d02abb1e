"""A batch's `then` (a chord) through the API: the task waits, `scheduled` with no time, until
the batch's last member ends, then runs with the members' outcomes read by reference (the chat
worker's handler and the scripted model, which echoes what it was given); cancelling the
batch cancels it; a batch over a quota keeps nothing of either."""

import asyncio
from uuid import UUID

from taskfleet.runtime.kernel import Kernel
from tests.integration.agent_helpers import chat_handler
from tests.integration.api_client import api, auth, new_user
from tests.integration.conftest import ConsumerFactory, wait_status
from tests.integration.test_batches import batch_of, post_batch

THEN = {"chat_id": "summary", "content": "Summarise"}


async def test_then_runs_after_the_members_with_their_replies(
    kernel: Kernel, consume: ConsumerFactory
) -> None:
    user = new_user()
    async with api(kernel) as client:
        batch = await post_batch(client, user, ["alpha", "beta"], then=THEN)
        then_id = UUID(batch["then_task_id"])
        waiting = await kernel.store.get_task(then_id)
        assert waiting is not None
        assert waiting["status"] == "scheduled"
        assert (await batch_of(client, user, batch["batch_id"]))["then_task_id"] == str(then_id)
        await consume(chat_handler(kernel))
        done = await wait_status(kernel, then_id, "completed", timeout_s=30)
        members = [await kernel.store.get_task(UUID(t)) for t in batch["task_ids"]]
    assert all(m is not None and m["status"] == "completed" for m in members)
    # It ran after every member ended, and read their replies, in their order.
    assert all(m is not None and m["completed_at"] <= done["started_at"] for m in members)
    reply = done["output"]["reply"]
    assert reply.startswith("You said: Summarise")
    assert reply.index("1. You said: alpha") < reply.index("2. You said: beta")
    assert done["attempts"] == 1


async def test_cancelling_the_batch_cancels_its_then(kernel: Kernel) -> None:
    user = new_user()
    async with api(kernel) as client:
        batch = await post_batch(client, user, ["one"], then=THEN)
        resp = await client.post(f"/api/batches/{batch['batch_id']}/cancel", headers=auth(user))
        assert resp.status == 202
        then = await wait_status(kernel, UUID(batch["then_task_id"]), "cancelled")
    assert then["attempts"] == 0


async def test_a_then_too_long_or_malformed_is_refused_with_nothing_kept(kernel: Kernel) -> None:
    user = new_user()
    async with api(kernel) as client:
        for then in ({"chat_id": "x", "content": "y" * 40_000}, {"chat_id": "x"},
                     {"chat_id": "x", "content": "y", "extra": 1}):  # fmt: skip
            body = {"tasks": [{"chat_id": "b", "content": "a"}], "then": then}
            resp = await client.post("/api/batches", json=body, headers=auth(user))
            assert resp.status in (400, 422), then
            assert "error" in await resp.json()
    assert await kernel.pool.fetchval("SELECT count(*) FROM tasks WHERE user_id = $1", user) == 0


async def test_the_same_key_gives_the_same_batch_and_another_request_409(kernel: Kernel) -> None:
    user = new_user()
    body = {"tasks": [{"chat_id": "b", "content": "a"}, {"chat_id": "b", "content": "b"}],
            "then": THEN, "delay_s": 60}  # fmt: skip
    keyed = {**auth(user), "Idempotency-Key": f"k-{user}"}
    async with api(kernel) as client:
        first = await client.post("/api/batches", json=body, headers=keyed)
        made = await first.json()
        assert first.status == 202, made
        # Sent again (twice at once, as a retrying client may): the same batch, nothing more.
        again = [await client.post("/api/batches", json=body, headers=keyed) for _ in range(2)]
        for resp in again:
            assert resp.status == 202
            assert await resp.json() == made
            assert resp.headers["Location"] == f"/api/batches/{made['batch_id']}"
        other = await client.post("/api/batches", json={**body, "delay_s": 30}, headers=keyed)
        assert other.status == 409
        assert (await other.json())["error"]["code"] == "idempotency_conflict"
        await client.post(f"/api/batches/{made['batch_id']}/cancel", headers=auth(user))
    count = await kernel.pool.fetchval("SELECT count(*) FROM batches WHERE user_id = $1", user)
    assert count == 1
    assert made["status"] == "scheduled"
    assert len(made["message_ids"]) == 2


async def test_two_requests_racing_with_one_key_make_one_batch(kernel: Kernel) -> None:
    user = new_user()
    body = {"tasks": [{"chat_id": "b", "content": "x"}], "delay_s": 60}
    keyed = {**auth(user), "Idempotency-Key": "race"}
    async with api(kernel) as client:
        answers = await asyncio.gather(
            *(client.post("/api/batches", json=body, headers=keyed) for _ in range(4))
        )
        made = [await a.json() for a in answers]
        assert {a.status for a in answers} == {202}
        assert len({m["batch_id"] for m in made}) == 1
        await client.post(f"/api/batches/{made[0]['batch_id']}/cancel", headers=auth(user))
    count = await kernel.pool.fetchval("SELECT count(*) FROM tasks WHERE user_id = $1", user)
    assert count == 1
