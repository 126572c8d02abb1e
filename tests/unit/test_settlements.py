"""taskfleet.path: each way a delivery ends maps to one settlement, and Settler.settle applies
each settlement to the message (the only code that acks, nacks or dead-letters).

No broker or database: the message, store and broker are stand-ins that record calls."""

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast
from uuid import uuid4

import asyncpg
import pytest

from taskfleet.core.constants import (
    LEVELS,
    QUEUES,
    REASON_HEADER,
    Priority,
    TaskType,
    level_queue,
)
from taskfleet.core.errors import StaleClaim
from taskfleet.core.faults import Faults
from taskfleet.core.messages import TaskMessage
from taskfleet.path import settle
from taskfleet.path.delivery import (
    VERDICT_STATUS,
    VERDICT_TALLY,
    Processor,
    for_claim_error,
    for_verdict,
)
from taskfleet.path.reasons import DeadLetterCause, RequeueWhy, Tally, Verdict
from taskfleet.path.settle import Ack, DeadLetter, Requeue, Settlement, Settler
from taskfleet.store.records import Claim

CHAT = QUEUES[TaskType.CHAT]
MSG = TaskMessage(task_id=uuid4(), type=TaskType.CHAT, user_id="alice", chat_id="c1")
UNKNOWN_REASON = (
    f"no task {MSG.task_id}: only a chat_message creates its task from a message; every other"
    " type is created with its row first"
)
MISMATCH_REASON = "task_id names a task of another user or type"

# Every verdict but `claimed` (which runs the handler) and its settlement.
UNCLAIMED: dict[Verdict, Settlement] = {
    Verdict.DUPLICATE: Ack(),
    Verdict.CANCELLED: Ack(),
    Verdict.EXHAUSTED: Ack(),
    Verdict.THROTTLED: Ack(),
    Verdict.MISMATCH: DeadLetter(DeadLetterCause.MISMATCH, MISMATCH_REASON),
    Verdict.UNKNOWN: DeadLetter(DeadLetterCause.UNKNOWN_TASK, UNKNOWN_REASON),
}


def test_the_verdicts_keep_the_strings_tf_claim_answers() -> None:
    assert {v.value for v in Verdict} == {
        "claimed", "duplicate", "cancelled", "exhausted", "throttled", "mismatch", "unknown",
    }  # fmt: skip


@pytest.mark.parametrize("verdict", list(UNCLAIMED))
def test_each_unclaimed_verdict_has_its_settlement(verdict: Verdict) -> None:
    assert for_verdict(verdict, MSG) == UNCLAIMED[verdict]


def test_every_verdict_is_mapped_and_a_claimed_one_is_not_settled_unclaimed() -> None:
    assert set(UNCLAIMED) | {Verdict.CLAIMED} == set(Verdict)
    with pytest.raises(ValueError, match="is run"):
        for_verdict(Verdict.CLAIMED, MSG)


def test_unclaimed_verdicts_count_and_announce_as_before() -> None:
    assert VERDICT_TALLY == {
        Verdict.DUPLICATE: Tally.DUPLICATE,
        Verdict.CANCELLED: Tally.CANCELLED,
        Verdict.EXHAUSTED: Tally.DEAD_LETTERED,
        Verdict.THROTTLED: Tally.THROTTLED,  # a put-back: a user's limit or a rate limit
    }
    assert {v: str(s) for v, s in VERDICT_STATUS.items()} == {
        Verdict.CANCELLED: "cancelled", Verdict.EXHAUSTED: "failed",
    }  # fmt: skip
    assert {str(t) for t in Tally} >= {"duplicate", "cancelled", "dead_lettered"}


@pytest.mark.parametrize(
    ("error", "settlement"),
    [
        (ConnectionRefusedError(), Requeue(RequeueWhy.DATABASE_UNAVAILABLE)),
        (TimeoutError(), Requeue(RequeueWhy.DATABASE_UNAVAILABLE)),
        (asyncpg.DeadlockDetectedError("deadlock"), Requeue(RequeueWhy.DEADLOCK)),
        (asyncpg.SerializationError("serialization"), Requeue(RequeueWhy.DEADLOCK)),
        (
            asyncpg.UntranslatableCharacterError("NUL"),
            DeadLetter(
                DeadLetterCause.REJECTED_BY_DATABASE, "payload rejected by the database: NUL"
            ),
        ),
        (ValueError("a bug"), None),
    ],
)
def test_each_claim_error_has_its_settlement(
    error: Exception, settlement: Settlement | None
) -> None:
    assert for_claim_error(error) == settlement


class Store:
    """A TaskStore stand-in: claim answers `verdict` or raises `claim_error`."""

    def __init__(self, verdict: str = "claimed", claim_error: Exception | None = None) -> None:
        self.verdict, self.claim_error = verdict, claim_error
        self.release_error: Exception | None = None
        self.released: list[int] = []

    async def claim(self, msg: TaskMessage, **_: Any) -> Claim:
        if self.claim_error is not None:
            raise self.claim_error
        return Claim(
            verdict=self.verdict,
            fence=7,
            attempts=1,
            max_attempts=5,
            checkpoint=None,
            input={},
            user_id=msg.user_id,
            chat_id=msg.chat_id,
            created_at=datetime.now(UTC),
            event_seq=3,
            message_id=None,
        )

    async def release(self, task_id: Any, fence: int) -> int:
        if self.release_error is not None:
            raise self.release_error
        self.released.append(fence)
        return 4


class Broker:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.events: list[tuple[str, bytes]] = []
        self.published: list[tuple[str, bytes, dict[str, Any]]] = []

    async def publish_event(self, key: str, body: bytes) -> None:
        self.events.append((key, body))

    async def publish(self, queue: str, body: bytes, *, message_id: Any, headers: Any) -> None:
        if self.fail:
            raise ConnectionResetError("broker away")
        self.published.append((queue, body, headers))


