"""When a schedule's runs fall (docs/scheduling.md#schedules): the ticks of a cron expression in
a time zone (croniter, zoneinfo) or of a fixed interval, and what a scheduler does with the
ticks that fell due since it last looked. Pure: no clock of its own, no database.

- A tick is **on time** while it is at most `grace_s` past, and every tick on time gets its
  own run, oldest first, one per look: a scheduler that was away for less than the grace
  (a restart, a takeover) loses no tick, it runs them late.
- Ticks older than that are **missed**. `skip` drops them; `run_once` makes one run for all
  of them. Either way the schedule goes on from its first tick still on time.
- Interval ticks stay on their grid (`first + k·interval_s`, no drift); cron ticks are the
  expression's in its zone, daylight-saving changes included.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

Missed = Literal["skip", "run_once"]
NEVER_BEFORE = datetime(2000, 1, 1, tzinfo=UTC)


class BadRecurrence(ValueError):
    """A cron expression, interval or time zone that cannot make ticks; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name` (BadRecurrence if there is none)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadRecurrence("timezone", f"unknown time zone: {name!r}") from None


@dataclass(frozen=True, slots=True)
class Recurrence:
    """Exactly one of `cron` (5 fields, or 6 with seconds last) and `interval_s`."""

    cron: str | None
    interval_s: int | None
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.interval_s is None):
            raise BadRecurrence("cron", "give exactly one of cron and interval_s")
        zone(self.timezone)
        if self.cron is not None:
            fields = len(self.cron.split())
            if not self.cron.startswith("@") and fields not in (5, 6):
                raise BadRecurrence("cron", "a cron expression has 5 fields, or 6 with seconds")
            if not croniter.is_valid(self.cron):
                raise BadRecurrence("cron", f"not a cron expression: {self.cron!r}")
            # One tick after any moment means ticks forever (no year field: cron repeats).
            self._cron_after(NEVER_BEFORE)
        elif self.interval_s is not None and self.interval_s < 1:
            raise BadRecurrence("interval_s", "interval_s must be at least 1")

    def first(self, now: datetime) -> datetime:
        """The first tick of a schedule made (or resumed) at `now`."""
        if self.interval_s is not None:
            return now + timedelta(seconds=self.interval_s)
        return self._cron_after(now)

    def following(self, tick: datetime) -> datetime:
        """The tick after `tick`."""
        if self.interval_s is not None:
            return tick + timedelta(seconds=self.interval_s)
        return self._cron_after(tick)

    def latest(self, due: datetime, now: datetime) -> datetime:
        """The last tick at or before `now`, counting from `due` (a tick at or before now)."""
        if self.interval_s is not None:
            step = timedelta(seconds=self.interval_s)
            return due + ((now - due) // step) * step
        assert self.cron is not None
        before = croniter(self.cron, now.astimezone(zone(self.timezone))).get_prev(datetime)
        latest = max(due, before.astimezone(UTC))
        while (after := self.following(latest)) <= now:  # `now` itself may be a tick
            latest = after
        return latest

    def _cron_after(self, moment: datetime) -> datetime:
        assert self.cron is not None
        local = moment.astimezone(zone(self.timezone))
        try:
            return croniter(self.cron, local).get_next(datetime).astimezone(UTC)
        except CroniterError:  # `0 0 30 2 *`: February has no 30th
            raise BadRecurrence("cron", f"{self.cron!r} never comes") from None


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do with a due schedule now: create the run of tick `run` (None: no run) and
    go on at `next_run_at` (at or before now while ticks on time wait for their runs).
    `missed_from` is the oldest tick that was missed, if any."""

    run: datetime | None
    next_run_at: datetime
    missed_from: datetime | None


def plan(
    recurrence: Recurrence, due: datetime, now: datetime, *, grace_s: float, missed: Missed
) -> Plan:
    """The plan for a schedule whose tick `due` is at or before `now` (module docstring)."""
    on_time_from = now - timedelta(seconds=grace_s)
    if due >= on_time_from:
        return Plan(due, recurrence.following(due), None)
    last_missed = recurrence.latest(due, on_time_from - timedelta(microseconds=1))
    run = last_missed if missed == "run_once" else None
    return Plan(run, recurrence.following(last_missed), due)
