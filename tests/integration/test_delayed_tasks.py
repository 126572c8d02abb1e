"""Delayed tasks through the API (docs/scheduling.md): `scheduled` until their time, then
published by the outbox relay and run; cancellable, listed, announced on the WebSocket, and
repaired by the reconciler when their outbox row is gone."""

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest

from taskfleet.core.constants import QUEUES, TaskType
from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.runtime.kernel import Kernel
from taskfleet.runtime.reconciler import Reconciler
from tests.camera_images import frame
from tests.conftest import wait_for
from tests.doc_fixtures import form
from tests.integration.api_client import api, auth, new_user, token
from tests.integration.conftest import (
    CHAT,
    ConsumerFactory,
    chat_message,
    publish,
    wait_status,
)
from tests.integration.test_ws import next_json

Client = Any


async def delayed_chat(client: Client, user: str, content: str, **when: Any) -> dict[str, Any]:
    resp = await client.post(
        "/api/chat/stream",
        json={"chat_id": "later", "content": content, **when},
        headers=auth(user),
    )
    body: dict[str, Any] = await resp.json()
    assert resp.status == 202, body
    return body


def recorder(ran: list[UUID]) -> Any:
    async def record(ctx: TaskContext) -> TaskResult:
        ran.append(ctx.task_id)
        return TaskResult({"reply": "later"}, reply="later")

    return record


async def ready_in(kernel: Kernel, queue: str) -> int:
    name = kernel.settings.queue(queue)
    counts = await kernel.broker.inspect([name])
    return int(counts[name][0])


