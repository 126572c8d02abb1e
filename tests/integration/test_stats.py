"""GET /api/stats and `taskfleet stats` (taskfleet.data.stats) on a known set of tasks, in a
database of their own so that the fleet-wide figures are exactly those tasks'."""

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from taskfleet.core.settings import Settings
from taskfleet.data.stats import FLEET_STATS, USER_STATS
from taskfleet.runtime.kernel import Kernel, open_kernel
from taskfleet.store.migrate import migrate
from taskfleet.store.pool import drop_database, with_database
from tests.conftest import Infra, process_env
from tests.integration.api_client import api, auth

NOW = datetime.now(UTC)
HOUR_AGO = NOW - timedelta(hours=1)


@pytest.fixture(scope="module")
async def own_settings(infra: Infra, settings: Settings) -> AsyncIterator[Settings]:
    dsn = with_database(infra.database_url, f"taskfleet_test_stats_{uuid.uuid4().hex[:8]}")
    await migrate(dsn)
    yield settings.model_copy(update={"database_url": dsn})
    await drop_database(dsn)


@pytest.fixture(scope="module")
async def stats_kernel(own_settings: Settings) -> AsyncIterator[Kernel]:
    async with open_kernel(own_settings, name="stats", relay=False) as kernel:
        await _known_tasks(kernel.pool)
        yield kernel


async def _task(
    pool: asyncpg.Pool,
    user: str,
    task_type: str,
    status: str,
    *,
    created: datetime = HOUR_AGO,
    wait_s: float | None = None,
    run_s: float | None = None,
    delay_s: float | None = None,
) -> None:
    run_at = created + timedelta(seconds=delay_s) if delay_s is not None else None
    ready = run_at or created
    started = ready + timedelta(seconds=wait_s) if wait_s is not None else None
    ended = None
    if status in ("completed", "failed", "cancelled"):
        ended = started + timedelta(seconds=run_s or 0.5) if started else created
    await pool.execute(
        "INSERT INTO tasks (id, type, user_id, status, max_attempts, created_at, run_at,"
        " started_at, completed_at) VALUES ($1, $2, $3, $4, 3, $5, $6, $7, $8)",
        uuid.uuid4(), task_type, user, status, created, run_at, started, ended,
    )  # fmt: skip


async def _known_tasks(pool: asyncpg.Pool) -> None:
    for wait_s, run_s in ((1, 10), (2, 20), (3, 30), (4, 40)):
        await _task(pool, "ann", "chat_message", "completed", wait_s=wait_s, run_s=run_s)
    await _task(pool, "ann", "chat_message", "failed", wait_s=5)
    await _task(pool, "ann", "tool_execution", "completed", wait_s=6, run_s=2, delay_s=600)
    await _task(pool, "ann", "tool_execution", "cancelled")
    await _task(pool, "ann", "document_processing", "scheduled", delay_s=7200)
    two_days_ago = NOW - timedelta(days=2)
    await _task(pool, "ann", "chat_message", "completed", created=two_days_ago, wait_s=100)
    await _task(pool, "bob", "camera_analysis", "completed", wait_s=0.5, run_s=1)


async def stats_of(kernel: Kernel, who: dict[str, str], query: str = "") -> dict[str, Any]:
    async with api(kernel) as client:
        resp = await client.get(f"/api/stats{query}", headers=who)
        body: dict[str, Any] = await resp.json()
    assert resp.status == 200, body
    return body


class TestOwnStats:
    async def test_counts_rate_and_quantiles_of_the_users_window(
        self, stats_kernel: Kernel
    ) -> None:
        stats = await stats_of(stats_kernel, auth("ann"))
        assert (stats["user_id"], stats["window_s"], stats["total"]) == ("ann", 86400, 8)
        assert stats["by_status"] == {"cancelled": 1, "completed": 5, "failed": 1, "scheduled": 1}
        assert stats["success_rate"] == pytest.approx(5 / 6)
        # claimed: waits 1..6 s (the delayed one from its run_at); completed: 2, 10..40 s
        assert stats["wait_s"] == {"p50": 3.5, "p95": 5.75}
        assert stats["duration_s"] == {"p50": 20, "p95": 38}
        chat, tool = stats["by_type"]["chat_message"], stats["by_type"]["tool_execution"]
        assert (chat["total"], chat["success_rate"]) == (5, 0.8)
        assert chat["wait_s"] == {"p50": 3, "p95": 4.8}
        assert chat["duration_s"] == {"p50": 25, "p95": 38.5}
        assert (tool["by_status"], tool["success_rate"]) == ({"cancelled": 1, "completed": 1}, 1)
        document = stats["by_type"]["document_processing"]
        assert document == {
            "total": 1,
            "by_status": {"scheduled": 1},
            "success_rate": None,
            "wait_s": {"p50": None, "p95": None},
            "duration_s": {"p50": None, "p95": None},
        }
        assert set(stats["by_type"]) == {"chat_message", "tool_execution", "document_processing"}

    async def test_the_window_decides_which_tasks_count(self, stats_kernel: Kernel) -> None:
        week = await stats_of(stats_kernel, auth("ann"), "?window=7d")
        assert (week["total"], week["by_status"]["completed"]) == (9, 6)
        minutes = await stats_of(stats_kernel, auth("ann"), "?window=30m")
        assert (minutes["total"], minutes["by_status"], minutes["success_rate"]) == (0, {}, None)


