"""Waiting out an outage of our database: its outcome commits and its probe back.

While the database is away, the consumer takes no deliveries (no nack loop: the messages wait
in the queue, where the broker's delivery limit does not count them), and a committed outcome
waits for it with its delivery unacknowledged.
"""

import time
from collections.abc import Awaitable, Callable

import asyncpg
import structlog
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from taskfleet.core.supervisor import Supervisor
from taskfleet.store.pool import UNAVAILABLE

log = structlog.get_logger("taskfleet.runner")

# The longest wait between two probes (exponential, jittered) and between two tries of an
# outcome's commit.
DATABASE_PROBE_MAX_S = 5.0


def _wait() -> wait_exponential_jitter:
    return wait_exponential_jitter(multiplier=0.1, max=DATABASE_PROBE_MAX_S, jitter=0.5)


def while_unavailable() -> AsyncRetrying:
    """Tries again while the database is unavailable; any other error is raised."""
    return AsyncRetrying(retry=retry_if_exception_type(UNAVAILABLE), wait=_wait(), reraise=True)


async def probe_until_back(pool: asyncpg.Pool) -> None:
    """Probe with exponential backoff and jitter; return once the database answers.

    Any error is "not back yet": a probe that gave up would leave the consumer paused."""
    since = time.monotonic()
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(Exception),
        wait=_wait(),
        before_sleep=lambda state: log.info(
            "database_probe_failed",
            error=repr(state.outcome.exception()) if state.outcome else None,
        ),
    ):
        with attempt:
            await pool.fetchval("SELECT 1", timeout=2)
    log.info("database_back", away_s=round(time.monotonic() - since, 1))


def spawn_probe(
    supervisor: Supervisor, name: str, pool: asyncpg.Pool, resume: Callable[[], Awaitable[None]]
) -> None:
    """Probe the database under `name` (one probe at a time), then `resume`."""

    async def probe() -> None:
        await probe_until_back(pool)
        await resume()

    if not supervisor.running().get(name):
        supervisor.spawn(name, probe, restart=False)