class TestDelayedChat:
    async def test_runs_at_its_time_and_not_before(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        user, ran = new_user(), list[UUID]()
        await consume(recorder(ran))
        async with api(kernel) as client:
            accepted = await delayed_chat(client, user, "in two seconds", delay_s=2)
            assert accepted["status"] == "scheduled"
            resp = await client.get(f"/api/tasks/{accepted['task_id']}", headers=auth(user))
            task = await resp.json()
        assert task["status"] == "scheduled"
        run_at = datetime.fromisoformat(task["run_at"])
        created = datetime.fromisoformat(task["created_at"])
        assert timedelta(seconds=1.9) < run_at - created < timedelta(seconds=2.5)
        done = await wait_status(kernel, accepted["task_id"], "completed")
        # The database's own clock on both sides: the claim came after run_at, within 1 s.
        assert run_at <= done["started_at"] < run_at + timedelta(seconds=1)
        assert ran == [UUID(accepted["task_id"])]

    async def test_run_at_in_any_zone_is_that_instant_and_a_past_one_runs_now(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        user, ran = new_user(), list[UUID]()
        await consume(recorder(ran))
        plus_two = timezone(timedelta(hours=2))
        at = (datetime.now(UTC) + timedelta(seconds=1.5)).astimezone(plus_two)
        async with api(kernel) as client:
            later = await delayed_chat(client, user, "at", run_at=at.isoformat())
            past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
            now = await delayed_chat(client, user, "past", run_at=past)
        assert (later["status"], now["status"]) == ("scheduled", "queued")
        row = await wait_status(kernel, later["task_id"], "completed")
        assert row["run_at"] == at
        assert row["started_at"] >= at
        now_row = await wait_status(kernel, now["task_id"], "completed")
        assert now_row["run_at"] is None

    async def test_is_listed_and_announced_queued_on_the_websocket(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        user, ran = new_user(), list[UUID]()
        async with api(kernel) as client:
            accepted = await delayed_chat(client, user, "soon", delay_s=1)
            resp = await client.get("/api/tasks?status=scheduled", headers=auth(user))
            listed = await resp.json()
            assert [t["id"] for t in listed["tasks"]] == [accepted["task_id"]]
            async with client.ws_connect(f"/ws/tasks?token={token(user)}") as ws:
                snapshot = await next_json(ws)
                assert [(t["id"], t["status"]) for t in snapshot["tasks"]] == [
                    (accepted["task_id"], "scheduled")
                ]
                await consume(recorder(ran))
                statuses = []
                while "completed" not in statuses:
                    event = await next_json(ws)
                    if event["type"] == "task.updated":
                        statuses.append(event["task"]["status"])
        assert statuses[0] == "queued"
        assert statuses[-1] == "completed"


class TestCancelDelayed:
    async def test_a_cancelled_one_is_never_published_nor_run(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        user, ran = new_user(), list[UUID]()
        async with api(kernel) as client:
            doomed = await delayed_chat(client, user, "never", delay_s=1)
            marker = await delayed_chat(client, user, "marker", delay_s=1.5)
            resp = await client.post(f"/api/tasks/{doomed['task_id']}/cancel", headers=auth(user))
            cancelled = await resp.json()
        assert (resp.status, cancelled["status"]) == (202, "cancelled")
        # No consumer yet: once the later marker is out, the queue holds exactly its message.
        await wait_status(kernel, marker["task_id"], "queued")
        assert await ready_in(kernel, CHAT.name) == 1
        await consume(recorder(ran))
        await wait_status(kernel, marker["task_id"], "completed")
        assert ran == [UUID(marker["task_id"])]
        task = await kernel.store.get_task(UUID(doomed["task_id"]))
        assert task is not None
        assert task["status"] == "cancelled"

    async def test_an_early_outbox_row_does_not_run_it_early(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        user, ran = new_user(), list[UUID]()
        await consume(recorder(ran))
        async with api(kernel) as client:
            accepted = await delayed_chat(client, user, "not yet", delay_s=2)
        # A row due now, that is not the task's own (a user's transaction may write one).
        await kernel.pool.execute(
            "INSERT INTO outbox (task_id, queue, attempt, kind) VALUES ($1, $2, 1, 'task')",
            accepted["task_id"],
            CHAT.name,
        )

        async def dropped() -> bool:
            rows = await kernel.pool.fetchval(
                "SELECT count(*) FROM outbox WHERE task_id = $1", accepted["task_id"]
            )
            return bool(rows == 1)

        await wait_for(dropped, what="the relay to drop the early row")
        done = await wait_status(kernel, accepted["task_id"], "completed")
        assert done["started_at"] >= done["run_at"]  # published by its own row only
        assert ran == [UUID(accepted["task_id"])]

    async def test_its_message_is_a_duplicate_before_its_time_and_claimed_after(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        """As a relay of the previous version publishes it (without queueing it first)."""
        user, ran = new_user(), list[UUID]()
        await consume(recorder(ran))
        async with api(kernel) as client:
            accepted = await delayed_chat(client, user, "old relay", delay_s=2)
        task_id = UUID(accepted["task_id"])
        await kernel.pool.execute("DELETE FROM outbox WHERE task_id = $1", task_id)
        message = chat_message(user, "old relay", task_id=task_id, chat_id="later")
        await publish(kernel, message)  # before its time: settled, not run

        async def due() -> bool:
            return bool(await kernel.pool.fetchval("SELECT run_at <= now() FROM tasks"
                                                   " WHERE id = $1", task_id))  # fmt: skip

        await wait_for(due, what="its time")
        assert ran == []
        await publish(kernel, message)  # after its time: claimed, though still `scheduled`
        done = await wait_status(kernel, task_id, "completed")
        assert done["started_at"] >= done["run_at"]
        assert ran == [task_id]


class TestOtherRoutes:
    async def test_a_delayed_frame_is_scheduled_then_analysed(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        user, ran = new_user(), list[UUID]()
        await consume(recorder(ran), spec=QUEUES[TaskType.CAMERA])
        async with api(kernel) as client:
            resp = await client.post(
                "/api/cameras/cam1/frames?delay_s=1",
                data=frame(),
                headers={**auth(user), "Content-Type": "image/jpeg"},
            )
            accepted = await resp.json()
        assert (resp.status, accepted["status"]) == (202, "scheduled"), accepted
        row = await wait_status(kernel, accepted["task_id"], "completed")
        assert row["started_at"] >= row["run_at"]
        assert ran == [UUID(accepted["task_id"])]

    async def test_a_delayed_document_reads_scheduled_until_its_time(self, kernel: Kernel) -> None:
        user = new_user()
        async with api(kernel) as client:
            body = form(b"hello later", filename="later.txt")
            resp = await client.post("/api/documents?delay_s=30", data=body, headers=auth(user))
            accepted = await resp.json()
            assert (resp.status, accepted["status"]) == (202, "scheduled"), accepted
            resp = await client.get(f"/api/documents/{accepted['document_id']}", headers=auth(user))
            document = await resp.json()
        assert document["status"] == "scheduled"
        assert await ready_in(kernel, QUEUES[TaskType.DOCUMENT].name) == 0


class TestBadDelays:
    @pytest.mark.parametrize(
        ("when", "says"),
        [
            ({"delay_s": 5, "run_at": "2030-01-01T00:00:00Z"}, "not both"),
            ({"run_at": "2030-01-01T00:00:00"}, "with its zone"),
            ({"run_at": "tomorrow"}, "RFC 3339"),
            ({"run_at": "2030-13-01T00:00:00Z"}, "not a valid time"),
            ({"run_at": "9999-12-31T23:59:59-23:59"}, "at most"),
            ({"delay_s": -1}, "0 or more"),
            ({"delay_s": 40 * 86400}, "at most"),
        ],
    )
    async def test_are_a_clear_400(self, kernel: Kernel, when: dict[str, Any], says: str) -> None:
        async with api(kernel) as client:
            resp = await client.post(
                "/api/chat/stream",
                json={"chat_id": "bad", "content": "x", **when},
                headers=auth(new_user()),
            )
            body = await resp.json()
        assert (resp.status, body["error"]["code"]) == (400, "invalid_delay")
        assert says in body["error"]["message"]

    async def test_in_a_query_string_too(self, kernel: Kernel) -> None:
        async with api(kernel) as client:
            resp = await client.post(
                "/api/cameras/cam1/frames?delay_s=nan",
                data=frame(),
                headers={**auth(new_user()), "Content-Type": "image/jpeg"},
            )
            body = await resp.json()
        assert (resp.status, body["error"]["code"]) == (400, "invalid_delay")


class TestReconciler:
    async def test_a_due_task_whose_row_was_lost_is_published_and_runs(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        user, ran = new_user(), list[UUID]()
        await consume(recorder(ran))
        async with api(kernel) as client:
            accepted = await delayed_chat(client, user, "lost row", delay_s=0.5)
        await kernel.pool.execute("DELETE FROM outbox WHERE task_id = $1", accepted["task_id"])
        settings = kernel.settings.model_copy(update={"reconcile_after_s": 0.2})
        reconciler = Reconciler(kernel.pool, kernel.broker, settings)

        async def repaired() -> dict[str, int] | None:
            counts = await reconciler.reconcile_once()
            return counts if counts and counts.get("scheduled_due") else None

        # Not before its time (and RECONCILE_AFTER_S): nothing to repair until then.
        counts = await wait_for(repaired, what="the reconciler to repair the delayed task")
        # Other tests' leftovers in the shared database may be repaired (and run) too.
        assert counts["scheduled_due"] >= 1
        row = await wait_status(kernel, accepted["task_id"], "completed")
        assert row["started_at"] >= row["run_at"] + timedelta(seconds=0.2)
        assert ran.count(UUID(accepted["task_id"])) == 1
