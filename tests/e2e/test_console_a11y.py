"""The console's pages pass axe-core's WCAG 2.1 A and AA rules (labels, names, contrast,
landmarks, ...) in light and in dark, at a desktop's width and a phone's.

axe-core is vendored for the tests alone (tests/e2e/vendor/axe-core/: axe.min.js of the npm
package axe-core@4.14.1, with its MPL-2.0 licence). Injecting it needs a context that
bypasses the Content-Security-Policy; the other console tests run under the policy."""

from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from playwright.async_api import Page, expect

from tests.e2e.console_harness import Console, Fleet, submit, user

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
RUN = """async () => {
    const tags = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"];
    const result = await axe.run(document, { runOnly: { type: "tag", values: tags } });
    return result.violations.map((v) =>
        `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
}"""


async def violations(page: Page) -> list[str]:
    if not await page.evaluate("typeof axe !== 'undefined'"):
        await page.add_script_tag(path=str(AXE))
    found: list[str] = await page.evaluate(RUN)
    return found


@pytest.mark.parametrize(
    ("scheme", "width"), [("light", 1100), ("dark", 1100), ("light", 390), ("dark", 390)]
)
async def test_every_page_passes_the_wcag_rules(
    fleet: Fleet, tabs: Any, scheme: str, width: int
) -> None:
    me, chat = user(), f"chat-{uuid4().hex[:6]}"
    task_id = await submit(fleet.base, me, "check me", chat=chat)
    tab: Console = await tabs(
        viewport={"width": width, "height": 800}, color_scheme=scheme, bypass_csp=True
    )
    page = tab.page
    await page.goto("/")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    found = {"sign-in": await violations(page)}
    await tab.sign_in(me)
    await expect(page.locator("table.tasks tbody tr .chip")).to_have_text("completed")
    found["tasks"] = await violations(page)
    await page.goto(f"/console/#/tasks/{task_id}")
    await expect(page.locator("#reply")).to_have_text("You said: check me")
    found["task"] = await violations(page)
    await page.goto(f"/console/#/chat/{chat}")
    await expect(page.locator(".msg.assistant .meta")).to_have_text("assistant · completed")
    found["chat"] = await violations(page)
    await page.goto("/console/#/documents")
    await expect(page.get_by_role("heading", name="Documents")).to_be_visible()
    await expect(page.get_by_text("No documents yet: upload one.")).to_be_visible()
    found["documents"] = await violations(page)
    tab.expected.append("status of 404")  # a camera without frames is not found: said so
    await page.goto("/console/#/cameras/door")
    await expect(page.get_by_text("No analysed frames yet.")).to_be_visible()
    found["cameras"] = await violations(page)
    await page.goto("/console/#/recovery")
    await expect(page.get_by_role("heading", name="Recovery")).to_be_visible()
    await expect(page.locator("main [role=status]")).to_have_text("Nothing to recover.")
    found["recovery"] = await violations(page)
    assert {page: v for page, v in found.items() if v} == {}
    # And the check sees what it should: an unlabelled field is a violation
    await page.evaluate("document.querySelector('main').append(document.createElement('input'))")
    assert any(v.startswith("label ") for v in await violations(page))


@pytest.mark.parametrize(("scheme", "width"), [("light", 1100), ("dark", 390)])
async def test_the_operators_page_and_its_confirmation_pass_the_wcag_rules(
    fleet: Fleet, tabs: Any, scheme: str, width: int
) -> None:
    tab: Console = await tabs(
        viewport={"width": width, "height": 800}, color_scheme=scheme, bypass_csp=True
    )
    page = tab.page
    await tab.sign_in("ops", scope="admin")
    await page.goto("/console/#/operators")
    await expect(page.locator('tr[data-queue="chat_tasks"]')).to_be_visible()
    await expect(page.get_by_role("heading", name="Workers")).to_be_visible()
    found = {"operators": await violations(page)}
    # The confirmation, as the purge of a dead-letter queue and the delete of a task ask it
    await page.evaluate(
        "() => { window.asked = import('/console/assets/console/js/dom.js')"
        ".then((m) => m.confirmAction('Sure?', 'Do it')); }"
    )
    await expect(page.get_by_role("dialog")).to_be_visible()
    found["confirmation"] = await violations(page)
    await page.keyboard.press("Escape")
    assert await page.evaluate("window.asked") is False
    assert {page: v for page, v in found.items() if v} == {}
