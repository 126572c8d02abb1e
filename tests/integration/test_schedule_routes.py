"""The schedule routes (docs/contract.md#schedules): what cannot tick is 422 naming its field,
a schedule is its owner's (row security; an admin lists everyone's), a change keeps what it
does not name, an Idempotency-Key gives the same schedule, and a tick over its user's quota
makes no task and says why."""

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest

from taskfleet.runtime.kernel import Kernel
from tests.conftest import wait_for
from tests.integration.api_client import api, auth, new_user
from tests.integration.schedule_helpers import (
    Runners,
    create,
    read,
    schedule_runners,
    ticks,
)


@pytest.fixture
async def runners(kernel: Kernel) -> AsyncIterator[Runners]:
    async with schedule_runners(kernel) as start:
        yield start


class TestRoutes:
    @pytest.mark.parametrize(
        ("fields", "field"),
        [
            ({"cron": "61 * * * *"}, "cron"),
            ({"cron": "* * *"}, "cron"),
            ({"cron": "0 0 30 2 *"}, "cron"),
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
            resp = await client.patch(path, json={"missed": "skip"}, headers=auth(user))
            skipping = await resp.json()
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
        assert (skipping["missed"], skipping["interval_s"]) == ("skip", 30)
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
