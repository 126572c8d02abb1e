"""Retention: delete old terminal tasks and what hangs off them (`taskfleet cleanup`).

A task goes when all of these hold:
- it is terminal (completed, failed, cancelled) and finished before the cutoff;
- it has no outbox row: a dead letter or a re-run not yet published is still to be sent (the
  relay deletes a row once the broker confirmed it, so every outbox row is unsent);
- it has no child task: children go first. A batch takes leaves only, and a parent whose
  children all went is a leaf for the next batch, so a parent whose child still runs stays.

Rows that reference a task (its messages, the workers' rows) go with it through their
`ON DELETE CASCADE` foreign keys.

Each batch is one transaction that locks its tasks with `FOR UPDATE SKIP LOCKED`, then deletes
them with every condition checked again under the lock. So two cleanups at once share the
work instead of waiting for each other or deleting a row twice, and a task that another
transaction holds (a re-run being requested, a child or an outbox row being inserted: those
lock the task row) is left for the next run. The API's periodic job also takes a PostgreSQL
advisory lock, so that one API replica at a time does the work.

Between batches it pauses `pause_ratio` times as long as the batch took (RETENTION_PAUSE_RATIO):
a cleanup of a large backlog runs back to back otherwise, and takes a core of PostgreSQL's that
the live work needs (docs/benchmarks.md, "Cost as the history grows").
"""

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import structlog

from taskfleet.core.errors import StartupError
from taskfleet.core.settings import Settings
from taskfleet.store import quotas
from taskfleet.store.pool import connect_session

log = structlog.get_logger("taskfleet.retention")

# Any constant will do; it only has to differ from the other advisory locks of the schema.
CLEANUP_LOCK = 0x7A5FC1EA
DEFAULT_BATCH = 500
# The periodic job runs first this long after the API started (sooner if its interval is).
FIRST_RUN_DELAY_S = 60.0
_pause = asyncio.sleep  # between paced batches (a name of its own: the tests count them)

_ELIGIBLE = """
    t.status IN ('completed', 'failed', 'cancelled') AND t.completed_at < $1
    AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.task_id = t.id)
    AND NOT EXISTS (SELECT 1 FROM tasks c WHERE c.parent_id = t.id)
"""
_PICK = f"""
SELECT t.id FROM tasks t WHERE {_ELIGIBLE}
ORDER BY t.completed_at LIMIT $2
FOR UPDATE OF t SKIP LOCKED
"""
# A statement of its own, after the locks are held: its snapshot sees every outbox row or
# child that committed before them, and none can commit while they are held.
_DELETE = f"DELETE FROM tasks t WHERE t.id = ANY($2::uuid[]) AND {_ELIGIBLE}"


@dataclass(frozen=True, slots=True)
class CleanupResult:
    deleted: int
    batches: int
    cutoff: datetime


async def cleanup(
    conn: asyncpg.Connection,
    older_than_s: float,
    *,
    batch_size: int = DEFAULT_BATCH,
    pause_ratio: float = 0.0,
) -> CleanupResult:
    """Delete, in batches of `batch_size` (one transaction each), every task that may go and
    that finished more than `older_than_s` seconds ago, pausing `pause_ratio` times each
    batch's duration after it. Safe to run in several places at once."""
    if older_than_s <= 0 or batch_size < 1 or pause_ratio < 0:
        raise ValueError("older_than_s must be > 0, batch_size >= 1 and pause_ratio >= 0")
    cutoff: datetime = await conn.fetchval(
        "SELECT now() - make_interval(secs => $1)", float(older_than_s)
    )
    deleted = batches = 0
    while True:
        started = time.monotonic()
        async with conn.transaction():
            ids = [row["id"] for row in await conn.fetch(_PICK, cutoff, batch_size)]
            if not ids:
                break
            status = await conn.execute(_DELETE, cutoff, ids)
        count = int(status.split()[-1])
        deleted += count
        batches += 1
        log.debug("retention_batch", deleted=count, picked=len(ids))
        if pause_ratio > 0:
            # Pacing, not a wait for a condition: the next batch may start at any time.
            await _pause((time.monotonic() - started) * pause_ratio)
    windows = await quotas.forget_old_windows(conn)
    log.info(
        "retention_done",
        deleted=deleted,
        batches=batches,
        cutoff=cutoff.isoformat(),
        quota_windows=windows,
    )
    return CleanupResult(deleted, batches, cutoff)


async def run_cleanup(
    settings: Settings,
    older_than_s: float,
    *,
    batch_size: int = DEFAULT_BATCH,
    pause_ratio: float = 0.0,
) -> CleanupResult:
    """`taskfleet cleanup`: one connection of its own, closed at the end."""
    try:
        conn = await asyncpg.connect(settings.direct_database_url, timeout=settings.db_timeout_s)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise StartupError(f"DATABASE_URL: cannot use PostgreSQL: {exc}") from None
    try:
        return await cleanup(conn, older_than_s, batch_size=batch_size, pause_ratio=pause_ratio)
    finally:
        await conn.close()


class RetentionJob:
    """The API's periodic cleanup: every `interval_s`, in whichever replica takes the lock."""

    def __init__(
        self,
        dsn: str,
        *,
        older_than_s: float,
        interval_s: float,
        batch_size: int = DEFAULT_BATCH,
        pause_ratio: float = 0.0,
        timeout_s: float = 10.0,
    ) -> None:
        self.dsn = dsn  # PostgreSQL itself: the lock lives in the session (DATABASE_DIRECT_URL)
        self.older_than_s = older_than_s
        self.interval_s = interval_s
        self.batch_size = batch_size
        self.pause_ratio = pause_ratio
        self.timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: Settings) -> "RetentionJob":
        """The job as the RETENTION_* settings make it."""
        return cls(
            settings.direct_database_url,
            older_than_s=settings.retention_older_than_s,
            interval_s=settings.retention_interval_s,
            batch_size=settings.retention_batch_size,
            pause_ratio=settings.retention_pause_ratio,
            timeout_s=settings.db_timeout_s,
        )

    async def run(self) -> None:
        """Forever (a supervised loop): wait, clean up if no other replica is, repeat."""
        await asyncio.sleep(min(FIRST_RUN_DELAY_S, self.interval_s))
        while True:
            await self.run_once()
            await asyncio.sleep(self.interval_s)

    async def run_once(self) -> CleanupResult | None:
        """One cleanup under the advisory lock; None when another process holds it.

        The lock is a session's, on a connection of its own that is closed after the run: a
        pooled connection behind a pooler in transaction mode would take it in one server
        session and release it (or not) in another."""
        conn = await connect_session(self.dsn, timeout_s=self.timeout_s)
        try:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", CLEANUP_LOCK):
                log.info("retention_skipped", reason="another process is cleaning up")
                return None
            return await cleanup(
                conn, self.older_than_s, batch_size=self.batch_size, pause_ratio=self.pause_ratio
            )
        finally:
            await conn.close()  # ends the session, and with it the lock
