"""The API's event hub: fan-out per user, slow subscribers dropped alone, replay buffer."""

from dataclasses import dataclass
from typing import Any, cast

import aiormq
import orjson
import pytest

from fleet_api import hub as hub_module
from fleet_api import ws as ws_module
from fleet_api.hub import EventHub
from taskfleet.broker.connection import Broker
from taskfleet.core.settings import Settings


@dataclass
class FakeDelivery:
    body: bytes
    routing_key: str = "task.chat_message.processing"


def event(task: str, seq: int, user: str = "alice") -> FakeDelivery:
    body = {"type": "task.updated", "task_id": task, "user_id": user, "seq": seq, "task": {}}
    return FakeDelivery(orjson.dumps(body))


@pytest.fixture
def hub() -> EventHub:
    return EventHub(Settings(), cast(Broker, None))


async def test_events_reach_only_their_users_subscribers_and_the_all_users_feed(
    hub: EventHub,
) -> None:
    alice, bob = await hub.subscribe("alice"), await hub.subscribe("bob")
    service = await hub.subscribe(None)
    await hub._on_message(event("t1", 1_000_000))  # type: ignore[arg-type]
    await hub._on_message(event("t2", 1_000_000, user="bob"))  # type: ignore[arg-type]
    assert [alice.queue.get_nowait()["task_id"]] == ["t1"]
    assert alice.queue.empty()
    assert bob.queue.get_nowait()["task_id"] == "t2"
    assert [service.queue.get_nowait()["task_id"] for _ in range(2)] == ["t1", "t2"]


async def test_a_slow_subscriber_overflows_alone(
    hub: EventHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "SUBSCRIBER_QUEUE", 3)
    slow, fast = await hub.subscribe("alice"), await hub.subscribe("alice")
    for seq in range(1, 6):
        await hub._on_message(event("t1", seq))  # type: ignore[arg-type]
        fast.queue.get_nowait()  # the fast one keeps up
    assert slow.overflowed.is_set()
    assert slow.queue.qsize() == 3
    assert not fast.overflowed.is_set()


async def test_replay_answers_only_when_it_holds_everything_after_since(hub: EventHub) -> None:
    for seq in (5, 6, 7, 8):
        await hub._on_message(event("t1", seq))  # type: ignore[arg-type]
    assert [e["seq"] for e in hub.replay("t1", 6) or []] == [7, 8]
    assert hub.replay("t1", 8) == []
    assert hub.replay("t1", 3) is None  # events 4 and earlier were never seen here
    assert hub.replay("unknown", 1) is None


async def test_malformed_events_are_ignored(hub: EventHub) -> None:
    sub = await hub.subscribe(None)
    for body in (b"not json", b"{}", orjson.dumps({"task_id": "t", "user_id": "u", "seq": "x"})):
        await hub._on_message(FakeDelivery(body))  # type: ignore[arg-type]
    assert sub.queue.empty()


def test_a_socket_remembers_the_seqs_of_its_latest_tasks_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ws_module, "SENT_REMEMBERED", 3)
    feed = ws_module.Feed(cast(Any, None), cast(Any, None))
    for task in ("t1", "t2", "t3"):
        feed.mark(task, 1)
    feed.mark("t1", 2)  # seen again: the newest now
    feed.mark("t4", 1)
    assert list(feed.sent.items()) == [("t3", 1), ("t1", 2), ("t4", 1)]  # t2 is forgotten


async def test_a_subscriber_is_served_while_the_broker_is_away(hub: EventHub) -> None:
    class ClosedQueue:
        """What a queue of a channel the broker closed does when asked to bind."""

        async def bind(self, *args: Any, **kwargs: Any) -> None:
            raise aiormq.exceptions.ChannelInvalidStateError("channel closed")

    hub._queue, hub._exchange = cast(Any, ClosedQueue()), cast(Any, object())
    sub = await hub.subscribe("alice")  # no error: the socket still gets its snapshot
    assert not hub.bound  # and the reconnect binds, as someone listens
    assert hub.listened
    hub.unsubscribe(sub)
    assert not hub.listened


def sized(task: str, seq: int, pad: int = 0) -> bytes:
    body = {"type": "task.updated", "task_id": task, "user_id": "alice", "seq": seq,
            "task": {"output": "x" * pad}}  # fmt: skip
    return orjson.dumps(body)


def held_bytes(hub: EventHub) -> int:
    """What the buffer holds, summed from the events themselves (their JSON lengths)."""
    return sum(len(orjson.dumps(e)) for h in hub._history.values() for e, _ in h.events)


def test_the_replay_buffer_is_bounded_in_bytes_and_forgets_the_oldest_first(
    hub: EventHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "HISTORY_MAX_BYTES", 10_000)
    for seq in range(1, 11):  # ten events of about 1 KB for each of ten tasks: 100 KB sent
        for task in range(10):
            hub.deliver(sized(f"t{task}", seq, pad=1000))
    assert 9_000 < hub.history_bytes <= 10_000
    assert hub.history_bytes == held_bytes(hub)
    # What is left: the latest round of events, the least recently updated tasks' first gone.
    held = [(task, e["seq"]) for task, h in hub._history.items() for e, _ in h.events]
    assert held == [(f"t{task}", 10) for task in range(10 - len(held), 10)]
    assert hub.replay("t9", 10) == []
    assert hub.replay("t9", 9) is None  # its seq 9 went: it cannot vouch from there


def test_a_task_trimmed_by_the_byte_bound_vouches_only_for_what_it_still_holds(
    hub: EventHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "HISTORY_MAX_BYTES", 5_000)
    for seq in range(1, 21):  # one task alone over the bound: its oldest events go
        hub.deliver(sized("t1", seq, pad=500))
    held = [e["seq"] for e, _ in hub._history["t1"].events]
    assert held == list(range(held[0], 21))  # a whole run of the latest, nothing skipped
    assert held[0] > 1
    assert hub.replay("t1", held[0] - 1) is None  # the event after it is gone: cannot vouch
    assert [e["seq"] for e in hub.replay("t1", held[0]) or []] == held[1:]


def test_a_huge_event_does_not_break_the_bound(
    hub: EventHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "HISTORY_MAX_BYTES", 5_000)
    hub.deliver(sized("t1", 1, pad=10))
    hub.deliver(sized("t1", 2, pad=20_000))  # alone larger than the whole buffer
    assert hub.history_bytes == 0
    assert hub.replay("t1", 1) is None


async def test_a_users_key_goes_when_its_last_socket_leaves(hub: EventHub) -> None:
    for user in ("alice", "bob", None):
        first, second = await hub.subscribe(user), await hub.subscribe(user)
        hub.unsubscribe(first)
        assert user in hub._subscribers  # one socket of that user still listens
        hub.unsubscribe(second)
        hub.unsubscribe(second)  # twice (a handler's finally after a failed subscribe): harmless
    assert hub._subscribers == {}
    assert not hub.listened
