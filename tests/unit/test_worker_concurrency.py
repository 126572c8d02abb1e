"""A worker's slots with no flag are the fast setup for its kind of work: chat and tools,
which wait on a model or the network, start at their queue's own and adapt upwards at run
time; CPU-bound documents and frames stay at no more than the cores. --concurrency, then
WORKER_CONCURRENCY, fix the number; a bad value is a one-line error."""

import pytest

from taskfleet.core.errors import ConfigError
from taskfleet.core.settings import Settings
from taskfleet.path.slots import SlotRange
from taskfleet.worker import POOLED_SLOTS, pool_size
from taskfleet_cli.configs import worker_slots


def test_with_no_flag_each_queue_has_its_own_slots() -> None:
    settings = Settings.load()
    slots = {w: worker_slots(settings, w, None) for w in ("chat", "tool", "doc", "camera")}
    assert slots == {
        "chat": SlotRange(64, 256),
        "tool": SlotRange(8, 64),
        "doc": SlotRange.fixed(2),
        "camera": SlotRange.fixed(4),
    }
    assert [s.adaptive for s in slots.values()] == [True, True, False, False]


def test_the_flag_wins_over_the_setting_which_wins_over_the_queue_and_both_fix_it() -> None:
    settings = Settings.load(WORKER_CONCURRENCY=12)
    assert worker_slots(settings, "chat", None) == SlotRange.fixed(12)
    assert worker_slots(settings, "chat", 3) == SlotRange.fixed(3)


def test_bad_values_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="--concurrency: must be at least 1"):
        worker_slots(Settings.load(), "chat", 0)
    with pytest.raises(ConfigError, match="WORKER_CONCURRENCY"):
        Settings.load(WORKER_CONCURRENCY=0)


def test_the_database_pool_follows_the_first_slots_only() -> None:
    settings = Settings.load()
    assert pool_size(settings, SlotRange.fixed(8)) == 12
    assert pool_size(settings, SlotRange(64, 256)) == POOLED_SLOTS + 4 == 36
    assert pool_size(settings, SlotRange.fixed(2)) == settings.db_pool_size == 10
    assert pool_size(Settings.load(DB_POOL_SIZE=80), SlotRange(64, 256)) == 80
