"""Every accepted task finishes (DESIGN.md §4): through a database outage while a backend
publishes straight to the queue and clients post to the API, through bursts of tool-using
chats posted to the API, and through a database stop while chats wait on their tool calls.
Each scenario ends with zero lost, zero duplicate replies, zero dead-lettered healthy tasks."""

import asyncio
import os
import signal
import time
from collections.abc import Callable
from uuid import uuid4

import asyncpg
import pytest

from taskfleet.core.constants import TaskType
from taskfleet.core.messages import TaskMessage
from taskfleet.core.settings import Settings
from taskfleet.store.pool import create_pool
from tests.chaos.conftest import size
from tests.chaos.harness import (
    Fleet,
    Submissions,
    dead_letters,
    publish_straight,
    readiness,
    submit,
    verify,
)
from tests.chaos.infra import can_operate_services, postgres
from tests.conftest import Proc, wait_for

pytestmark = pytest.mark.skipif(bool(can_operate_services()), reason=str(can_operate_services()))


def calc_reply(content: str) -> str:
    """The scripted model's answer to `calc: <i>*3` (_calc) once the calculator answered."""
    i = int(content.removeprefix("calc: ").removesuffix("*3"))
    return f"{i}*3 = {3 * i}"


async def fresh_pool(settings: Settings) -> asyncpg.Pool:
    """A pool made after the outage: the test's own connections died with the server."""
    return await create_pool(settings.database_url, size=2)


@pytest.mark.timeout(900)  # the 5-minute outage, then every task to finish
@pytest.mark.parametrize("outage_s", [size(6, 60), size(10, 300)], ids=["short", "long"])
async def test_a_database_outage_loses_nothing_and_dead_letters_nothing(
    settings: Settings, spawn: Callable[..., Proc], outage_s: int
) -> None:
    fleet = Fleet(settings, spawn, workers=2)
    await fleet.start()
    before = await submit(fleet, 20, f"pre-{outage_s}")
    # Given PostgreSQL stopped under a running fleet
    await asyncio.to_thread(postgres, settings.database_url, "stop")
    stopped = time.monotonic()
    straight: list[TaskMessage] = []
    try:
        # While it is away, a backend keeps publishing straight to chat_tasks (40 messages
        # over the outage) and clients keep posting to the API (503 + Retry-After, retried)
        posted = asyncio.ensure_future(
            submit(fleet, 30, f"api-{outage_s}", concurrency=4, deadline_s=outage_s + 120)
        )
        for i in range(40):
            msg = TaskMessage(
                task_id=uuid4(),
                type=TaskType.CHAT,
                user_id=f"backend-{i % 7}",
                chat_id=f"b-{i % 5}",
                payload={"content": f"straight {i}"},
            )
            straight.append(msg)
            await publish_straight(settings, [msg])
            await asyncio.sleep(outage_s / 40)
        # Each worker says why it takes nothing
        for worker in fleet.chat:
            ready = await readiness(worker)
            assert ready["status"] == "not_ready"
            assert "database" in ready["paused"]
    finally:
        await asyncio.to_thread(postgres, settings.database_url, "start")
    outage = time.monotonic() - stopped
    during = await posted
    db = await fresh_pool(settings)
    try:
        subs = Submissions(accepted={**before.accepted, **during.accepted})
        subs.accepted.update({m.task_id: m.payload["content"] for m in straight})
        verdict = await verify(db, subs, timeout_s=180)
        letters = await dead_letters(settings)
    finally:
        await db.close()
    print(
        verdict.line(
            f"database-outage-{outage_s}s",
            outage_s=round(outage),
            statuses=during.statuses,
            dead_letters=letters,
        )
    )
    assert verdict.accepted == 20 + 30 + 40
    assert (verdict.completed, verdict.lost, verdict.failed) == (90, 0, 0)
    assert (verdict.duplicate_replies, verdict.wrong_replies, letters) == (0, 0, 0)
    assert not [s for s in during.statuses if s >= 500 and s != 503]


async def test_a_burst_of_tool_using_chats_through_the_api_all_complete(
    settings: Settings, spawn: Callable[..., Proc]
) -> None:
    n = size(100, 400)
    fleet = Fleet(settings, spawn, workers=2, tools=1)
    await fleet.start()
    subs = await submit(fleet, n, "burst", concurrency=16, content=_calc)
    db = await fresh_pool(settings)
    try:
        verdict = await verify(db, subs, timeout_s=120, expect=calc_reply)
    finally:
        await db.close()
    print(verdict.line("tool-burst"))
    assert (verdict.accepted, verdict.completed, verdict.lost) == (n, n, 0)
    assert (verdict.failed, verdict.duplicate_replies, verdict.wrong_replies) == (0, 0, 0)


async def test_postgres_stops_while_chats_wait_on_their_tool_calls(
    settings: Settings, spawn: Callable[..., Proc]
) -> None:
    n = size(20, 100)
    fleet = Fleet(settings, spawn, workers=1, tools=1)
    await fleet.start()
    [tools] = fleet.tool
    # Given chats waiting on tool calls that no tool worker is taking (it is frozen)
    os.kill(tools.popen.pid, signal.SIGSTOP)
    try:
        subs = await submit(fleet, n, "waits", concurrency=8, content=_calc)
        db = await fresh_pool(settings)
        try:
            await wait_for(
                lambda: _all_waiting(db, list(subs.accepted)),
                what="every chat waiting on its tool call",
                timeout_s=60,
            )
        finally:
            await db.close()
        # When PostgreSQL stops, the tool worker wakes to find it away, and it comes back
        await asyncio.to_thread(postgres, settings.database_url, "stop")
        try:
            os.kill(tools.popen.pid, signal.SIGCONT)
            await asyncio.sleep(size(4, 20))  # the outage lasts: nothing may be lost meanwhile
        finally:
            await asyncio.to_thread(postgres, settings.database_url, "start")
    finally:
        os.kill(tools.popen.pid, signal.SIGCONT)
    # Then every chat resumes and completes, once
    db = await fresh_pool(settings)
    try:
        verdict = await verify(db, subs, timeout_s=120, expect=calc_reply)
        letters = await dead_letters(settings, "tool_executions")
    finally:
        await db.close()
    print(verdict.line("waiting-through-outage", dead_letters=letters))
    assert (verdict.completed, verdict.lost, verdict.failed, letters) == (n, 0, 0, 0)
    assert (verdict.duplicate_replies, verdict.wrong_replies) == (0, 0)


def _calc(tag: str, i: int) -> str:
    return f"calc: {i}*3"


async def _all_waiting(db: asyncpg.Pool, ids: list[object]) -> bool:
    waiting = await db.fetchval(
        "SELECT count(*) FROM tasks WHERE id = ANY($1::uuid[]) AND status = 'waiting'", ids
    )
    return bool(waiting == len(ids))
