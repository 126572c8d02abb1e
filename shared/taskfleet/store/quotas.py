"""Per-user quotas on submissions, counted in PostgreSQL so that they hold across API replicas.

- at most SUBMIT_RATE_PER_MIN submissions per user per minute (a fixed window), and
- at most MAX_QUEUED_PER_USER of the user's tasks waiting (queued or retrying).

One statement per submission counts the window and the waiting tasks
(store/sql/tf_count_submission.sql): `check` on its own, or inside the submission's own
statement (a chat message: `tf_submit_chat`). Over either limit the API answers 429 with
Retry-After, and nothing is stored.
"""

import math
from dataclasses import dataclass
from typing import Any

from taskfleet.core.settings import Settings
from taskfleet.store.tenancy import Db

# One row: this submission counted in its window, the user's waiting tasks, and the seconds
# left in the window.
_CHECK = "SELECT * FROM tf_count_submission($1)"


@dataclass(frozen=True, slots=True)
class OverQuota:
    reason: str
    retry_after_s: int


@dataclass(frozen=True, slots=True)
class Limits:
    per_minute: int
    max_waiting: int

    @classmethod
    def from_settings(cls, settings: Settings) -> "Limits":
        """The limits in force: SUBMIT_RATE_PER_MIN and MAX_QUEUED_PER_USER."""
        return cls(settings.submit_rate_per_min, settings.max_queued_per_user)

    def over(self, counted: Any, added: int = 1) -> OverQuota | None:
        """Why a submission of `added` tasks (a batch's members, else one) counted as
        `counted` (a `quota` row) may not go on, if it may not."""
        if counted["submissions"] > self.per_minute:
            return OverQuota(
                f"more than {self.per_minute} submissions in a minute",
                max(1, math.ceil(float(counted["window_left_s"]))),
            )
        if counted["waiting"] + added > self.max_waiting:
            # Tasks leave the waiting state as workers take them: a few seconds is a fair guess.
            return OverQuota(
                f"{counted['waiting']} tasks already waiting (at most {self.max_waiting})", 5
            )
        return None


async def check(db: Db, user_id: str, limits: Limits) -> OverQuota | None:
    """Count this submission; None when it may go on, else why not and when to try again."""
    return limits.over(await db.fetchrow(_CHECK, user_id))


async def forget_old_windows(conn: Db) -> int:
    """Windows older than an hour are of no use (the retention cleanup calls this)."""
    done = await conn.execute(
        "DELETE FROM submission_counts WHERE window_start < now() - interval '1 hour'"
    )
    return int(done.split()[-1])