def delivery(body: bytes) -> Any:
    return SimpleNamespace(body=body, redelivered=False, headers={"x-taskfleet-copy": "k"})


async def process(
    body: bytes, store: Store, *, stopping: bool = False, broker: Broker | None = None
) -> tuple[Settlement, list[BaseException]]:
    away: list[BaseException] = []

    async def database_away(exc: BaseException) -> None:
        away.append(exc)

    processor = Processor(
        spec=CHAT,
        store=cast(Any, store),
        broker=cast(Any, broker or Broker()),
        runner=cast(Any, None),
        policy=cast(Any, lambda: None),
        stopping=lambda: stopping,
        database_away=database_away,
    )
    return await processor.process(delivery(body)), away


async def test_a_body_that_is_not_a_task_message_is_dead_lettered() -> None:
    settlement, _ = await process(b"{not json", Store())
    assert isinstance(settlement, DeadLetter)
    assert settlement.cause is DeadLetterCause.INVALID_PAYLOAD
    assert settlement.reason.startswith("body is not JSON")


async def test_a_message_on_another_types_queue_is_dead_lettered() -> None:
    tool = TaskMessage(task_id=uuid4(), type=TaskType.TOOL, user_id="alice")
    settlement, _ = await process(tool.dumps(), Store())
    assert settlement == DeadLetter(
        DeadLetterCause.WRONG_QUEUE,
        f"a tool_execution message on {CHAT.name}: its queue is tool_executions",
    )


async def test_a_claim_without_its_database_requeues_and_pauses() -> None:
    error = ConnectionRefusedError("down")
    settlement, away = await process(MSG.dumps(), Store(claim_error=error))
    assert settlement == Requeue(RequeueWhy.DATABASE_UNAVAILABLE)
    assert away == [error]


async def test_a_deadlocked_claim_requeues_without_pausing() -> None:
    store = Store(claim_error=asyncpg.DeadlockDetectedError("deadlock"))
    settlement, away = await process(MSG.dumps(), store)
    assert (settlement, away) == (Requeue(RequeueWhy.DEADLOCK), [])


async def test_an_unclaimed_verdict_is_settled_and_announced() -> None:
    broker = Broker()
    settlement, _ = await process(MSG.dumps(), Store(verdict="exhausted"), broker=broker)
    assert settlement == Ack()
    assert len(broker.events) == 1
    assert b'"status":"failed"' in broker.events[0][1]


async def test_a_claim_made_while_stopping_is_released_and_acked() -> None:
    store = Store()
    settlement, _ = await process(MSG.dumps(), store, stopping=True)
    assert (settlement, store.released) == (Ack(), [7])


async def test_a_release_that_cannot_reach_its_database_requeues() -> None:
    store = Store()
    store.release_error = ConnectionResetError()
    settlement, _ = await process(MSG.dumps(), store, stopping=True)
    assert settlement == Requeue(RequeueWhy.DATABASE_UNAVAILABLE)


async def test_a_release_that_lost_its_claim_is_settled() -> None:
    store = Store()
    store.release_error = StaleClaim("taken over")
    settlement, _ = await process(MSG.dumps(), store, stopping=True)
    assert settlement == Ack()


class Message:
    """An AbstractIncomingMessage stand-in that records how it was settled."""

    def __init__(self) -> None:
        self.body, self.message_id, self.headers = b"body", "m1", {"h": 1}
        self.calls: list[str] = []

    async def ack(self) -> None:
        self.calls.append("ack")

    async def nack(self, requeue: bool = True) -> None:
        self.calls.append(f"nack(requeue={requeue})")


def settler(broker: Broker) -> Settler:
    dead_letters = {level: f"t.{level_queue('chat_tasks.dlq', level)}" for level in LEVELS}
    return Settler(cast(Any, broker), CHAT.name, dead_letters, Faults.parse(""))


async def test_an_ack_acks_then_runs_what_follows_it() -> None:
    message = Message()

    async def then() -> None:
        message.calls.append("then")

    await settler(Broker()).settle(cast(Any, message), Ack(then=then))
    assert message.calls == ["ack", "then"]


async def test_a_requeue_nacks_with_requeue() -> None:
    message = Message()
    await settler(Broker()).settle(cast(Any, message), Requeue(RequeueWhy.NOT_TAKING))
    assert message.calls == ["nack(requeue=True)"]


async def test_a_dead_letter_copies_to_the_dlq_with_its_reason_then_acks() -> None:
    message, broker = Message(), Broker()
    await settler(broker).settle(cast(Any, message), DeadLetter(DeadLetterCause.MISMATCH, "why"))
    assert broker.published == [("t.chat_tasks.dlq", b"body", {"h": 1, REASON_HEADER: "why"})]
    assert message.calls == ["ack"]


async def test_a_dead_letter_goes_to_the_dlq_of_the_level_it_came_from() -> None:
    broker = Broker()
    letter = DeadLetter(DeadLetterCause.MISMATCH, "why")
    await settler(broker).settle(cast(Any, Message()), letter, Priority.HIGH)
    await settler(broker).settle(cast(Any, Message()), letter, Priority.LOW)
    assert [p[0] for p in broker.published] == ["t.chat_tasks.high.dlq", "t.chat_tasks.low.dlq"]


async def test_a_dead_letter_the_dlq_did_not_take_is_handed_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(settle, "HAND_BACK_DELAY_S", 0.0)
    message = Message()
    letter = DeadLetter(DeadLetterCause.INVALID_PAYLOAD, "x")
    await settler(Broker(fail=True)).settle(cast(Any, message), letter)
    assert message.calls == ["nack(requeue=True)"]
