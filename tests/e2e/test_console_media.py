"""The console's documents and cameras pages in Debian's chromium against real processes
(`taskfleet api`, a document worker and a camera worker): upload a three-page PDF and watch it
be indexed, then find it by a word of its last page; upload two frames of a camera and see
each analysed, the second with its motion score."""

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import expect

from taskfleet.core.settings import Settings
from tests.camera_images import frame
from tests.conftest import free_port, process_env, wait_for
from tests.e2e.console_harness import Console, Fleet, api_ready, user
from tests.pdfs import build_pdf, text_stream

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


@pytest.fixture(scope="module")
async def media(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Fleet]:
    fleet = Fleet(free_port(), process_env(settings), tmp_path_factory.mktemp("media"),
                  workers=("doc", "camera"))  # fmt: skip
    try:
        await wait_for(lambda: api_ready(fleet.base), what="the API to be ready", timeout_s=30)
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture
def tab(browser: Any, media: Fleet) -> Any:
    opened: list[Console] = []

    async def open_tab() -> Console:
        context = await browser.new_context(base_url=media.base)
        opened.append(Console(await context.new_page()))
        return opened[-1]

    yield open_tab
    for console in opened:
        assert not console.errors, console.errors


async def test_a_pdf_is_uploaded_indexed_and_found(tab: Any) -> None:
    console: Console = await tab()
    page = console.page
    await console.sign_in(user())
    await page.get_by_role("link", name="Documents").click()
    await expect(page.get_by_text("No documents yet: upload one.")).to_be_visible()
    pages = ["The harbour opens at dawn.", "Boats leave at noon.", "The lighthouse keeper sleeps."]
    pdf = build_pdf([[text_stream(text)] for text in pages])
    await page.get_by_label("File (PDF, text or Markdown)").set_input_files(
        {"name": "harbour.pdf", "mimeType": "application/pdf", "buffer": pdf}
    )
    await page.get_by_label("Title").fill("Harbour notes")
    await page.get_by_role("button", name="Upload").click()
    await expect(page.get_by_text("Uploaded: indexing starts.")).to_be_visible()
    row = page.locator("tr", has_text="Harbour notes")
    # The row follows the feed: its task's progress, then the document indexed with its pages.
    await expect(row.locator(".chip")).to_have_text("indexed", timeout=30_000)
    await expect(row).to_contain_text("3 pages")
    await page.get_by_label("Search your indexed documents").fill("lighthouse")
    await page.get_by_role("button", name="Search").click()
    hit = page.get_by_role("list", name="Search results").get_by_role("listitem")
    await expect(hit).to_have_count(1)
    await expect(hit).to_contain_text("Harbour notes page 3")
    await expect(hit.locator("mark")).to_have_text("lighthouse")
    await console.shot("documents")


async def test_frames_are_analysed_with_their_motion(tab: Any) -> None:
    console: Console = await tab()
    page = console.page
    await console.sign_in(user())
    await page.get_by_role("link", name="Cameras").click()
    await page.get_by_label("Camera id").fill("no spaces")
    await page.get_by_role("button", name="Open").click()
    await expect(page.get_by_role("alert")).to_contain_text("letters, digits")
    # A camera is known from its first frame: until then the API answers 404 (the page says so).
    console.expected.append("status of 404")
    await page.get_by_label("Camera id").fill("door")
    await page.get_by_role("button", name="Open").click()
    await expect(page.get_by_role("heading", name="Camera door")).to_be_visible()
    await expect(page.get_by_text("No analysed frames yet.")).to_be_visible()
    frames = page.get_by_role("list", name="Latest frames, newest first").get_by_role("listitem")
    for n, square_x in enumerate((10, 90), start=1):
        await page.get_by_label("Frame (JPEG or PNG)").set_input_files(
            {"name": f"f{n}.jpg", "mimeType": "image/jpeg", "buffer": frame(square_x)}
        )
        await page.get_by_role("button", name="Analyse").click()
        await expect(page.get_by_text("Frame analysed.")).to_be_visible(timeout=30_000)
        await expect(frames).to_have_count(n)
        await page.get_by_text("Frame analysed.").evaluate("el => { el.textContent = ''; }")
    # The newest first: the square moved, so its frame shows motion against the first.
    newest, first = frames.nth(0), frames.nth(1)
    await expect(newest).to_contain_text("motion")
    await expect(newest.locator("dd").first).not_to_have_text("—")
    await expect(first.locator("dd").first).to_have_text("—")
    await expect(newest.locator("img")).to_have_attribute(
        "src", re.compile("^data:image/jpeg;base64,")
    )
    await console.shot("cameras")
