"""The ticks of a schedule (taskfleet.data.recurrence): cron in a time zone across daylight
saving, intervals on their grid, and what a late look does with skip and run_once."""

from datetime import UTC, datetime, timedelta

import pytest

from taskfleet.data.recurrence import BadRecurrence, Recurrence, plan

T0 = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)  # the day before Europe's clocks go forward


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


class TestTicks:
    def test_a_daily_cron_keeps_its_local_hour_across_daylight_saving(self) -> None:
        paris = Recurrence("0 9 * * *", None, "Europe/Paris")
        first = paris.first(T0)
        assert first == at("2026-03-29T07:00:00+00:00")  # 09:00 CEST, the first summer day
        assert paris.following(at("2026-03-28T08:00:00+00:00")) == first

    def test_seconds_are_the_sixth_field(self) -> None:
        every_10s = Recurrence("* * * * * */10", None)
        assert every_10s.first(T0 + timedelta(seconds=1)) == T0 + timedelta(seconds=10)

    def test_intervals_stay_on_their_grid(self) -> None:
        every_90s = Recurrence(None, 90)
        due = T0 + timedelta(seconds=90)
        assert every_90s.first(T0) == due
        assert every_90s.latest(due, due + timedelta(seconds=200)) == due + timedelta(seconds=180)

    def test_the_latest_cron_tick_may_be_now_itself(self) -> None:
        hourly = Recurrence("0 * * * *", None)
        assert hourly.latest(T0 - timedelta(hours=3), T0) == T0

    @pytest.mark.parametrize(
        ("cron", "interval_s", "timezone", "field"),
        [
            (None, None, "UTC", "cron"),
            ("* * * * *", 5, "UTC", "cron"),
            ("* * * * * * *", None, "UTC", "cron"),
            ("every day", None, "UTC", "cron"),
            ("0 0 30 2 *", None, "UTC", "cron"),
            (None, 0, "UTC", "interval_s"),
            ("* * * * *", None, "Nowhere/Land", "timezone"),
            ("* * * * *", None, "../../etc/passwd", "timezone"),
        ],
    )
    def test_what_cannot_tick_is_refused_naming_its_field(
        self, cron: str | None, interval_s: int | None, timezone: str, field: str
    ) -> None:
        with pytest.raises(BadRecurrence) as refused:
            Recurrence(cron, interval_s, timezone)
        assert refused.value.field == field


class TestPlan:
    hourly = Recurrence(None, 3600)

    def test_a_tick_seen_in_time_runs(self) -> None:
        todo = plan(self.hourly, T0, T0 + timedelta(seconds=0.3), grace_s=60, missed="skip")
        assert (todo.run, todo.next_run_at, todo.missed_from) == (
            T0, T0 + timedelta(hours=1), None,
        )  # fmt: skip

    @pytest.mark.parametrize(("missed", "runs"), [("skip", False), ("run_once", True)])
    def test_ticks_seen_late_are_skipped_or_run_once(self, missed: str, runs: bool) -> None:
        now = T0 + timedelta(hours=2, minutes=30)
        todo = plan(self.hourly, T0, now, grace_s=60, missed=missed)  # type: ignore[arg-type]
        assert todo.run == (T0 + timedelta(hours=2) if runs else None)
        assert todo.next_run_at == T0 + timedelta(hours=3)
        assert todo.missed_from == T0

    def test_every_tick_in_time_runs_oldest_first_one_per_look(self) -> None:
        every_s = Recurrence(None, 1)
        todo = plan(every_s, T0, T0 + timedelta(seconds=3.2), grace_s=60, missed="skip")
        assert (todo.run, todo.next_run_at, todo.missed_from) == (
            T0, T0 + timedelta(seconds=1), None,
        )  # fmt: skip

    @pytest.mark.parametrize(("missed", "run_s"), [("skip", None), ("run_once", 39)])
    def test_after_the_missed_ticks_come_those_still_in_time(
        self, missed: str, run_s: int | None
    ) -> None:
        every_s, now = Recurrence(None, 1), T0 + timedelta(seconds=100)
        todo = plan(every_s, T0, now, grace_s=60, missed=missed)  # type: ignore[arg-type]
        assert todo.run == (None if run_s is None else T0 + timedelta(seconds=run_s))
        assert (todo.next_run_at, todo.missed_from) == (T0 + timedelta(seconds=40), T0)
