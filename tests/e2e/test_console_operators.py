"""The console's operator pages in a real browser against the real fleet (conftest.py's
`taskfleet api` and chat worker, plus a doc worker here): an admin replays a dead letter
and purges another after a confirmation, sees the queues and the live workers; a user
resumes an interrupted document from its checkpoint in the recovery view, then deletes it;
a task's timeline lists its transitions."""

import json
from collections.abc import Callable
from functools import partial
from typing import Any
from uuid import uuid4

import aio_pika
import aiohttp
import pytest
from playwright.async_api import expect

from taskfleet.core.constants import REASON_HEADER, TaskType
from taskfleet.core.messages import TaskMessage
from taskfleet.core.settings import Settings
from taskfleet.security.auth import issue_token
from tests.conftest import JWT_SECRET, Proc, process_env, wait_for
from tests.e2e.console_harness import Console, Fleet, submit, user
from tests.pdfs import text_pdf

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

PAGES, BATCH = 12, 2


async def dead_letter(settings: Settings, body: bytes, message_id: str) -> None:
    """A letter in chat_tasks.dlq, as the broker or a worker leaves one."""
    conn = await aio_pika.connect(settings.amqp_url)
    async with conn:
        channel = await conn.channel(publisher_confirms=True)
        await channel.default_exchange.publish(
            aio_pika.Message(
                body,
                message_id=message_id,
                headers={REASON_HEADER: "delivery_limit"},
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=settings.queue("chat_tasks.dlq"),
        )


async def _is(base: str, who: str, task_id: str, status: str) -> bool:
    """Whether the task is there with that status (a replayed letter's task is created
    when a worker claims its message: a 404 until then)."""
    headers = {"Authorization": f"Bearer {issue_token(JWT_SECRET, who)}"}
    async with (
        aiohttp.ClientSession(base, headers=headers) as http,
        http.get(f"/api/tasks/{task_id}") as r,
    ):
        return r.status == 200 and (await r.json())["status"] == status


class TestOperatorsPage:
    async def test_an_admin_replays_a_dead_letter_and_purges_another_after_confirming(
        self, settings: Settings, fleet: Fleet, tabs: Any
    ) -> None:
        me = user()
        lost = TaskMessage(
            task_id=uuid4(), type=TaskType.CHAT, user_id=me, chat_id="c1",
            payload={"content": "back from the dead"},
        )  # fmt: skip
        await dead_letter(settings, lost.dumps(), str(lost.task_id))
        tab: Console = await tabs(viewport={"width": 1100, "height": 900})
        page = tab.page
        await tab.sign_in("ops", scope="admin")
        await page.get_by_role("link", name="Operators").click()
        await expect(page.get_by_role("heading", name="Operators")).to_be_visible()
        await expect(page.locator('tr[data-queue="chat_tasks"]')).to_be_visible()
        await expect(page.locator("tr[data-worker] .chip.live").first).to_be_visible()
        await expect(page.locator("tr[data-worker]").first).to_contain_text("MiB")
        letter = page.locator(f'tr[data-letter="{lost.task_id}"]')
        await expect(letter).to_contain_text("delivery_limit")
        await tab.shot("operators")
        # Replay: the message becomes its task, which the chat worker completes
        await page.get_by_role("button", name="Replay chat_tasks").click()
        await expect(page.locator("main [role=status]").filter(has_text="Replayed")).to_be_visible()
        await expect(letter).to_have_count(0)
        task_id = str(lost.task_id)
        await wait_for(partial(_is, fleet.base, me, task_id, "completed"), what="the replayed task")
        # Purge asks first; "Keep them" keeps them
        junk = f"junk-{uuid4().hex[:8]}"
        await dead_letter(settings, b"not a task", junk)
        await page.get_by_role("button", name="Refresh").click()
        junk_row = page.locator(f'tr[data-letter="{junk}"]')
        await expect(junk_row).to_be_visible()
        await page.get_by_role("button", name="Purge chat_tasks").click()
        dialog = page.get_by_role("dialog")
        await expect(dialog).to_contain_text("for good")
        await expect(dialog.get_by_role("button", name="Keep them")).to_be_focused()
        await tab.shot("operators-purge", full_page=False)
        await dialog.get_by_role("button", name="Keep them").click()
        await expect(dialog).to_have_count(0)
        await expect(junk_row).to_be_visible()
        await page.get_by_role("button", name="Purge chat_tasks").click()
        await page.get_by_role("dialog").get_by_role("button", name="Purge for good").click()
        await expect(page.locator("main [role=status]").filter(has_text="Purged")).to_be_visible()
        await expect(junk_row).to_have_count(0)

    async def test_a_user_has_no_operators_link_and_the_page_says_why(
        self, fleet: Fleet, tabs: Any
    ) -> None:
        tab: Console = await tabs()
        await tab.sign_in(user())
        await expect(tab.page.get_by_role("link", name="Operators")).to_be_hidden()
        await tab.page.goto("/console/#/operators")
        await expect(tab.page.locator("main [role=status]")).to_have_text(
            "This page needs an admin token."
        )


class TestRecovery:
    async def test_resume_an_interrupted_document_from_its_checkpoint_then_delete_it(
        self, settings: Settings, fleet: Fleet, tabs: Any, spawn: Callable[..., Proc]
    ) -> None:
        me = user()
        env = process_env(settings, DOC_BATCH_PAGES=BATCH, DOC_PAGE_DELAY_MS=250)
        worker = spawn(["worker", "doc"], env, name="doc")
        pages = [f"Page {n}: the quarterly figures, line by line." for n in range(1, PAGES + 1)]
        headers = {"Authorization": f"Bearer {issue_token(JWT_SECRET, me)}"}
        async with aiohttp.ClientSession(fleet.base, headers=headers) as http:
            form = aiohttp.FormData()
            pdf = text_pdf(pages)
            form.add_field("file", pdf, filename="q.pdf", content_type="application/pdf")
            async with http.post("/api/documents", data=form) as r:
                assert r.status == 202, await r.text()
                task_id = str((await r.json())["task_id"])

            async def checkpointed() -> bool:
                async with http.get(f"/api/tasks/{task_id}") as r:
                    done = ((await r.json()).get("checkpoint") or {}).get("pages_done", 0)
                    return bool(done >= BATCH)

            await wait_for(checkpointed, timeout_s=60, what="a checkpointed batch")
            async with http.post(f"/api/tasks/{task_id}/cancel") as r:
                assert r.status == 202
        await wait_for(partial(_is, fleet.base, me, task_id, "cancelled"), what="cancelled")
        tab: Console = await tabs(viewport={"width": 1100, "height": 800})
        page = tab.page
        await tab.sign_in(me)
        await page.get_by_role("link", name="Recovery").click()
        row = page.locator(f'tr[data-task="{task_id}"]')
        await expect(row.locator(".chip")).to_have_text("cancelled")
        await expect(row).to_contain_text(f"of {PAGES} done")
        await tab.shot("recovery")
        await row.get_by_role("button", name="Resume").click()
        said = page.locator("main [role=status]")
        await expect(said).to_contain_text("resumed from its checkpoint")
        await expect(row.locator(".chip")).to_have_text("completed", timeout=60_000)
        # The worker went on after the checkpointed pages, not from page 1
        starts = [
            json.loads(line)
            for line in worker.output().splitlines()
            if '"document_parse_started"' in line and task_id in line
        ]
        assert [s["first_page"] > 1 for s in starts] == [False, True], starts
        # The task's timeline (in another tab) shows the interruption and the resumption
        other: Console = await tabs(viewport={"width": 1000, "height": 1100})
        await other.sign_in(me)
        await other.page.goto(f"/console/#/tasks/{task_id}")
        timeline = other.page.get_by_role("list", name="Timeline")
        steps = ["created queued", "queued → processing", "processing → cancelled",
                 "cancelled → queued", "queued → processing", "processing → completed"]  # fmt: skip
        await expect(timeline.locator("li")).to_have_count(len(steps))
        for item, step in zip(await timeline.locator("li").all(), steps, strict=True):
            await expect(item).to_contain_text(step)
        await other.shot("task-timeline")
        # Delete asks first, then the task is gone
        await row.get_by_role("button", name="Delete").click()
        await page.get_by_role("dialog").get_by_role("button", name="Delete for good").click()
        await expect(row).to_have_count(0)
        await expect(page.locator("main [role=status]")).to_contain_text("deleted")
        async with (
            aiohttp.ClientSession(fleet.base, headers=headers) as http,
            http.get(f"/api/tasks/{task_id}") as r,
        ):
            assert r.status == 404

    async def test_a_failed_task_without_checkpoint_restarts_and_cannot_resume(
        self, fleet: Fleet, tabs: Any
    ) -> None:
        me = user()
        long = " ".join(f"w{i}" for i in range(300))
        task_id = await submit(fleet.base, me, long)
        await wait_for(partial(_is, fleet.base, me, task_id, "processing"), what="running")
        headers = {"Authorization": f"Bearer {issue_token(JWT_SECRET, me)}"}
        async with (
            aiohttp.ClientSession(fleet.base, headers=headers) as http,
            http.post(f"/api/tasks/{task_id}/cancel") as r,
        ):
            assert r.status == 202
        await wait_for(partial(_is, fleet.base, me, task_id, "cancelled"), what="cancelled")
        tab: Console = await tabs()
        page = tab.page
        await tab.sign_in(me)
        # Its page offers Restart, not Resume: there is no checkpoint to go on from
        await page.goto(f"/console/#/tasks/{task_id}")
        await expect(page.locator("dl.facts .chip")).to_have_text("cancelled")
        await expect(page.get_by_role("button", name="Restart")).to_be_enabled()
        await expect(page.get_by_role("button", name="Resume")).to_be_disabled()
        await page.goto("/console/#/recovery")
        row = page.locator(f'tr[data-task="{task_id}"]')
        await expect(row).to_contain_text("none")
        await expect(row.get_by_role("button", name="Resume")).to_be_disabled()
        await row.get_by_role("button", name="Restart").click()
        await expect(page.locator("main [role=status]")).to_contain_text("restarted from scratch")
        await expect(row.locator(".chip")).not_to_have_text("cancelled")
        await expect(row.get_by_role("button", name="Restart")).to_be_disabled()
        async with (
            aiohttp.ClientSession(fleet.base, headers=headers) as http,
            http.post(f"/api/tasks/{task_id}/cancel") as r,
        ):
            assert r.status in (202, 409)
