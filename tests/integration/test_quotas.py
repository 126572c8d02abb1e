"""Per-user quotas: a user over the submission rate or the waiting-task cap gets 429 with
Retry-After and nothing is stored, while other users are served; the count is PostgreSQL's,
so two API replicas share it."""

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any
from uuid import uuid4

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from fleet_api.app import create_app
from taskfleet.data import retention
from taskfleet.runtime.kernel import Kernel
from taskfleet.security.auth import issue_token
from tests.conftest import JWT_SECRET, wait_for

Replica = TestClient[web.Request, web.Application]


@pytest.fixture
async def replicas(kernel: Kernel) -> AsyncIterator[Callable[..., Any]]:
    """`await replicas(n, **settings)`: n API apps on the test's kernel with those settings."""
    async with AsyncExitStack() as stack:

        async def start(n: int = 1, **overrides: Any) -> list[Replica]:
            settings = kernel.settings.model_copy(update=overrides)
            tuned = Kernel(settings, kernel.pool, kernel.store, kernel.broker, kernel.supervisor)
            return [
                await stack.enter_async_context(TestClient(TestServer(create_app(tuned))))
                for _ in range(n)
            ]

        yield start


async def post(client: Replica, user: str) -> Any:
    headers = {"Authorization": f"Bearer {issue_token(JWT_SECRET, user)}"}
    return await client.post(
        "/api/chat/stream", json={"chat_id": "q", "content": "hi"}, headers=headers
    )


async def inside_one_window(kernel: Kernel) -> None:
    """Wait until the current minute has 5 s left at least: the rate windows are whole
    minutes, and a test must not see its count reset half-way."""

    async def early_enough() -> bool:
        second = await kernel.pool.fetchval("SELECT extract(second FROM now())")
        return float(second) < 55

    await wait_for(early_enough, what="a minute with 5 s left", timeout_s=10)


async def tasks_of(kernel: Kernel, user: str) -> int:
    return int(await kernel.pool.fetchval("SELECT count(*) FROM tasks WHERE user_id = $1", user))


async def test_over_the_rate_a_user_gets_429_with_retry_after_and_others_are_served(
    kernel: Kernel, replicas: Callable[..., Any]
) -> None:
    [api] = await replicas(submit_rate_per_min=3)
    await inside_one_window(kernel)
    flooder, other = f"flood-{uuid4().hex[:6]}", f"calm-{uuid4().hex[:6]}"
    assert [(await post(api, flooder)).status for _ in range(3)] == [202] * 3
    refused = await post(api, flooder)
    assert refused.status == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    error = (await refused.json())["error"]
    assert (error["code"], error["message"]) == (
        "rate_limited", "more than 3 submissions in a minute",
    )  # fmt: skip
    assert (await post(api, other)).status == 202
    assert await tasks_of(kernel, flooder) == 3  # the refused one stored nothing


async def test_the_rate_is_counted_across_replicas(
    kernel: Kernel, replicas: Callable[..., Any]
) -> None:
    first, second = await replicas(2, submit_rate_per_min=3)
    await inside_one_window(kernel)
    user = f"spread-{uuid4().hex[:6]}"
    statuses = [(await post(api, user)).status for api in (first, second, first, second)]
    assert statuses == [202, 202, 202, 429]


async def test_a_user_with_too_many_waiting_tasks_gets_429(
    kernel: Kernel, replicas: Callable[..., Any]
) -> None:
    [api] = await replicas(max_queued_per_user=2)  # no worker: every task stays queued
    user, other = f"backlog-{uuid4().hex[:6]}", f"light-{uuid4().hex[:6]}"
    assert [(await post(api, user)).status for _ in range(2)] == [202, 202]
    refused = await post(api, user)
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "5"
    assert "2 tasks already waiting (at most 2)" in (await refused.json())["error"]["message"]
    assert (await post(api, other)).status == 202


async def test_cleanup_forgets_old_rate_windows(kernel: Kernel) -> None:
    user = f"old-{uuid4().hex[:6]}"
    await kernel.pool.execute(
        "INSERT INTO submission_counts VALUES ($1, now() - interval '2 hours', 5),"
        " ($1, date_trunc('minute', now()), 1)",
        user,
    )
    async with kernel.pool.acquire() as conn:
        await retention.cleanup(conn, older_than_s=86400)
    left = await kernel.pool.fetchval(
        "SELECT count(*) FROM submission_counts WHERE user_id = $1", user
    )
    assert left == 1
