"""Scenario sizes: short by default (a part of `make test`), full with CHAOS_FULL=1
(`make test-chaos`)."""

import os
from collections.abc import AsyncIterator

import asyncpg
import pytest

from taskfleet.db import create_pool
from taskfleet.settings import Settings

FULL = os.environ.get("CHAOS_FULL") == "1"

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


def size(short: int, full: int) -> int:
    return full if FULL else short


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(settings.database_url, size=2)
    yield pool
    await pool.close()
