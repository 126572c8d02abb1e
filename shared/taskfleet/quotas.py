"""Per-user quotas on submissions, counted in PostgreSQL so that they hold across API replicas.

- at most SUBMIT_RATE_PER_MIN submissions per user per minute (a fixed window), and
- at most MAX_QUEUED_PER_USER of the user's tasks waiting (queued or retrying).

One statement per submission counts the window and the waiting tasks. Over either limit the
API answers 429 with Retry-After, and nothing is stored.
"""

import math
from dataclasses import dataclass

import asyncpg

_CHECK = """
WITH hit AS (
    INSERT INTO submission_counts (user_id, window_start, submissions)
    VALUES ($1, date_trunc('minute', now()), 1)
    ON CONFLICT (user_id, window_start)
    DO UPDATE SET submissions = submission_counts.submissions + 1
    RETURNING submissions
)
SELECT (SELECT submissions FROM hit) AS submissions,
       (SELECT count(*) FROM tasks
        WHERE user_id = $1 AND status IN ('queued', 'retrying')) AS waiting,
       extract(epoch FROM date_trunc('minute', now()) + interval '1 minute' - now())
         AS window_left_s
"""


@dataclass(frozen=True, slots=True)
class OverQuota:
    reason: str
    retry_after_s: int


async def check(
    pool: asyncpg.Pool, user_id: str, *, per_minute: int, max_waiting: int
) -> OverQuota | None:
    """Count this submission; None when it may go on, else why not and when to try again."""
    row = await pool.fetchrow(_CHECK, user_id)
    assert row is not None
    if row["submissions"] > per_minute:
        return OverQuota(
            f"more than {per_minute} submissions in a minute",
            max(1, math.ceil(float(row["window_left_s"]))),
        )
    if row["waiting"] >= max_waiting:
        # Tasks leave the waiting state as workers take them: a few seconds is a fair guess.
        return OverQuota(f"{row['waiting']} tasks already waiting (at most {max_waiting})", 5)
    return None


async def forget_old_windows(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    """Windows older than an hour are of no use (the retention cleanup calls this)."""
    done = await conn.execute(
        "DELETE FROM submission_counts WHERE window_start < now() - interval '1 hour'"
    )
    return int(done.split()[-1])
