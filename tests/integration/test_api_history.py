"""A task's transitions (a trigger writes one row per change of status, GET
/api/tasks/{id}/transitions reads them), and what the operator page reads besides the
depths: each queue's tasks ended in the last minute, each worker's memory and pauses."""

from typing import Any

from taskfleet.core.errors import RetryableError
from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.runtime.kernel import Kernel
from tests.integration.api_client import api, auth, new_user, submit
from tests.integration.conftest import ConsumerFactory, wait_status


class TestTransitions:
    async def test_every_change_of_status_is_there_in_order_with_the_retry_and_its_error(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        user, calls = new_user(), []

        async def once_flaky(ctx: TaskContext) -> TaskResult:
            calls.append(ctx.attempt)
            if len(calls) == 1:
                raise RetryableError("blip", code="upstream_blip", delay_s=0.05)
            return TaskResult({"ok": True}, reply="ok")

        await consume(once_flaky)
        async with api(kernel) as client:
            task_id = (await submit(client, user))["task_id"]
            await wait_status(kernel, task_id, "completed")
            resp = await client.get(f"/api/tasks/{task_id}/transitions", headers=auth(user))
            assert resp.status == 200
            body = await resp.json()
            assert body["task_id"] == task_id
            steps = body["transitions"]
            # The retry's message may be claimed before the relay marked the task queued
            pairs = [(t["from_status"], t["to_status"]) for t in steps]
            if ("retrying", "processing") in pairs:
                pairs[3:4] = [("retrying", "queued"), ("queued", "processing")]
            assert pairs == [
                (None, "queued"),
                ("queued", "processing"),
                ("processing", "retrying"),
                ("retrying", "queued"),
                ("queued", "processing"),
                ("processing", "completed"),
            ]
            retry = steps[2]
            assert retry["error_code"] == "upstream_blip"
            assert retry["next_attempt_at"] is not None
            assert [t["attempts"] for t in steps][:3] == [0, 1, 1]
            assert steps[-1]["attempts"] == 2
            assert [t["at"] for t in steps] == sorted(t["at"] for t in steps)
            # Another user's task is not there; an admin reads any
            other = await client.get(f"/api/tasks/{task_id}/transitions", headers=auth(new_user()))
            assert other.status == 404
            admin = await client.get(
                f"/api/tasks/{task_id}/transitions", headers=auth("ops", "admin")
            )
            assert len((await admin.json())["transitions"]) == len(steps)
            # A deleted task's history goes with it
            assert (await client.delete(f"/api/tasks/{task_id}", headers=auth(user))).status == 200
        left = await kernel.pool.fetchval(
            "SELECT count(*) FROM task_transitions WHERE task_id = $1", task_id
        )
        assert left == 0


class TestOperatorReadings:
    async def test_queues_count_what_ended_and_workers_report_memory_and_pauses(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        user = new_user()
        consumer = await consume(lambda ctx: _ok(ctx))
        admin = auth("ops", "admin")
        async with api(kernel) as client:
            task_id = (await submit(client, user))["task_id"]
            await wait_status(kernel, task_id, "completed")
            queues = await (await client.get("/api/admin/queues", headers=admin)).json()
            by_name: dict[str, Any] = {q["name"]: q for q in queues["queues"]}
            assert by_name["chat_tasks"]["finished_last_min"] >= 1
            assert by_name["chat_tasks.dlq"]["finished_last_min"] is None
            workers = await (await client.get("/api/admin/workers", headers=admin)).json()
            [mine] = [w for w in workers["workers"] if w["id"] == str(consumer.registration.id)]
            assert mine["rss_bytes"] > 10 * 2**20  # a Python process: tens of MiB at least
            assert mine["paused"] == {}


async def _ok(ctx: TaskContext) -> TaskResult:
    return TaskResult({"ok": True}, reply="ok")
