"""The console in a real browser (Debian's chromium, driven by Playwright) against real
processes: `taskfleet api` and a chat worker with the scripted model. Sign in both ways, see
tasks live, page through them, send a chat message and watch the reply stream, cancel a
running task and retry it, read the API reference offline. Each test writes its page's
screenshot to docs/console/ (docs/console.md shows them); the fixtures are in conftest.py."""

import asyncio
from functools import partial
from typing import Any
from uuid import uuid4

import pytest
from playwright.async_api import expect

from taskfleet.core.settings import Settings
from taskfleet.store.pool import create_pool
from taskfleet_cli.up import signin_link
from tests.conftest import JWT_SECRET, wait_for
from tests.e2e.console_harness import (
    Console,
    Fleet,
    api_ready,
    cancel,
    submit,
    task_status,
    user,
)

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

# Records each browser notification the page makes (a headless browser shows none).
NOTIFICATION_SPY = """
window.notified = [];
const Real = window.Notification;
window.Notification = class {
    static get permission() { return Real.permission; }
    static requestPermission() { return Real.requestPermission(); }
    constructor(title) { window.notified.push(title); }
    addEventListener() {}
};
"""


class TestSignIn:
    async def test_a_pasted_token_signs_in_and_the_tasks_arrive_live(
        self, fleet: Fleet, tabs: Any
    ) -> None:
        me = user()
        done = [await submit(fleet.base, me, f"earlier {i}") for i in range(22)]
        for task_id in done:
            await wait_for(partial(_is, fleet.base, me, task_id, "completed"), what="done")
        tab: Console = await tabs(viewport={"width": 1100, "height": 760})
        page = tab.page
        # `/` is the console; a bad token is refused there, with the field labelled
        await page.goto("/")
        assert page.url == f"{fleet.base}/console/"
        await expect(page.get_by_label("Bearer token")).to_be_focused()
        await expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
        await expect(page.get_by_role("navigation", name="Console")).to_be_hidden()
        await page.keyboard.press("Tab")
        await expect(page.get_by_role("button", name="Sign in")).to_be_focused()
        await tab.shot("signin")
        await page.get_by_label("Bearer token").fill("not-a-token")
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("alert")).to_contain_text("Not signed in")
        await tab.sign_in(me)
        await expect(page.locator("#live-state")).to_have_text("live")
        await expect(page.get_by_role("button", name="Notify me")).to_be_visible()
        rows = page.locator("table.tasks tbody tr")
        await expect(rows).to_have_count(20)  # a page; the 21st and 22nd are older
        # When a new task is submitted elsewhere, it arrives on top and a toast says it completed
        fresh = await submit(fleet.base, me, "a new one while you watch")
        await expect(rows.first).to_have_attribute("data-task", fresh)
        await expect(rows.first.locator(".chip")).to_have_text("completed")
        await expect(page.locator("#toasts")).to_contain_text(f"chat task {fresh[:8]} completed")
        await tab.shot("tasks")
        # Paging goes through the history with the API's cursors
        await page.get_by_role("button", name="Older").click()
        await expect(rows).to_have_count(2)  # the cursor was made before the new task came
        await expect(page.get_by_role("button", name="Older")).to_be_disabled()
        await page.get_by_role("button", name="Newer").click()
        await expect(rows).to_have_count(20)
        # And a filter that nothing matches empties the list
        await page.get_by_label("Status").select_option("failed")
        await page.get_by_role("button", name="Apply").click()
        await expect(page.get_by_role("status").filter(has_text="No tasks match")).to_be_visible()

    async def test_a_sign_in_link_works_once_and_its_code_is_never_logged(
        self, settings: Settings, fleet: Fleet, tabs: Any
    ) -> None:
        me = user()
        here = settings.model_copy(update={"api_port": int(fleet.base.rsplit(":", 1)[1])})
        pool = await create_pool(settings.database_url, size=1)
        try:
            link = await signin_link(here, JWT_SECRET, pool, user=me)
        finally:
            await pool.close()
        code = link.split("#code=", 1)[1]
        tab: Console = await tabs()
        await tab.page.goto(link)
        await expect(tab.page.locator("#who-name")).to_have_text(f"{me} (user)")
        assert tab.page.url == f"{fleet.base}/console/#/tasks"  # the code left the address
        # The same link in another browser finds it used
        other: Console = await tabs()
        await other.page.goto(link)
        await expect(other.page.get_by_role("alert")).to_contain_text("did not work")
        assert code not in fleet.output()


