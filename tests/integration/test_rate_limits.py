"""Fleet-wide rate limits (admin routes /api/admin/rate-limits): set by an operator, held
across two workers claiming from the same queue, each task put back until its token is due
without using an attempt, and counted."""

from collections.abc import AsyncIterator
from uuid import UUID

import pytest

from taskfleet.core.constants import QUEUES, TaskType
from taskfleet.core.metrics import TASKS
from taskfleet.path.consumer import Consumer
from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.runtime.kernel import Kernel, open_kernel
from tests.integration.api_client import api, auth, new_user, submit
from tests.integration.conftest import ConsumerFactory, wait_status

LIMITS = "/api/admin/rate-limits"
ADMIN = auth("ops", "admin")


@pytest.fixture
async def no_limit_left(kernel: Kernel) -> AsyncIterator[None]:
    """The limits are fleet-wide: none may outlive its test (the next ones share the queues),
    and none left by another (the API fuzzing sets any) may skew this one."""
    await kernel.pool.execute("DELETE FROM rate_limits")
    yield
    await kernel.pool.execute("DELETE FROM rate_limits")


async def test_operators_set_read_and_remove_limits(kernel: Kernel, no_limit_left: None) -> None:
    async with api(kernel) as client:
        body = {"per_minute": 60, "burst": 5}
        assert (await client.put(f"{LIMITS}/tool:send_email", json=body,
                                 headers=auth(new_user()))).status == 403  # fmt: skip
        for bad_key, bad_body in (("tool:send_email", {"burst": 2}),
                                  ("tool:send_email", {"per_s": 1, "per_minute": 60}),
                                  ("tool:send_email", {"per_s": 0}),
                                  ("no_such_type", body), ("tool:a b", body)):  # fmt: skip
            resp = await client.put(f"{LIMITS}/{bad_key}", json=bad_body, headers=ADMIN)
            assert resp.status == 422, (bad_key, bad_body)
            assert "error" in await resp.json()
        resp = await client.put(f"{LIMITS}/tool:send_email", json=body, headers=ADMIN)
        limit = await resp.json()
        assert resp.status == 200, limit
        assert (limit["key"], limit["per_s"], limit["burst"], limit["throttled"]) == (
            "tool:send_email", 1.0, 5, 0)  # fmt: skip
        listed = await (await client.get(LIMITS, headers=ADMIN)).json()
        assert [entry["key"] for entry in listed["limits"]] == ["tool:send_email"]
        assert (await client.delete(f"{LIMITS}/tool:send_email", headers=ADMIN)).status == 204
        assert (await client.delete(f"{LIMITS}/tool:send_email", headers=ADMIN)).status == 404


async def test_a_limit_holds_across_two_workers(
    kernel: Kernel, consume: ConsumerFactory, no_limit_left: None
) -> None:
    async def answer(ctx: TaskContext) -> TaskResult:
        return TaskResult({"ok": True}, reply="done")

    throttled = TASKS.labels("chat_tasks", "throttled")._value.get()
    n, per_s = 8, 4.0
    async with api(kernel) as client:
        resp = await client.put(f"{LIMITS}/chat_message", json={"per_s": per_s, "burst": 1},
                                headers=ADMIN)  # fmt: skip
        assert resp.status == 200
        # Two workers (two kernels: two processes' worth), slots to spare: only the limit
        # spaces the claims.
        await consume(answer, concurrency=8)
        async with open_kernel(kernel.settings, name="second") as other:
            second = Consumer(settings=other.settings, spec=QUEUES[TaskType.CHAT],
                              handler=answer, store=other.store, broker=other.broker,
                              supervisor=other.supervisor, concurrency=8)  # fmt: skip
            await second.start()
            try:
                ids = [UUID((await submit(client, new_user()))["task_id"]) for _ in range(n)]
                rows = [await wait_status(kernel, task_id, "completed") for task_id in ids]
            finally:
                await second.stop(grace_s=2)
        listed = await (await client.get(LIMITS, headers=ADMIN)).json()
    starts = sorted(r["started_at"] for r in rows)
    # A token every 1/per_s seconds, the first from the full bucket: n claims span n-1 gaps.
    assert (starts[-1] - starts[0]).total_seconds() >= (n - 1) / per_s - 0.05
    assert {r["attempts"] for r in rows} == {1}  # a put-back is no attempt
    [limit] = listed["limits"]
    assert limit["throttled"] >= 1
    assert TASKS.labels("chat_tasks", "throttled")._value.get() > throttled
