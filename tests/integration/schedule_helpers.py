"""What the schedule tests share: a runner factory, and schedules made and read through the
API."""

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from taskfleet.data.schedule_runner import ScheduleRunner
from taskfleet.runtime.kernel import Kernel
from tests.conftest import wait_for
from tests.integration.api_client import auth

Client = Any
Runners = Callable[..., Awaitable[str]]


@asynccontextmanager
async def schedule_runners(kernel: Kernel) -> AsyncIterator[Runners]:
    """Start a schedule runner (on `kernel`, or another replica's) under its supervisor;
    returns its name there. Every runner stops, and every schedule goes, at the end."""
    started: list[tuple[Kernel, str]] = []

    async def start(on: Kernel | None = None, **options: Any) -> str:
        owner = on or kernel
        runner = ScheduleRunner(owner, **({"tick_s": 0.05, "lock_retry_s": 0.05} | options))
        name = f"schedules-{len(started)}"
        owner.supervisor.spawn(name, runner.run)
        started.append((owner, name))
        return name

    yield start
    for owner, name in started:
        await owner.supervisor.stop(name)
    await kernel.pool.execute("DELETE FROM schedules")


async def create(client: Client, user: str, **fields: Any) -> Any:
    body = {"task": {"chat_id": "s", "content": "tick"}, **fields}
    resp = await client.post("/api/schedules", json=body, headers=auth(user))
    schedule = await resp.json()
    assert resp.status == 201, schedule
    assert resp.headers["Location"] == f"/api/schedules/{schedule['id']}"
    return schedule


async def read(client: Client, user: str, schedule_id: str) -> Any:
    resp = await client.get(f"/api/schedules/{schedule_id}", headers=auth(user))
    body = await resp.json()
    assert resp.status == 200, body
    return body


async def ticks(kernel: Kernel, schedule_id: str) -> list[datetime]:
    """The tick of each run of the schedule (its idempotency key names it), oldest first."""
    keys = await kernel.pool.fetch(
        "SELECT idempotency_key FROM tasks WHERE schedule_id = $1 ORDER BY created_at",
        schedule_id,
    )
    return [tick_of(k["idempotency_key"]) for k in keys]


def tick_of(key: str) -> datetime:
    """`schedule:<id>:<tick>` -> the tick."""
    return datetime.fromisoformat(key.split(":", 2)[2])


async def runs_reach(
    kernel: Kernel, schedule_id: str, n: int, timeout_s: float = 20
) -> list[datetime]:
    async def enough() -> list[datetime] | None:
        found = await ticks(kernel, schedule_id)
        return found if len(found) >= n else None

    found: list[datetime] = await wait_for(enough, timeout_s=timeout_s, what=f"{n} runs")
    return found


def consecutive(found: list[datetime], step_s: float) -> bool:
    return all(b - a == timedelta(seconds=step_s) for a, b in itertools.pairwise(found))
