"""Priorities through the API (docs/priorities.md): a task's level from its `priority` or its
token's `tier`, on every route, and a worker that takes the higher levels first without
starving the lower. That every message keeps its level: test_priority_levels.py."""

import argparse
from functools import partial
from uuid import UUID

import pytest

from taskfleet.client import Taskfleet
from taskfleet.core.constants import QUEUES, Priority, TaskType, level_queue
from taskfleet.core.settings import Settings
from taskfleet.path.levels import PASS_LIMIT
from taskfleet.runtime.kernel import Kernel
from taskfleet.security.auth import issue_token
from taskfleet_cli.submit import submit as cli_submit
from tests.camera_images import frame
from tests.conftest import JWT_SECRET, wait_for
from tests.integration.api_client import api, auth, new_user, token
from tests.integration.conftest import ConsumerFactory, wait_status
from tests.integration.priority_helpers import (
    chat,
    one_ready,
    ready,
    ready_to_be,
    recorder,
)


class TestOrder:
    async def test_a_high_task_overtakes_a_backlog_of_normal_ones(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        user, ran = new_user(), list[UUID]()
        async with api(kernel) as client:
            backlog = [await chat(client, auth(user)) for _ in range(30)]
            await ready_to_be(kernel, {Priority.NORMAL: 30})
            high = await chat(client, auth(user), priority="high")
            await ready_to_be(kernel, {Priority.HIGH: 1})
        await consume(recorder(ran), concurrency=1)
        await wait_status(kernel, backlog[-1]["task_id"], "completed")
        mine = {UUID(t["task_id"]) for t in [*backlog, high]}
        order = [t for t in ran if t in mine]
        # Without levels it would run last, behind the 30; a slot or two may have gone to
        # normal tasks that reached the worker first.
        assert order.index(UUID(high["task_id"])) <= 2
        assert len(order) == 31

    async def test_a_low_task_still_runs_while_high_ones_keep_arriving(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        user, ran = new_user(), list[UUID]()
        async with api(kernel) as client:
            low = await chat(client, auth(user), priority="low")
            highs = [await chat(client, auth(user), priority="high") for _ in range(20)]
            await ready_to_be(kernel, {Priority.HIGH: 20, Priority.LOW: 1})
            await consume(recorder(ran), concurrency=1)
            # And more high tasks keep arriving while the worker drains them.
            highs += [await chat(client, auth(user), priority="high") for _ in range(10)]
            await wait_status(kernel, low["task_id"], "completed")
            high_left = await ready(kernel, Priority.HIGH)
        for accepted in highs:
            await wait_status(kernel, accepted["task_id"], "completed")
        mine = {UUID(t["task_id"]) for t in [*highs, low]}
        order = [t for t in ran if t in mine]
        # Strict priority would run it last; it is passed over at most PASS_LIMIT times.
        assert order.index(UUID(low["task_id"])) <= PASS_LIMIT + 1
        assert high_left > 0  # it ran while high tasks still waited


class TestDefaultAndOverride:
    async def test_the_tier_claim_gives_the_default_and_priority_overrides_it(
        self, kernel: Kernel, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PRIORITY_TIERS", "paid:high, free:low")
        user = new_user()

        def tiered(tier: str | None) -> dict[str, str]:
            return {"Authorization": f"Bearer {issue_token(JWT_SECRET, user, tier=tier)}"}

        async with api(kernel) as client:
            paid = await chat(client, tiered("paid"))
            free = await chat(client, tiered("free"))
            other = await chat(client, tiered("trial"))
            none = await chat(client, auth(user))
            chosen = await chat(client, tiered("paid"), priority="low")
            levels = []
            for accepted in (paid, free, other, none, chosen):
                resp = await client.get(f"/api/tasks/{accepted['task_id']}", headers=auth(user))
                levels.append((await resp.json())["priority"])
        assert levels == ["high", "low", "normal", "normal", "low"]
        # Each message went to its level's queue.
        await ready_to_be(kernel, {Priority.HIGH: 1, Priority.NORMAL: 2, Priority.LOW: 2})

    async def test_a_minted_token_carries_the_tier_it_was_asked_for(
        self, kernel: Kernel, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PRIORITY_TIERS", "paid:high")
        user = new_user()
        async with api(kernel) as client:
            resp = await client.post(
                "/api/tokens",
                json={"user_id": user, "tier": "paid"},
                headers=auth("backend", "service"),
            )
            minted = (await resp.json())["token"]
            accepted = await chat(client, {"Authorization": f"Bearer {minted}"})
            resp = await client.get(f"/api/tasks/{accepted['task_id']}", headers=auth(user))
            assert (await resp.json())["priority"] == "high"

    async def test_a_bad_priority_is_refused_with_its_reason(self, kernel: Kernel) -> None:
        user = new_user()
        async with api(kernel) as client:
            resp = await client.post(
                "/api/chat/stream",
                json={"chat_id": "p", "content": "hi", "priority": "urgent"},
                headers=auth(user),
            )
            body = await resp.json()
            assert resp.status == 422, body
            assert "priority" in str(body["error"])
            frame = await client.post(
                "/api/cameras/cam/frames?priority=urgent", data=b"x", headers=auth(user)
            )
            assert frame.status == 422, await frame.text()
            assert "priority" in str((await frame.json())["error"])
        assert await ready(kernel, Priority.NORMAL) == 0


class TestListingAndCli:
    async def test_listings_filter_by_priority_and_the_cli_submits_one(
        self, kernel: Kernel
    ) -> None:
        user = new_user()
        async with api(kernel) as client:
            high = await chat(client, auth(user), priority="high")
            await chat(client, auth(user))
            args = argparse.Namespace(
                url=str(client.make_url("")), token=token(user), text="from the cli",
                chat="cli", wait=False, timeout=30.0, priority="low",
            )  # fmt: skip
            assert await cli_submit(Settings(), args) == 0
            by_level = {}
            for level in ("high", "low"):
                resp = await client.get(f"/api/tasks?priority={level}", headers=auth(user))
                by_level[level] = (await resp.json())["tasks"]
            bad = await client.get("/api/tasks?priority=urgent", headers=auth(user))
            assert bad.status == 422
        assert [t["id"] for t in by_level["high"]] == [high["task_id"]]
        assert [t["input"]["content"] for t in by_level["low"]] == ["from the cli"]


class TestEveryRoute:
    async def test_documents_frames_batches_and_the_client_take_a_priority(
        self, kernel: Kernel
    ) -> None:
        user = new_user()
        async with api(kernel) as client, Taskfleet(str(client.make_url("")), token(user)) as tf:
            chat_task = await tf.submit_chat("p", "hi", priority="high")
            doc = await tf.upload_document(b"# notes", filename="a.md", priority="low")
            shot = await tf.submit_frame("cam", frame(), priority="high")
            batch = await tf.submit_batch([("p", "one"), ("p", "two")], priority="low")
            ids = [chat_task.task_id, doc.task_id, shot.task_id, *batch.task_ids]
            levels = [(await tf.get(i)).priority for i in ids]
        assert levels == ["high", "low", "high", "low", "low"]
        doc_queue, frame_queue = (QUEUES[t] for t in (TaskType.DOCUMENT, TaskType.CAMERA))
        for spec, level in ((doc_queue, Priority.LOW), (frame_queue, Priority.HIGH)):
            name = kernel.settings.queue(level_queue(spec.name, level))
            await wait_for(partial(one_ready, kernel, name), what=f"a message in {name}")
        await ready_to_be(kernel, {Priority.HIGH: 1, Priority.LOW: 2})
