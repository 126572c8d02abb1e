"""Recurring tasks through the API (docs/scheduling.md#schedules): a schedule's runs are tasks
with its `schedule_id`, made at its ticks by the one schedule runner of the fleet, exactly
once per tick with two API replicas each running a runner, and across a runner's restart; a
paused schedule makes nothing; missed ticks are skipped or run once."""

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from taskfleet.data.schedule_runner import BATCH, SCHEDULE_LOCK, ScheduleRunner
from taskfleet.runtime.kernel import Kernel, open_kernel
from tests.conftest import wait_for
from tests.integration.api_client import api, auth, new_user
from tests.integration.schedule_helpers import (
    Runners,
    consecutive,
    create,
    read,
    runs_reach,
    schedule_runners,
    tick_of,
    ticks,
)


@pytest.fixture
async def runners(kernel: Kernel) -> AsyncIterator[Runners]:
    async with schedule_runners(kernel) as start:
        yield start


class TestRuns:
    async def test_an_interval_schedule_runs_each_tick_once_with_two_replicas(
        self, kernel: Kernel, runners: Runners
    ) -> None:
        user = new_user()
        async with open_kernel(kernel.settings, name="replica-2") as other:
            await runners()
            await runners(other)
            async with api(kernel) as client, api(other) as client2:
                schedule = await create(client, user, interval_s=1)
                found = await runs_reach(kernel, schedule["id"], 4)
                now = await read(client2, user, schedule["id"])
                resp = await client2.get(f"/api/tasks/{now['last_task_id']}", headers=auth(user))
                run = await resp.json()
        created = datetime.fromisoformat(schedule["created_at"])
        assert found[0] - created < timedelta(seconds=1.5)  # the first tick: one interval on
        assert len(set(found)) == len(found)
        assert consecutive(found, 1)
        assert datetime.fromisoformat(now["last_run_at"]) >= found[3]
        assert datetime.fromisoformat(now["next_run_at"]) - datetime.fromisoformat(
            now["last_run_at"]
        ) == timedelta(seconds=1)
        assert (run["schedule_id"], run["type"], run["input"]) == (
            schedule["id"], "chat_message", {"content": "tick"},
        )  # fmt: skip
        rows = await kernel.pool.fetch(
            "SELECT created_at, idempotency_key FROM tasks WHERE schedule_id = $1",
            schedule["id"],
        )
        assert all(r["created_at"] >= tick_of(r["idempotency_key"]) for r in rows)  # not early

    async def test_a_restarted_runner_carries_on_without_a_lost_or_doubled_tick(
        self, kernel: Kernel, runners: Runners
    ) -> None:
        user = new_user()
        first = await runners()
        async with api(kernel) as client:
            schedule = await create(client, user, interval_s=1)
            await runs_reach(kernel, schedule["id"], 2)
            await kernel.supervisor.stop(first)  # its session ends: the lock is free
            await runners()
            found = await runs_reach(kernel, schedule["id"], 5)
        assert len(set(found)) == len(found)
        assert consecutive(found, 1)

    async def test_a_cron_schedule_with_seconds_runs_at_its_ticks_in_its_zone(
        self, kernel: Kernel, runners: Runners
    ) -> None:
        user = new_user()
        await runners()
        async with api(kernel) as client:
            schedule = await create(
                client, user, cron="* * * * * */2", timezone="Asia/Kolkata", missed="run_once"
            )
            found = await runs_reach(kernel, schedule["id"], 3)
            now = await read(client, user, schedule["id"])
        assert (schedule["cron"], schedule["timezone"], schedule["missed"]) == (
            "* * * * * */2", "Asia/Kolkata", "run_once",
        )  # fmt: skip
        assert all(t.second % 2 == 0 and t.microsecond == 0 for t in found)
        assert len(set(found)) == len(found)
        assert consecutive(found, 2)
        assert datetime.fromisoformat(now["next_run_at"]).second % 2 == 0

    async def test_two_passes_at_once_without_the_lock_still_make_one_task_per_tick(
        self, kernel: Kernel
    ) -> None:
        # The lock keeps a second runner out; without it, the row lock and the re-read of
        # the schedule still let one transaction make the tick's task.
        user, runner = new_user(), ScheduleRunner(kernel, grace_s=3600)
        async with api(kernel) as client:
            schedule = await create(client, user, interval_s=3600)
        await kernel.pool.execute(
            "UPDATE schedules SET next_run_at = now() - interval '1 second' WHERE id = $1",
            schedule["id"],
        )
        async with kernel.pool.acquire() as a, kernel.pool.acquire() as b:
            await asyncio.gather(runner.fire_due(a), runner.fire_due(b))
        assert len(await ticks(kernel, schedule["id"])) == 1


