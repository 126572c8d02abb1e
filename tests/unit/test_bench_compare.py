"""`make bench-peers` (bench/compare.py): the rounds turn the contenders' order, and the table's
ratios are taken within each round, not between medians of different minutes."""

import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from compare import contender_order, table
from cpu import CoreSampler


def test_every_round_runs_each_contender_once_and_none_always_first() -> None:
    names = ["loop", "dramatiq", "celery", "taskfleet amqp"]
    orders = [contender_order(names, i) for i in range(4)]
    assert all(sorted(order) == sorted(names) for order in orders)
    assert {order[0] for order in orders} == set(names)


def test_the_table_shows_medians_and_the_median_of_the_ratios_in_each_round() -> None:
    def round_(throughput: float, attempts: int = 0) -> dict[str, object]:
        return {"throughput": throughput, "e2e_p50_ms": 10.0, "e2e_p99_ms": 40.0,
                "multi_attempt": attempts}  # fmt: skip

    # The machine halves its speed in round 2: ratios within a round stay 2.0 and 1.5.
    results = {
        "loop": [round_(1000), round_(500), round_(1000)],
        "dramatiq": [round_(1500), round_(750), round_(1500)],
        "taskfleet amqp": [round_(2000), round_(1000), round_(2000, attempts=1)],
    }
    setups = {name: f"{name} setup" for name in results}
    lines = table(results, setups).splitlines()
    assert lines[0].startswith("| contender |")
    row = lines[4].split(" | ")
    assert row[0] == "| taskfleet amqp"
    assert row[2] == "2,000 (1,000-2,000)"
    assert row[3] == "10 / 40"
    assert row[4] == "1"  # a task attempted twice is shown, not hidden
    assert row[5:] == ["2.00", "1.33", "- / -", "- |"]  # no CPU figures in these rounds


def test_the_cores_busy_share_is_read_over_the_work_window_only() -> None:
    sampler = CoreSampler()
    # (epoch s, busy s, total s) of 2 cores: idle before 10.0, fully busy 10.0-12.0, then
    # half busy; the window is the part the round worked in.
    sampler.samples = [(9.0, 0.0, 0.0), (10.0, 0.2, 2.0), (11.0, 2.2, 4.0), (12.0, 4.2, 6.0),
                       (13.0, 5.2, 8.0)]  # fmt: skip
    assert sampler.busy_pct((10.0, 12.0)) == 100.0
    assert sampler.busy_pct((10.0, 13.0)) == 83.3
    assert sampler.busy_pct((12.5, 12.9)) is None  # no two samples inside: no figure
    assert sampler.busy_pct(None) is None
    with CoreSampler(every_s=0.01) as live:
        while len(live.samples) < 3:
            threading.Event().wait(0.01)
    first, last = live.samples[0][0], live.samples[-1][0]
    busy = live.busy_pct((first, last))
    assert busy is None or 0.0 <= busy <= 100.0
