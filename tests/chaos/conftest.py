"""Scenario sizes: short by default (a part of `make test`), full with CHAOS_FULL=1
(`make test-chaos`)."""

import contextlib
import os
import subprocess
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from taskfleet.core.settings import Settings
from taskfleet.store.pool import create_pool
from tests.chaos.infra import can_operate_services, postgres

FULL = os.environ.get("CHAOS_FULL") == "1"

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


def size(short: int, full: int) -> int:
    return full if FULL else short


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(settings.database_url, size=2)
    yield pool
    await pool.close()


@pytest.fixture(autouse=True)
def _database_running_after(settings: Settings) -> Iterator[None]:
    """A test stopped by its timeout mid-outage must not leave PostgreSQL down for the next."""
    yield
    if can_operate_services() is None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already running
            postgres(settings.database_url, "start")