class TestScopes:
    async def test_an_admin_sees_the_fleet_and_a_service_one_user(
        self, stats_kernel: Kernel
    ) -> None:
        fleet = await stats_of(stats_kernel, auth("root", "admin"), "?all=true")
        assert (fleet["user_id"], fleet["total"]) == (None, 9)
        assert fleet["by_type"]["camera_analysis"]["duration_s"]["p50"] == 1
        bob = await stats_of(stats_kernel, auth("svc", "service"), "?user_id=bob")
        assert (bob["user_id"], bob["total"]) == ("bob", 1)
        narrowed = await stats_of(stats_kernel, auth("root", "admin"), "?all=true&user_id=bob")
        assert (narrowed["user_id"], narrowed["total"]) == ("bob", 1)
        longest = await stats_of(stats_kernel, auth("ann"), "?window=365d")
        assert (longest["window_s"], longest["total"]) == (90 * 86400, 9)

    @pytest.mark.parametrize(
        ("scope", "query", "status", "code"),
        [
            ("user", "?all=true", 403, "forbidden"),
            ("service", "?all=true", 403, "forbidden"),
            ("user", "?user_id=bob", 403, "forbidden"),
            ("user", "?window=24 h", 422, "invalid_query"),
            ("user", "?window=soon", 422, "invalid_query"),
        ],
    )
    async def test_refusals(
        self, stats_kernel: Kernel, scope: Any, query: str, status: int, code: str
    ) -> None:
        async with api(stats_kernel) as client:
            resp = await client.get(f"/api/stats{query}", headers=auth("ann", scope))
            body = await resp.json()
        assert (resp.status, body["error"]["code"]) == (status, code)


class TestIndexes:
    async def test_a_window_is_read_through_indexes_not_the_whole_table(
        self, stats_kernel: Kernel
    ) -> None:
        # A month of older tasks, enough that reading all of them is the planner's worst plan.
        owner = await asyncpg.connect(stats_kernel.settings.database_url)  # the tables' owner
        try:
            await owner.execute(
                "INSERT INTO tasks (id, type, user_id, status, max_attempts, created_at,"
                " completed_at) SELECT gen_random_uuid(), 'chat_message', 'u' || (i % 500),"
                " 'completed', 3, t, t + interval '1 second' FROM generate_series(1, 50000) i,"
                " LATERAL (SELECT now() - interval '40 days' + i * interval '1 second') AS w(t)"
            )
            await owner.execute("ANALYZE tasks")
        finally:
            await owner.close()
        for sql, args, indexes in (
            (USER_STATS, (3600.0, "ann"), {"tasks_user_created"}),
            (FLEET_STATS, (3600.0,), {"tasks_finished", "tasks_unfinished", "tasks_scheduled"}),
        ):
            plan = "\n".join(r[0] for r in await stats_kernel.pool.fetch(f"EXPLAIN {sql}", *args))
            assert "Seq Scan on tasks" not in plan, plan
            assert all(i in plan for i in indexes), plan
        # (The older tasks are outside every window the other tests read.)


class TestCommandLine:
    async def test_taskfleet_stats_prints_the_same_figures(
        self, stats_kernel: Kernel, own_settings: Settings
    ) -> None:
        env = process_env(own_settings, COLUMNS="200")
        run = await asyncio.to_thread(_taskfleet, ["stats", "--json", "--user", "ann"], env)
        assert run.returncode == 0, run.stderr
        printed, answered = json.loads(run.stdout), await stats_of(stats_kernel, auth("ann"))
        since = [datetime.fromisoformat(x.pop("since")) for x in (printed, answered)]
        assert since[0] <= since[1]  # (read a moment earlier)
        assert printed == answered
        table = await asyncio.to_thread(_taskfleet, ["stats", "--window", "7d"], env)
        assert table.returncode == 0, table.stderr
        assert "camera_analysis" in table.stdout
        assert "87.5%" in table.stdout  # every user's week: 7 completed of 8 ended
        assert _taskfleet(["stats", "--window", "later"], env).returncode == 2


def _taskfleet(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskfleet_cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
