"""Priorities without a broker: queue names per level, the order an inbox gives deliveries,
the tiers setting, and the names the operator routes take."""

from typing import Any, cast

import pytest

from fleet_api.settings import ApiSettings, parse_tiers
from taskfleet.client.models import PriorityName
from taskfleet.core.constants import LEVELS, Priority, level_queue
from taskfleet.data.queues import UnknownQueue, levels_of, work_queue
from taskfleet.path.levels import PASS_LIMIT, Inbox

H, N, L = Priority.HIGH, Priority.NORMAL, Priority.LOW


def test_each_level_has_its_queue_and_dlq_and_normal_keeps_the_name() -> None:
    assert [level_queue("chat_tasks", p) for p in LEVELS] == [
        "chat_tasks.high", "chat_tasks", "chat_tasks.low",
    ]  # fmt: skip
    assert level_queue("chat_tasks.dlq", "high") == "chat_tasks.high.dlq"
    assert level_queue("chat_tasks.dlq", "normal") == "chat_tasks.dlq"
    assert set(PriorityName.__args__) == {p.value for p in Priority}  # type: ignore[attr-defined]


async def fill(inbox: Inbox, counts: dict[Priority, int]) -> None:
    for level, n in counts.items():
        for i in range(n):
            await inbox.putter(level)(cast(Any, f"{level}{i}"))


def order(inbox: Inbox) -> list[Priority]:
    taken = []
    while not inbox.empty():
        taken.append(inbox.get_nowait()[0])
    return taken


async def test_the_highest_level_goes_first_in_order_of_arrival() -> None:
    inbox = Inbox()
    await fill(inbox, {N: 1, H: 2})
    taken: list[Any] = [inbox.get_nowait() for _ in range(3)]
    assert taken == [(H, "high0"), (H, "high1"), (N, "normal0")]


async def test_a_waiting_level_is_passed_over_at_most_pass_limit_times() -> None:
    inbox = Inbox()
    await fill(inbox, {H: 20, L: 2})
    taken = order(inbox)
    assert taken.index(L) == PASS_LIMIT  # after PASS_LIMIT high ones, never later
    assert taken[PASS_LIMIT + 1 :].index(L) == PASS_LIMIT


async def test_under_a_flood_of_high_both_lower_levels_get_their_turns() -> None:
    inbox = Inbox()
    await fill(inbox, {H: 40, N: 5, L: 5})
    first = order(inbox)[:20]
    assert first.count(N) >= 2
    assert first.count(L) >= 2
    assert first.count(H) >= 10  # and high still has most of the slots


async def test_an_empty_level_owes_nothing_and_get_waits_for_a_delivery() -> None:
    inbox = Inbox()
    with pytest.raises(IndexError):
        inbox.get_nowait()
    await fill(inbox, {H: 5})
    assert order(inbox) == [H] * 5
    await fill(inbox, {L: 1})
    got: Any = await inbox.get()
    assert got == (L, "low0")


def test_tiers_map_to_levels_and_a_bad_one_is_refused() -> None:
    assert parse_tiers(" paid:high, free:low ,") == {"paid": H, "free": L}
    for bad in ("paid", "paid:urgent", ":high"):
        with pytest.raises(ValueError, match="PRIORITY_TIERS"):
            parse_tiers(bad)
    settings = ApiSettings.load(PRIORITY_TIERS="paid:high")
    assert [settings.tier_priority(t) for t in ("paid", "free", None)] == [H, N, N]


def test_operator_routes_name_a_queue_or_one_of_its_levels() -> None:
    assert levels_of("chat_tasks") == ["chat_tasks.high", "chat_tasks", "chat_tasks.low"]
    assert levels_of("chat_tasks.dlq") == levels_of("chat_tasks")
    assert levels_of("chat_tasks.low.dlq") == ["chat_tasks.low"]
    assert work_queue("tool_executions.high") == "tool_executions.high"
    with pytest.raises(UnknownQueue):
        work_queue("chat_tasks.urgent")
