"""Delayed submissions (docs/scheduling.md): `run_at` or `delay_s` on every route that creates
a task, checked here into the time the task is due (or None: run it now)."""

import math
import re
from datetime import UTC, datetime, timedelta

from fleet_api.errors import ApiError
from taskfleet.client.models import Delay

# RFC 3339 date-time, the zone required (`Z` or ±hh:mm). datetime.fromisoformat alone takes
# more than that (a date only, no zone, the basic format), which the contract does not.
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


def due_at(delay: Delay, max_delay_s: float, now: datetime | None = None) -> datetime | None:
    """When the task is to run: None for now (no delay, or a time already past); 400 for two
    delays, a time that is no RFC 3339 time with its zone, a negative or too long delay."""
    if delay.run_at is not None and delay.delay_s is not None:
        raise _invalid("give run_at or delay_s, not both")
    now = now or datetime.now(UTC)
    if delay.delay_s is not None:
        if not math.isfinite(delay.delay_s) or delay.delay_s < 0:
            raise _invalid("delay_s must be a number of seconds, 0 or more")
        if delay.delay_s > max_delay_s:
            raise _too_far(max_delay_s)
        return now + timedelta(seconds=delay.delay_s) if delay.delay_s > 0 else None
    if delay.run_at is None:
        return None
    due = _parse(delay.run_at)
    try:
        ahead = (due - now).total_seconds()
    except OverflowError:
        raise _too_far(max_delay_s) from None
    if ahead > max_delay_s:
        raise _too_far(max_delay_s)
    return due if ahead > 0 else None


def _parse(text: str) -> datetime:
    if not RFC3339.match(text):
        raise _invalid(
            f"run_at {text[:40]!r} is not an RFC 3339 time with its zone,"
            " e.g. 2030-01-31T09:00:00Z or 2030-01-31T10:00:00+01:00"
        )
    try:
        return datetime.fromisoformat(text.upper().replace(" ", "T"))
    except ValueError as exc:  # e.g. month 13, or a zone beyond ±24h
        raise _invalid(f"run_at {text[:40]!r} is not a valid time: {exc}") from None


def _invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_delay", message)


def _too_far(max_delay_s: float) -> ApiError:
    return _invalid(f"a task may be delayed at most {max_delay_s:g} seconds (MAX_DELAY_S)")