class TestPauseAndMissed:
    async def test_a_paused_schedule_makes_nothing_until_resumed(
        self, kernel: Kernel, runners: Runners
    ) -> None:
        user = new_user()
        await runners()
        async with api(kernel) as client:
            paused = await create(client, user, interval_s=1, enabled=False)
            going = await create(client, user, interval_s=1)
            await runs_reach(kernel, going["id"], 2)
            resp = await client.patch(
                f"/api/schedules/{going['id']}", json={"enabled": False}, headers=auth(user)
            )
            stopped = await resp.json()
            assert resp.status == 200, stopped
            made = len(await ticks(kernel, going["id"]))
            # A third schedule's runs show that the runner went on past both.
            witness = await create(client, user, interval_s=1)
            await runs_reach(kernel, witness["id"], 3)
            assert await ticks(kernel, paused["id"]) == []
            assert len(await ticks(kernel, going["id"])) == made
            resp = await client.patch(
                f"/api/schedules/{paused['id']}", json={"enabled": True}, headers=auth(user)
            )
            resumed = await resp.json()
            await runs_reach(kernel, paused["id"], 1)
        assert (paused["enabled"], paused["next_run_at"]) == (False, None)
        assert (stopped["enabled"], stopped["next_run_at"]) == (False, None)
        assert resumed["enabled"]
        assert resumed["next_run_at"] is not None

    @pytest.mark.parametrize(("missed", "runs"), [("skip", 0), ("run_once", 1)])
    async def test_ticks_missed_while_no_runner_ran(
        self, kernel: Kernel, runners: Runners, missed: str, runs: int
    ) -> None:
        # Given an hourly schedule whose last three ticks fell while no runner ran (2.5 h ago,
        # 1.5 h ago, 0.5 h ago: all later than the grace),
        user = new_user()
        async with api(kernel) as client:
            schedule = await create(client, user, interval_s=3600, missed=missed)
            due = await kernel.pool.fetchval(
                "UPDATE schedules SET next_run_at = now() - interval '9000 seconds'"
                " WHERE id = $1 RETURNING next_run_at",
                schedule["id"],
            )
            # when a runner starts,
            await runners(grace_s=60)

            async def moved_on() -> Any:
                body = await read(client, user, schedule["id"])
                return body if datetime.fromisoformat(body["next_run_at"]) > due else None

            after = await wait_for(moved_on, what="the schedule to move on")
        # then skip drops them and run_once makes one run, of the latest; either way the
        # next tick is the first still to come, on the same grid.
        found = await ticks(kernel, schedule["id"])
        assert len(found) == runs
        assert datetime.fromisoformat(after["next_run_at"]) == due + timedelta(hours=3)
        if runs:
            assert found == [due + timedelta(hours=2)]
            assert datetime.fromisoformat(after["last_run_at"]) == found[0]
        else:
            assert after["last_run_at"] is None
            assert after["last_task_id"] is None

    async def test_a_schedule_that_can_no_longer_tick_is_paused_saying_why(
        self, kernel: Kernel
    ) -> None:
        # A zone this machine's tzdata no longer has (the API refuses unknown ones).
        user = new_user()
        async with api(kernel) as client:
            schedule = await create(client, user, cron="0 9 * * *", timezone="Europe/Paris")
            await kernel.pool.execute(
                "UPDATE schedules SET timezone = 'Gone/Zone', next_run_at = now() WHERE id = $1",
                schedule["id"],
            )
            async with kernel.pool.acquire() as conn:
                await ScheduleRunner(kernel).fire_due(conn)
            after = await read(client, user, schedule["id"])
        assert (after["enabled"], after["next_run_at"]) == (False, None)
        assert after["last_error"].startswith("invalid_schedule: unknown time zone")
        assert await ticks(kernel, schedule["id"]) == []

    async def test_a_runner_whose_session_is_killed_steps_down_and_leads_again(
        self, kernel: Kernel, runners: Runners
    ) -> None:
        user = new_user()
        await runners()
        async with api(kernel) as client:
            schedule = await create(client, user, interval_s=1)
            await runs_reach(kernel, schedule["id"], 2)
            admin = await asyncpg.connect(kernel.settings.database_url)
            try:  # the lock holder's session, as a database restart or a cut link ends it
                killed = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE"
                    " locktype = 'advisory' AND objid::bigint = $1 AND granted AND database ="
                    " (SELECT oid FROM pg_database WHERE datname = current_database())",
                    SCHEDULE_LOCK,
                )
            finally:
                await admin.close()
            found = await runs_reach(kernel, schedule["id"], 5)
        assert killed == 1
        assert len(set(found)) == len(found)
        assert consecutive(found, 1)

    async def test_a_tick_set_back_after_its_run_makes_no_second_task(self, kernel: Kernel) -> None:
        # The tick's idempotency key is the last guard: even a schedule moved back to a tick
        # that already ran (which no runner does) makes no second task of it.
        user, runner = new_user(), ScheduleRunner(kernel, grace_s=3600)
        async with api(kernel) as client:
            schedule = await create(client, user, interval_s=3600)
            back = "UPDATE schedules SET next_run_at = $2 WHERE id = $1"
            tick = await kernel.pool.fetchval(
                "UPDATE schedules SET next_run_at = now() - interval '1 second' WHERE id = $1"
                " RETURNING next_run_at",
                schedule["id"],
            )
            async with kernel.pool.acquire() as conn:
                await runner.fire_due(conn)
                first = await read(client, user, schedule["id"])
                await conn.execute(back, schedule["id"], tick)
                await runner.fire_due(conn)
            again = await read(client, user, schedule["id"])
        assert await ticks(kernel, schedule["id"]) == [tick]
        assert again["last_task_id"] == first["last_task_id"]

    async def test_more_schedules_due_at_once_than_a_pass_takes(
        self, kernel: Kernel, runners: Runners
    ) -> None:
        n = BATCH + 20
        ids = await kernel.pool.fetch(
            "INSERT INTO schedules (id, user_id, interval_s, task, next_run_at)"
            " SELECT gen_random_uuid(), 'many-' || i, 3600, $2::jsonb, now()"
            " FROM generate_series(1, $1) i RETURNING id",
            n,
            {"type": "chat_message", "chat_id": "m", "content": "tick"},
        )
        await runners()

        async def all_ran() -> bool:
            made = await kernel.pool.fetchval(
                "SELECT count(*) FROM tasks WHERE schedule_id = ANY($1::uuid[])",
                [r["id"] for r in ids],
            )
            return bool(made == n)

        await wait_for(all_ran, what=f"{n} runs")

    async def test_ticks_that_fell_while_no_runner_ran_within_the_grace_all_run(
        self, kernel: Kernel, runners: Runners
    ) -> None:
        # Given a 1 s schedule whose last ticks fell during a 3.5 s outage of every runner,
        user = new_user()
        async with api(kernel) as client:
            schedule = await create(client, user, interval_s=1)
            due = await kernel.pool.fetchval(
                "UPDATE schedules SET next_run_at = now() - interval '3.5 seconds'"
                " WHERE id = $1 RETURNING next_run_at",
                schedule["id"],
            )
            # when a runner comes back, each of them runs, late, and the schedule goes on.
            await runners()
            found = await runs_reach(kernel, schedule["id"], 6)
        assert found[:4] == [due + timedelta(seconds=s) for s in range(4)]
        assert len(set(found)) == len(found)
        assert consecutive(found, 1)
