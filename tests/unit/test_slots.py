"""The slot governor's decisions (taskfleet.path.slots) and the turn each handler loop waits
for."""

import asyncio

from taskfleet.path.slots import (
    IDLE_WINDOWS,
    Governor,
    Reading,
    SlotRange,
    Slots,
    decide,
)

CHAT = SlotRange(32, 256)


def reading(demand: float = 0.0, lag_s: float = 0.0, cpu: float = 0.1, peak: int = 0) -> Reading:
    return Reading(demand, lag_s, cpu, peak)


def test_work_waiting_with_room_on_the_loop_grows_by_half_up_to_the_most() -> None:
    assert decide(32, CHAT, reading(demand=0.9, peak=32), 0) == 48
    assert decide(250, CHAT, reading(demand=0.9, peak=250), 0) == 256
    assert decide(2, SlotRange(2, 16), reading(demand=1.0, peak=2), 0) == 3  # at least one


def test_a_late_loop_or_a_spent_cpu_shrinks_a_quarter_down_to_the_queues_own() -> None:
    assert decide(64, CHAT, reading(demand=1.0, lag_s=0.2, peak=64), 0) == 48
    assert decide(64, CHAT, reading(demand=1.0, cpu=0.95, peak=64), 0) == 48
    assert decide(33, CHAT, reading(lag_s=0.5), 0) == 32


def test_demand_without_room_holds_and_so_does_a_loop_between_the_thresholds() -> None:
    assert decide(64, CHAT, reading(demand=1.0, cpu=0.7, peak=64), 0) == 64
    assert decide(64, CHAT, reading(demand=1.0, lag_s=0.05, peak=64), 0) == 64


def test_idle_windows_in_a_row_give_slots_back() -> None:
    quiet = reading(peak=3)
    assert decide(64, CHAT, quiet, IDLE_WINDOWS - 1) == 64
    assert decide(64, CHAT, quiet, IDLE_WINDOWS) == 48
    assert decide(64, CHAT, reading(peak=60), IDLE_WINDOWS) == 64  # still using them
    assert decide(32, CHAT, quiet, IDLE_WINDOWS) == 32


async def test_a_loop_waits_its_turn_until_the_slots_reach_it() -> None:
    slots = Slots(SlotRange(2, 8))
    await asyncio.wait_for(slots.turn(1), 1)  # within the slots: at once
    third = asyncio.ensure_future(slots.turn(2))
    await asyncio.sleep(0)
    assert not third.done()
    slots.allow(3)
    await asyncio.wait_for(third, 1)


async def test_the_governor_reads_demand_and_resizes() -> None:
    slots = Slots(SlotRange(2, 8))
    sizes: list[int] = []
    resized = asyncio.Event()

    async def resize(n: int) -> None:
        sizes.append(n)
        slots.allow(n)
        resized.set()

    governor = Governor(slots, lambda: slots.allowed, lambda: 5, resize, "chat_tasks", 0.05, 0.01)
    seen = await governor.read()
    assert (seen.demand, seen.busy_peak) == (1.0, 2)
    task = asyncio.ensure_future(governor.run())
    try:
        await asyncio.wait_for(resized.wait(), 10)
    finally:
        task.cancel()
    assert sizes[0] == 3
