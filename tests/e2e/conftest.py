"""Real processes: `taskfleet api` and `taskfleet worker chat` on the session's database."""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from playwright.async_api import Browser, async_playwright

from taskfleet.core.settings import Settings
from taskfleet.store.pool import create_pool
from tests.conftest import free_port, process_env, wait_for
from tests.e2e.console_harness import CHROMIUM, WORD_MS, Console, Fleet, api_ready
from tests.otlp_server import OtlpReceiver

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(settings.database_url, size=2)
    yield pool
    await pool.close()


async def wait_task(db: asyncpg.Pool, task_id: Any, *statuses: str, timeout_s: float = 30) -> Any:
    async def probe() -> Any:
        row = await db.fetchrow("SELECT * FROM tasks WHERE id = $1", task_id)
        return row if row is not None and row["status"] in statuses else None

    return await wait_for(probe, timeout_s=timeout_s, what=f"task {task_id} {statuses}")


# -- the console's browser tests (tests/e2e/test_console.py) -------------------------------------


@pytest.fixture(scope="module")
async def fleet(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Fleet]:
    """`taskfleet api` and a chat worker for the module's tests (each test its own user)."""
    env = process_env(settings, SCRIPTED_DELAY_MS=WORD_MS)
    fleet = Fleet(free_port(), env, tmp_path_factory.mktemp("console"))
    try:
        await wait_for(lambda: api_ready(fleet.base), what="the API to be ready", timeout_s=30)
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture(scope="module")
def chromium() -> Path:
    assert CHROMIUM.exists(), "the console tests need Debian's chromium: apt-get install chromium"
    return CHROMIUM


@pytest.fixture(scope="module")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=str(chromium))
        yield launched
        await launched.close()


@pytest.fixture
def tabs(browser: Browser, fleet: Fleet) -> Iterator[Any]:
    opened: list[Console] = []

    async def open_tab(**options: Any) -> Console:
        context = await browser.new_context(base_url=fleet.base, **options)
        tab = Console(await context.new_page())
        opened.append(tab)
        return tab

    yield open_tab
    for tab in opened:
        assert not tab.errors, tab.errors


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    """A real OTLP/HTTP receiver that the processes export their spans to."""
    server = await OtlpReceiver().start()
    yield server
    await server.stop()