class TestOperators:
    async def test_an_admin_sees_one_users_history_or_every_users(
        self, fleet: Fleet, tabs: Any
    ) -> None:
        ann, bob = user(), user()
        slow = " ".join(f"s{i}" for i in range(300))  # unfinished for the whole test
        running = [await submit(fleet.base, who, slow) for who in (ann, bob)]
        finished = await submit(fleet.base, ann, "short")
        await wait_for(partial(_is, fleet.base, ann, finished, "completed"), what="done")
        tab: Console = await tabs(viewport={"width": 1100, "height": 700})
        page, rows = tab.page, tab.page.locator("table.tasks tbody tr")
        await tab.sign_in("ops", scope="admin")
        await expect(page.get_by_role("columnheader", name="User")).to_be_visible()
        await expect(rows).to_have_count(0)  # the admin's own tasks: none
        await page.get_by_label("User", exact=True).fill(ann)
        await page.get_by_role("button", name="Apply").click()
        await expect(rows).to_have_count(2)
        assert {await r.get_attribute("data-task") for r in await rows.all()} == {
            running[0],
            finished,
        }
        # Every user's history (GET /api/admin/tasks), the finished task too; then only
        # their unfinished ones
        await page.get_by_label("User", exact=True).fill("*")
        await page.get_by_role("button", name="Apply").click()
        for task_id in [*running, finished]:
            await expect(page.locator(f'tr[data-task="{task_id}"]')).to_be_visible()
        await page.get_by_label("Status").select_option("active")
        await page.get_by_role("button", name="Apply").click()
        for task_id in running:
            await expect(page.locator(f'tr[data-task="{task_id}"]')).to_be_visible()
        await expect(page.locator(f'tr[data-task="{finished}"]')).to_have_count(0)
        await page.get_by_label("Status").select_option("")
        # One user's active tasks: the API's status=active, paged like any listing
        await page.get_by_label("User", exact=True).fill(ann)
        await page.get_by_label("Status").select_option("active")
        await page.get_by_role("button", name="Apply").click()
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_have_attribute("data-task", running[0])
        for who, task_id in zip((ann, bob), running, strict=True):
            await cancel(fleet.base, who, task_id)


class TestChat:
    async def test_the_reply_streams_token_by_token_and_is_there_on_return(
        self, fleet: Fleet, tabs: Any
    ) -> None:
        me, chat = user(), f"chat-{uuid4().hex[:6]}"
        words = " ".join(f"word{i}" for i in range(14))
        tab: Console = await tabs(
            viewport={"width": 1000, "height": 700}, permissions=["notifications"]
        )
        page = tab.page
        await page.add_init_script(NOTIFICATION_SPY)  # the browser's notifications, recorded
        await tab.sign_in(me)
        await expect(page.get_by_role("button", name="Notify me")).to_have_count(0)  # allowed
        await page.goto(f"/console/#/chat/{chat}")
        await page.get_by_role("textbox", name="Message").fill(words)
        await page.get_by_role("textbox", name="Message").press("Enter")
        reply = page.locator(".msg.assistant .text")
        # Part of the reply is shown before the whole of it
        shown = await page.wait_for_function(
            """full => {
                const el = document.querySelector('.msg.assistant .text');
                const t = el ? el.textContent : '';
                return t.length > 0 && t.length < full.length && t;
            }""",
            arg=f"You said: {words}",
            polling=10,
        )
        assert f"You said: {words}".startswith(await shown.json_value())
        await expect(reply).to_have_text(f"You said: {words}")
        await expect(page.locator(".msg.assistant .meta")).to_have_text("assistant · completed")
        await expect(page.locator("#toasts")).to_contain_text("completed")
        task_id = await page.locator(".msg.assistant").get_attribute("data-task")
        notified = await page.evaluate("window.notified")
        assert notified == [f"taskfleet: chat task {str(task_id)[:8]} completed"]
        await tab.shot("chat")
        # Leave and come back: the same conversation
        await page.get_by_role("link", name="Tasks").click()
        await expect(page.get_by_role("heading", name="Tasks")).to_be_visible()
        await page.go_back()
        await expect(page.locator(".msg.user .text")).to_have_text(words)
        await expect(reply).to_have_text(f"You said: {words}")


