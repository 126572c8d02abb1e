"""Recurring tasks through the API (docs/scheduling.md#schedules): a schedule's runs are tasks
with its `schedule_id`, made at its ticks by the one schedule runner of the fleet, exactly
once per tick with two API replicas each running a runner, and across a runner's restart; a
paused schedule makes nothing; missed ticks are skipped or run once."""

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from taskfleet.data.schedule_runner import ScheduleRunner
from taskfleet.runtime.kernel import Kernel, open_kernel
from tests.conftest import wait_for
from tests.integration.api_client import api, auth, new_user

Client = Any
Runners = Callable[..., Awaitable[str]]


@pytest.fixture
async def runners(kernel: Kernel) -> AsyncIterator[Runners]:
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


class TestRoutes:
    @pytest.mark.parametrize(
        ("fields", "field"),
        [
            ({"cron": "61 * * * *"}, "cron"),
            ({"cron": "* * *"}, "cron"),
            ({"cron": "0 9 * * *", "timezone": "Mars/Olympus_Mons"}, "timezone"),
            ({"cron": "0 9 * * *", "interval_s": 60}, "cron"),
            ({}, "cron"),
        ],
    )
    async def test_a_schedule_that_cannot_tick_is_422_naming_the_field(
        self, kernel: Kernel, fields: dict[str, Any], field: str
    ) -> None:
        async with api(kernel) as client:
            resp = await client.post(
                "/api/schedules",
                json={"task": {"chat_id": "s", "content": "x"}, **fields},
                headers=auth(new_user()),
            )
            body = await resp.json()
        assert resp.status == 422, body
        assert body["error"]["code"] == "invalid_schedule"
        assert body["error"]["details"][0]["loc"] == ["body", field]

    @pytest.mark.parametrize(
        "body",
        [
            {"interval_s": 0, "task": {"chat_id": "s", "content": "x"}},
            {"interval_s": 1.5, "task": {"chat_id": "s", "content": "x"}},
            {"interval_s": 60, "task": {"chat_id": "s", "content": "x", "type": "camera"}},
            {"interval_s": 60},
            {"interval_s": 60, "task": {"chat_id": "s", "content": "x"}, "missed": "all"},
            {"interval_s": 60, "task": {"chat_id": "s", "content": "x"}, "timezone": "../x"},
        ],
    )
    async def test_a_body_off_the_schema_is_422(self, kernel: Kernel, body: Any) -> None:
        async with api(kernel) as client:
            resp = await client.post("/api/schedules", json=body, headers=auth(new_user()))
            answer = await resp.json()
        assert resp.status == 422, answer
        assert answer["error"]["code"] == "invalid_request"

    async def test_owners_see_their_own_and_admins_everyones(
        self, kernel: Kernel, runners: Runners
    ) -> None:
        alice, bob = new_user(), new_user()
        async with api(kernel) as client:
            mine = await create(client, alice, cron="0 9 * * 1-5", timezone="Europe/Paris")
            theirs = await create(client, bob, interval_s=60)
            path = f"/api/schedules/{mine['id']}"
            for method in ("GET", "PATCH", "DELETE"):
                resp = await client.request(method, path, json={}, headers=auth(bob))
                assert resp.status == 404, (method, await resp.text())
            listed = await (await client.get("/api/schedules", headers=auth(alice))).json()
            everyone = await (
                await client.get("/api/schedules", headers=auth("op", "admin"))
            ).json()
            seen = {
                "for_bob": await client.get(
                    "/api/schedules", params={"user_id": bob}, headers=auth("backend", "service")
                ),
                "hidden": await client.get(
                    "/api/schedules", params={"user_id": bob}, headers=auth(alice)
                ),
                "via_service": await client.get(path, headers=auth("backend", "service")),
                "made": await client.post(
                    "/api/schedules",
                    json={
                        "user_id": bob,
                        "interval_s": 5,
                        "task": {"chat_id": "s", "content": "x"},
                    },
                    headers=auth("backend", "service"),
                ),
                "refused": await client.post(
                    "/api/schedules",
                    json={
                        "user_id": bob,
                        "interval_s": 5,
                        "task": {"chat_id": "s", "content": "x"},
                    },
                    headers=auth(alice),
                ),
                "gone": await client.delete(path, headers=auth(alice)),
                "again": await client.get(path, headers=auth(alice)),
            }
            status = {name: resp.status for name, resp in seen.items()}
            bodies = {name: await resp.read() for name, resp in seen.items()}
        assert [s["id"] for s in listed["schedules"]] == [mine["id"]]
        assert {mine["id"], theirs["id"]} <= {s["id"] for s in everyone["schedules"]}
        assert [s["id"] for s in json.loads(bodies["for_bob"])["schedules"]] == [theirs["id"]]
        assert json.loads(bodies["via_service"])["user_id"] == alice
        assert json.loads(bodies["made"])["user_id"] == bob
        assert status == {"for_bob": 200, "hidden": 404, "via_service": 200, "made": 201,
                          "refused": 403, "gone": 204, "again": 404}  # fmt: skip
        # Weekdays at 09:00 in Paris: 08:00 UTC in winter, 07:00 in summer.
        assert datetime.fromisoformat(mine["next_run_at"]).hour in (7, 8)

    async def test_a_change_keeps_what_it_does_not_name(self, kernel: Kernel) -> None:
        user = new_user()
        async with api(kernel) as client:
            schedule = await create(client, user, cron="0 9 * * *", missed="run_once")
            path = f"/api/schedules/{schedule['id']}"
            resp = await client.patch(path, json={"interval_s": 30}, headers=auth(user))
            to_interval = await resp.json()
            resp = await client.patch(
                path, json={"task": {"chat_id": "t", "content": "new"}}, headers=auth(user)
            )
            new_task = await resp.json()
            resp = await client.patch(path, json={"cron": "nope"}, headers=auth(user))
            bad = await resp.json()
            assert resp.status == 422, bad
            resp = await client.patch(
                path, json={"cron": "* * * * *", "interval_s": 5}, headers=auth(user)
            )
            both = resp.status
            unchanged = await read(client, user, schedule["id"])
        assert (to_interval["cron"], to_interval["interval_s"]) == (None, 30)
        assert to_interval["missed"] == "run_once"
        assert to_interval["next_run_at"] != schedule["next_run_at"]
        assert new_task["task"] == {"type": "chat_message", "chat_id": "t", "content": "new",
                                    "metadata": None}  # fmt: skip
        assert new_task["next_run_at"] == to_interval["next_run_at"]  # same recurrence
        assert both == 422
        assert unchanged["interval_s"] == 30

    async def test_the_same_idempotency_key_gives_the_same_schedule(self, kernel: Kernel) -> None:
        user, key = new_user(), {"Idempotency-Key": "daily-report"}
        body = {"cron": "0 6 * * *", "task": {"chat_id": "s", "content": "report"}}
        async with api(kernel) as client:
            first = await client.post("/api/schedules", json=body, headers=auth(user) | key)
            second = await client.post("/api/schedules", json=body, headers=auth(user) | key)
            other = await client.post(
                "/api/schedules", json={**body, "cron": "0 7 * * *"}, headers=auth(user) | key
            )
            listed = await (await client.get("/api/schedules", headers=auth(user))).json()
            same = (await first.json())["id"] == (await second.json())["id"]
        assert (first.status, second.status, other.status) == (201, 201, 409)
        assert same
        assert len(listed["schedules"]) == 1

    async def test_a_tick_over_the_users_quota_makes_no_task_and_says_why(
        self, kernel: Kernel, runners: Runners
    ) -> None:
        user = new_user()
        # One task waiting at most: the first run (no worker takes it) fills it.
        quota = {"max_queued_per_user": 1}
        await runners(replace(kernel, settings=kernel.settings.model_copy(update=quota)))
        async with api(kernel) as client:
            schedule = await create(client, user, interval_s=1)

            async def refused() -> Any:
                body = await read(client, user, schedule["id"])
                return body if body["last_error"] else None

            after = await wait_for(refused, what="a refused tick")
        assert after["last_error"].startswith("rate_limited")
        assert len(await ticks(kernel, schedule["id"])) == 1  # the first, within the quota
