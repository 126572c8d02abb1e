"""Email notifications through the API: a user's choice (PUT/GET/DELETE
/api/notifications/email, checked), and the notification the database writes as a task of theirs
ends: only for the events asked for, only past the threshold, only for tasks the user submitted,
and once per task however often it ends (tests/e2e/test_notifications_e2e.py sends them)."""

from typing import Any
from uuid import UUID

from taskfleet.runtime.kernel import Kernel
from tests.integration.api_client import api, auth, new_user, submit


async def end(kernel: Kernel, task_id: str, status: str, ran_s: float) -> None:
    """The task as a worker leaves it: started `ran_s` ago, ended now."""
    await kernel.pool.execute(
        "UPDATE tasks SET status = 'processing', started_at = now() - make_interval(secs => $2)"
        " WHERE id = $1", UUID(task_id), ran_s,
    )  # fmt: skip
    await kernel.pool.execute(
        "UPDATE tasks SET status = $2, completed_at = now() WHERE id = $1", UUID(task_id), status
    )


async def written(kernel: Kernel, user: str) -> list[dict[str, Any]]:
    rows = await kernel.pool.fetch(
        "SELECT task_id, event, email, status FROM notifications WHERE user_id = $1", user
    )
    return [dict(r) for r in rows]


async def test_a_user_sets_reads_and_stops_their_notifications(kernel: Kernel) -> None:
    user, other = new_user(), new_user()
    async with api(kernel) as client:
        assert (await client.get("/api/notifications/email", headers=auth(user))).status == 404
        body = {"email": "ada@example.com", "min_duration_s": 30, "events": ["task.failed"]}
        resp = await client.put("/api/notifications/email", json=body, headers=auth(user))
        stored = await resp.json()
        assert resp.status == 200, stored
        assert (stored["email"], stored["min_duration_s"], stored["events"], stored["enabled"]) == (
            "ada@example.com", 30, ["task.failed"], True)  # fmt: skip
        assert (
            await (await client.get("/api/notifications/email", headers=auth(user))).json()
            == stored
        )
        for bad in ({"email": "not an address"}, {"email": "a@b.c", "min_duration_s": -1},
                    {"email": "a@b.c", "events": ["task.cancelled"]}, {"email": "a@b.c", "x": 1},
                    {"email": "a@b.c\r\nBcc: all@example.com"}):  # fmt: skip
            refused = await client.put("/api/notifications/email", json=bad, headers=auth(user))
            assert refused.status in (400, 422), bad
            assert "error" in await refused.json()
        # Another user's choice is theirs alone.
        theirs = {**body, "user_id": user}
        assert (await client.put("/api/notifications/email", json=theirs,
                                 headers=auth(other))).status == 403  # fmt: skip
        assert (await client.get("/api/notifications/email", headers=auth(other))).status == 404
        assert (await client.delete("/api/notifications/email", headers=auth(user))).status == 204
        assert (await client.delete("/api/notifications/email", headers=auth(user))).status == 404


async def test_a_notification_is_written_once_for_a_long_task_that_ends(kernel: Kernel) -> None:
    user = new_user()
    async with api(kernel) as client:
        choice = {"email": "bo@example.com", "min_duration_s": 60}
        await client.put("/api/notifications/email", json=choice, headers=auth(user))
        quick, slow, failed, cancelled = [(await submit(client, user))["task_id"] for _ in range(4)]
        await end(kernel, quick, "completed", ran_s=5)  # under the threshold
        await end(kernel, slow, "completed", ran_s=120)
        await end(kernel, failed, "failed", ran_s=90)
        await end(kernel, cancelled, "cancelled", ran_s=90)  # not an event one can ask for
        # Rerun and ended again: still the one notification.
        await end(kernel, slow, "completed", ran_s=200)
        rows = await written(kernel, user)
        assert sorted((str(r["task_id"]), r["event"]) for r in rows) == sorted(
            [(slow, "task.completed"), (failed, "task.failed")])  # fmt: skip
        assert {(r["email"], r["status"]) for r in rows} == {("bo@example.com", "pending")}
        log = await (await client.get("/api/notifications", headers=auth(user))).json()
        assert {n["task_id"] for n in log["notifications"]} == {slow, failed}


async def test_nothing_is_written_for_a_user_who_paused_or_asked_for_other_events(
    kernel: Kernel,
) -> None:
    paused, picky = new_user(), new_user()
    async with api(kernel) as client:
        await client.put(
            "/api/notifications/email",
            headers=auth(paused),
            json={"email": "c@example.com", "min_duration_s": 0, "enabled": False},
        )
        await client.put("/api/notifications/email", headers=auth(picky),
                         json={"email": "d@example.com", "min_duration_s": 0,
                               "events": ["task.failed"]})  # fmt: skip
        for user in (paused, picky):
            await end(kernel, (await submit(client, user))["task_id"], "completed", ran_s=10)
            assert await written(kernel, user) == []