class TestTaskDetail:
    async def test_cancel_a_running_task_then_retry_it(self, fleet: Fleet, tabs: Any) -> None:
        me = user()
        long = " ".join(f"w{i}" for i in range(400))  # 400 words at WORD_MS: about 24 s
        tab: Console = await tabs(viewport={"width": 1000, "height": 900})
        page = tab.page
        await tab.sign_in(me)
        task_id = await submit(fleet.base, me, long)
        await page.goto(f"/console/#/tasks/{task_id}")
        chip = page.locator("dl.facts .chip")
        await expect(chip).to_have_text("processing")
        await expect(page.locator("#reply")).to_contain_text("You said: w0")
        await page.get_by_role("button", name="Cancel").click()
        await expect(chip).to_have_text("cancelled")
        assert await task_status(fleet.base, me, task_id) == "cancelled"
        await expect(page.locator("#toasts")).to_contain_text("cancelled")
        await expect(page.get_by_role("button", name="Cancel")).to_be_disabled()
        await tab.shot("task")
        # Retry runs it again
        await page.get_by_role("button", name="Retry").click()
        await expect(page.get_by_role("status").filter(has_text="Queued again")).to_be_visible()
        await expect(chip).not_to_have_text("cancelled")
        assert await task_status(fleet.base, me, task_id) in ("queued", "processing")
        await page.get_by_role("button", name="Cancel").click()
        await expect(chip).to_have_text("cancelled")


class TestReconnect:
    async def test_when_the_api_restarts_the_reply_resumes_from_where_it_was(
        self, fleet: Fleet, tabs: Any
    ) -> None:
        me, chat = user(), f"chat-{uuid4().hex[:6]}"
        words = " ".join(f"r{i}" for i in range(90))  # about 5 s of streaming
        tab: Console = await tabs()
        page, sockets = tab.page, list[str]()
        page.on("websocket", lambda ws: sockets.append(ws.url))
        await tab.sign_in(me)
        await page.goto(f"/console/#/chat/{chat}")
        await page.get_by_role("textbox", name="Message").fill(words)
        await page.get_by_role("button", name="Send").click()
        reply = page.locator(".msg.assistant .text")
        await expect(reply).to_contain_text("You said: r0 r1")
        task_id = await page.locator(".msg.assistant").get_attribute("data-task")
        # When the API stops mid-reply (a deploy) and comes back
        await asyncio.to_thread(fleet.restart_api)
        await expect(page.locator("#live-state")).to_have_text("reconnecting")
        await wait_for(partial(api_ready, fleet.base), what="the API again", timeout_s=30)
        # Then the console reconnects with since= for the task and the reply completes
        await expect(page.locator("#live-state")).to_have_text("live")
        await expect(reply).to_have_text(f"You said: {words}")
        assert len(sockets) >= 2
        assert any(f"since={task_id}%3A" in url for url in sockets[1:]), sockets
        assert "token" not in "".join(sockets)  # the token went as a subprotocol
        # The browser's notes of the attempts made while the API was down are expected
        tab.errors[:] = [e for e in tab.errors if "ERR_CONNECTION_REFUSED" not in e]


class TestLayouts:
    async def test_a_phone_in_dark_mode(self, fleet: Fleet, tabs: Any) -> None:
        me = user()
        await submit(fleet.base, me, "from a phone")
        tab: Console = await tabs(viewport={"width": 390, "height": 844}, color_scheme="dark")
        await tab.sign_in(me)
        await expect(tab.page.locator("table.tasks tbody tr")).to_have_count(1)
        width = await tab.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390  # nothing wider than the screen
        background = await tab.page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(15, 20, 25)"
        await tab.shot("tasks-phone-dark")

    async def test_the_api_reference_renders_offline_under_the_policy(
        self, fleet: Fleet, tabs: Any
    ) -> None:
        tab: Console = await tabs(viewport={"width": 1100, "height": 900})
        elsewhere: list[str] = []
        tab.page.on(
            "request", lambda r: None if r.url.startswith(fleet.base) else elsewhere.append(r.url)
        )
        await tab.page.goto("/docs")
        await expect(tab.page.locator(".swagger-ui .info .title")).to_contain_text("taskfleet")
        await expect(tab.page.get_by_text("/api/chat/stream").first).to_be_visible()
        await tab.shot("docs", full_page=False)
        assert not [u for u in elsewhere if not u.startswith("data:")]


async def _is(base: str, user: str, task_id: str, status: str) -> bool:
    return await task_status(base, user, task_id) == status
