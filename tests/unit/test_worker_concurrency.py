"""A worker's slots with no flag are the fast setup for its kind of work: many for chat, which
waits on a model; no more than the cores for CPU-bound documents. --concurrency, then
WORKER_CONCURRENCY, override it; a bad value is a one-line error."""

import pytest

from taskfleet.core.errors import ConfigError
from taskfleet.core.settings import Settings
from taskfleet_cli.main import worker_concurrency


def test_with_no_flag_each_queue_has_its_own_slots() -> None:
    settings = Settings.load()
    slots = {w: worker_concurrency(settings, w, None) for w in ("chat", "tool", "doc", "camera")}
    assert slots == {"chat": 32, "tool": 8, "doc": 2, "camera": 4}


def test_the_flag_wins_over_the_setting_which_wins_over_the_queue() -> None:
    settings = Settings.load(WORKER_CONCURRENCY=12)
    assert worker_concurrency(settings, "doc", None) == 12
    assert worker_concurrency(settings, "doc", 3) == 3


def test_bad_values_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="--concurrency: must be at least 1"):
        worker_concurrency(Settings.load(), "chat", 0)
    with pytest.raises(ConfigError, match="WORKER_CONCURRENCY"):
        Settings.load(WORKER_CONCURRENCY=0)
