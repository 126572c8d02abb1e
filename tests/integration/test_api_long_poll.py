"""`GET /api/tasks/{id}?wait=N`: answered when the task ends (woken by the API's event hub,
the events the workers publish) or when the time is up, with the task as it is then."""

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from fleet_api.ws import HUB
from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.runtime.kernel import Kernel
from tests.conftest import wait_for
from tests.integration.api_client import api, auth, new_user, submit
from tests.integration.conftest import ConsumerFactory

# A wait that a test never sits out: the answer must come from the task's end, well before.
LONG_WAIT_S = 60
TEST_BOUND_S = 30


async def _watching(client: TestClient[web.Request, web.Application], task_id: str) -> bool:
    assert client.app is not None
    return client.app[HUB].watching(task_id)


async def test_a_wait_is_answered_when_a_worker_completes_the_task(
    kernel: Kernel, consume: ConsumerFactory
) -> None:
    release = asyncio.Event()

    async def handler(ctx: TaskContext[Any]) -> TaskResult:
        await release.wait()
        return TaskResult({"answer": 42})

    await consume(handler)
    user = new_user()
    async with api(kernel) as client:
        task_id = (await submit(client, user))["task_id"]
        url = f"/api/tasks/{task_id}?wait={LONG_WAIT_S}"
        waiting = asyncio.ensure_future(client.get(url, headers=auth(user)))
        await wait_for(lambda: _watching(client, task_id), what="the long poll to watch")
        assert not waiting.done()
        release.set()
        async with asyncio.timeout(TEST_BOUND_S):
            resp = await waiting
        task = await resp.json()
        assert resp.status == 200, task
        assert task["status"] == "completed"
        assert task["output"] == {"answer": 42}


async def test_a_wait_is_answered_when_the_task_is_cancelled(kernel: Kernel) -> None:
    user = new_user()
    async with api(kernel) as client:
        task_id = (await submit(client, user))["task_id"]
        waiting = asyncio.ensure_future(
            client.get(f"/api/tasks/{task_id}?wait={LONG_WAIT_S}", headers=auth(user))
        )
        cancel = await client.post(f"/api/tasks/{task_id}/cancel", headers=auth(user))
        assert cancel.status == 202
        async with asyncio.timeout(TEST_BOUND_S):
            resp = await waiting
        assert (await resp.json())["status"] == "cancelled"


async def test_a_wait_ends_when_the_time_is_up_with_the_task_as_it_is(kernel: Kernel) -> None:
    user = new_user()
    async with api(kernel) as client:
        task_id = (await submit(client, user))["task_id"]  # nothing consumes: it stays queued
        resp = await client.get(f"/api/tasks/{task_id}?wait=0.3", headers=auth(user))
        assert resp.status == 200
        assert (await resp.json())["status"] == "queued"
        # Terminal already: answered at once, whatever the wait.
        await client.post(f"/api/tasks/{task_id}/cancel", headers=auth(user))
        async with asyncio.timeout(TEST_BOUND_S):
            resp = await client.get(f"/api/tasks/{task_id}?wait={LONG_WAIT_S}", headers=auth(user))
        assert (await resp.json())["status"] == "cancelled"


async def test_a_wait_is_bounded_and_another_users_task_is_404(kernel: Kernel) -> None:
    user = new_user()
    async with api(kernel) as client:
        task_id = (await submit(client, user))["task_id"]
        for bad in ("61", "-1", "soon"):
            resp = await client.get(f"/api/tasks/{task_id}?wait={bad}", headers=auth(user))
            assert resp.status == 422, bad
            assert (await resp.json())["error"]["code"] == "invalid_query"
        async with asyncio.timeout(TEST_BOUND_S):
            resp = await client.get(
                f"/api/tasks/{task_id}?wait={LONG_WAIT_S}", headers=auth(new_user())
            )
        assert resp.status == 404


async def test_a_stopping_api_answers_its_long_polls_at_once(kernel: Kernel) -> None:
    user = new_user()
    async with api(kernel) as client:
        task_id = (await submit(client, user))["task_id"]
        waiting = asyncio.ensure_future(
            client.get(f"/api/tasks/{task_id}?wait={LONG_WAIT_S}", headers=auth(user))
        )
        await wait_for(lambda: _watching(client, task_id), what="the long poll to watch")
        assert client.app is not None
        await client.app.shutdown()
        async with asyncio.timeout(TEST_BOUND_S):
            resp = await waiting
        assert (await resp.json())["status"] == "queued"
