"""Statistics of tasks over a window (GET /api/stats, `taskfleet stats`; docs/scheduling.md).

The window is the tasks created in its last `window_s` seconds, as they are now: their counts
by status and type, the success rate of those that ended (completed over completed and
failed), the wait of those claimed (from when they could run, `run_at` for a delayed task,
to their first claim) and the duration of those completed (first claim to completion), as
p50 and p95. One statement; a user's window reads the index on (user_id, created_at), the
fleet's the partial indexes of finished (by completed_at), unfinished and scheduled tasks:
neither scans the table, and neither needs an index of its own.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from taskfleet.store.tenancy import Db

# Grouping sets: per (type, status) for the counts, per type and overall for the rest.
_STATS = """
SELECT x.type, x.status, GROUPING(x.type, x.status) AS level, count(*) AS n,
       count(*) FILTER (WHERE x.status = 'completed') AS completed,
       count(*) FILTER (WHERE x.status = 'failed') AS failed,
       percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY x.wait_s) AS wait_s,
       percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY x.duration_s) AS duration_s,
       now() - make_interval(secs => $1) AS since
FROM ({tasks}) x
GROUP BY GROUPING SETS ((x.type, x.status), (x.type), ())
"""
_COLUMNS = """
    SELECT t.type, t.status,
           extract(epoch FROM t.started_at - coalesce(t.run_at, t.created_at))::float8 AS wait_s,
           CASE WHEN t.status = 'completed'
                THEN extract(epoch FROM t.completed_at - t.started_at)::float8 END AS duration_s
    FROM tasks t
    WHERE t.created_at >= now() - make_interval(secs => $1)
"""
# A user's window: the index on (user_id, created_at).
USER_STATS = _STATS.format(tasks=_COLUMNS + " AND t.user_id = $2")
# The fleet's, with no index of its own (every status change of the message path would write
# one again): the tasks that ended in the window (a task created in it ended after it began)
# through tasks_finished (completed_at), and the unfinished ones through the partial indexes
# of unfinished and of scheduled tasks, which are small.
FLEET_STATS = _STATS.format(
    tasks=" UNION ALL ".join(
        _COLUMNS
        + f" AND t.status IN ({statuses})"
        + (" AND t.completed_at >= now() - make_interval(secs => $1)" if ended else "")
        for statuses, ended in (
            ("'completed', 'failed', 'cancelled'", True),
            ("'queued', 'retrying', 'processing', 'waiting'", False),
            ("'scheduled'", False),
        )
    )
)

# GROUPING(type, status): 0 a (type, status) row, 1 a type's row, 3 the overall row.
_PAIR, _TYPE, _ALL = 0, 1, 3


@dataclass(frozen=True, slots=True)
class Summary:
    """What one group (a type, or all of them) amounts to."""

    total: int
    by_status: dict[str, int]
    success_rate: float | None
    wait_s: dict[str, float | None]
    duration_s: dict[str, float | None]

    def as_json(self) -> dict[str, Any]:
        """The summary as the API and the command line show it."""
        return {
            "total": self.total,
            "by_status": self.by_status,
            "success_rate": self.success_rate,
            "wait_s": self.wait_s,
            "duration_s": self.duration_s,
        }


async def task_stats(db: Db, *, user_id: str | None, window_s: float) -> dict[str, Any]:
    """The window's statistics: one user's tasks, or every user's (`user_id` None, which only
    an operator's `db` may see whole)."""
    if user_id is None:
        rows = await db.fetch(FLEET_STATS, window_s)
    else:
        rows = await db.fetch(USER_STATS, window_s, user_id)
    pairs = [r for r in rows if r["level"] == _PAIR]
    types = {r["type"]: r for r in rows if r["level"] == _TYPE}
    overall = next(r for r in rows if r["level"] == _ALL)  # there is one, even for no task
    since: datetime = overall["since"]
    counts: dict[str | None, dict[str, int]] = {t: {} for t in types}
    counts[None] = {}
    for r in pairs:
        counts[r["type"]][r["status"]] = r["n"]
        counts[None][r["status"]] = counts[None].get(r["status"], 0) + r["n"]
    return {
        "window_s": window_s,
        "since": since,
        "user_id": user_id,
        **_summary(overall, counts[None]).as_json(),
        "by_type": {t: _summary(r, counts[t]).as_json() for t, r in sorted(types.items())},
    }


def _summary(row: Any, by_status: dict[str, int]) -> Summary:
    if row is None:
        return Summary(0, {}, None, _quantiles(None), _quantiles(None))
    ended = row["completed"] + row["failed"]
    return Summary(
        total=row["n"],
        by_status=dict(sorted(by_status.items())),
        success_rate=row["completed"] / ended if ended else None,
        wait_s=_quantiles(row["wait_s"]),
        duration_s=_quantiles(row["duration_s"]),
    )


def _quantiles(values: list[float | None] | None) -> dict[str, float | None]:
    """p50 and p95 (null when nothing was measured: percentile_cont over no value)."""
    p50, p95 = values if values is not None else (None, None)
    return {"p50": _number(p50), "p95": _number(p95)}


def _number(value: Any) -> float | None:
    return None if value is None else round(float(value), 6)
