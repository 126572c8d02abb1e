"""Listing tasks by what links them (`?chat_id=`, `?parent_id=`, `?batch_id=`,
`?schedule_id=`), and every user's history for an admin (GET /api/admin/tasks, audited)."""

from typing import Any
from uuid import UUID, uuid4

from taskfleet.core.constants import TaskType
from taskfleet.runtime.kernel import Kernel
from taskfleet.store.records import NewTask
from tests.integration.api_client import api, auth, new_user, submit

ADMIN = auth("ops", "admin")


async def ids(client: Any, path: str, headers: dict[str, str]) -> set[str]:
    resp = await client.get(path, headers=headers)
    body = await resp.json()
    assert resp.status == 200, body
    return {t["id"] for t in body["tasks"]}


async def test_a_user_lists_a_chat_a_batch_and_a_tasks_children(kernel: Kernel) -> None:
    user = new_user()
    async with api(kernel) as client:
        in_a = (await submit(client, user, chat="a"))["task_id"]
        in_b = (await submit(client, user, chat="b"))["task_id"]
        two = {"tasks": [{"chat_id": "c", "content": "x"}] * 2}
        resp = await client.post("/api/batches", headers=auth(user), json=two)
        batch = await resp.json()
        child = NewTask(type=TaskType.TOOL, user_id=user, max_attempts=1, parent_id=UUID(in_a),
                        input={"call_id": "c1", "name": "calculator", "arguments": {}})  # fmt: skip
        async with kernel.pool.acquire() as conn, conn.transaction():
            await kernel.store.insert_task(conn, child, relay_grace_s=60)
        me = auth(user)
        assert await ids(client, "/api/tasks?chat_id=a", me) == {in_a}
        assert await ids(client, "/api/tasks?chat_id=b&status=queued", me) == {in_b}
        assert await ids(client, f"/api/tasks?batch_id={batch['batch_id']}", me) == set(
            batch["task_ids"])  # fmt: skip
        assert await ids(client, f"/api/tasks?parent_id={in_a}", me) == {str(child.task_id)}
        assert await ids(client, f"/api/tasks?schedule_id={uuid4()}", me) == set()
        for bad in ("chat_id=a%20b", "parent_id=nope", "batch_id=1"):
            assert (await client.get(f"/api/tasks?{bad}", headers=me)).status == 422, bad
        # Another user's children are not listed to this one.
        assert await ids(client, f"/api/tasks?parent_id={in_a}", auth(new_user())) == set()
        await kernel.pool.execute(
            "UPDATE tasks SET status = 'cancelled' WHERE user_id = $1", user
        )  # leave nothing queued for the next tests' workers


async def test_an_admin_reads_every_users_history(kernel: Kernel) -> None:
    alice, bob = new_user(), new_user()
    async with api(kernel) as client:
        a = (await submit(client, alice, chat="h"))["task_id"]
        b = (await submit(client, bob, chat="h"))["task_id"]
        assert (await client.get("/api/admin/tasks", headers=auth(alice))).status == 403
        everyone = await ids(client, "/api/admin/tasks?chat_id=h&limit=200", ADMIN)
        assert {a, b} <= everyone
        assert await ids(client, f"/api/admin/tasks?user_id={bob}", ADMIN) == {b}
        await kernel.pool.execute(
            "UPDATE tasks SET status = 'cancelled' WHERE id = ANY($1::uuid[])", [a, b]
        )
    audited = await kernel.pool.fetchval(
        "SELECT count(*) FROM admin_audit WHERE action = 'GET /api/admin/tasks'"
    )
    assert audited >= 2
