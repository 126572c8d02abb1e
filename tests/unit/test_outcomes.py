"""taskfleet.path: each outcome of an attempt commits its one status, and its delivery's
settlement is an ack that announces that status after it; an interrupt's reason decides the
outcome. The store is a stand-in that records which transition was written."""

import asyncio
from datetime import UTC, datetime
from typing import Any, cast
from uuid import uuid4

import asyncpg
import pytest

from taskfleet.core.constants import Status, TaskType
from taskfleet.core.errors import PermanentError, RetryableError, TaskCancelled, TaskError
from taskfleet.core.events import event_seq
from taskfleet.core.messages import TaskMessage
from taskfleet.core.retry import Backoff
from taskfleet.core.settings import Settings
from taskfleet.path.attempt import Attempt
from taskfleet.path.commit import Committed, Committer, Outcome, Released
from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.path.reasons import Interrupt
from taskfleet.path.runner import after_commit, interrupted
from taskfleet.path.settle import Ack
from taskfleet.path.waiting import Waiting
from taskfleet.security.fields import Sealer
from taskfleet.store.records import Claim, NewTask

MSG = TaskMessage(task_id=uuid4(), type=TaskType.CHAT, user_id="alice", chat_id="c1")
CHILD = NewTask(type=TaskType.TOOL, user_id="alice", input={}, max_attempts=1)


class Store:
    """Records each fenced transition; `refuse` makes the first one raise it."""

    def __init__(self, refuse: BaseException | None = None) -> None:
        self.written: list[str] = []
        self.refuse = refuse

    def _write(self, transition: str) -> int:
        if self.refuse is not None:
            refused, self.refuse = self.refuse, None
            raise refused
        self.written.append(transition)
        return len(self.written) + 10

    async def complete(self, task_id: Any, fence: int, output: Any, reply: Any) -> int:
        return self._write("complete")

    async def cancelled(self, task_id: Any, fence: int, partial: Any) -> int:
        return self._write(f"cancelled partial={partial}")

    async def release(self, task_id: Any, fence: int) -> int:
        return self._write("release")

    async def wait(self, task_id: Any, fence: int, *_: Any) -> tuple[int, list[int]]:
        return self._write("wait"), [91]

    async def retry(self, task_id: Any, fence: int, error: Any, queue: str, delay: float) -> int:
        return self._write(f"retry {error['code']}")

    async def fail(self, task_id: Any, fence: int, error: Any, queue: str, reason: str) -> int:
        return self._write(f"fail {reason}")


def attempt(number: int = 1, max_attempts: int = 3) -> Attempt:
    claim = Claim(
        verdict="claimed",
        fence=5,
        attempts=number,
        max_attempts=max_attempts,
        checkpoint=None,
        input={},
        user_id="alice",
        chat_id="c1",
        created_at=datetime.now(UTC),
        event_seq=2,
        message_id=None,
    )
    return Attempt.of(
        MSG,
        claim,
        deadline=0.0,
        store=cast(Any, Store()),
        publish=lambda key, body: None,
        sealer=Sealer.from_settings(Settings()),
    )


async def commit(
    outcome: Outcome, store: Store, run: Attempt | None = None
) -> tuple[Committed, list[BaseException]]:
    away: list[BaseException] = []

    async def database_away(exc: BaseException) -> None:
        away.append(exc)

    committer = Committer(cast(Any, store), "chat_tasks", Backoff(1, 2), 0.0, database_away)
    return await committer.commit(run or attempt(), outcome), away


RETRYABLE = RetryableError("flaky", code="flaky")
CASES: list[tuple[Outcome, int, str, str]] = [
    # outcome, attempt (of 3), status committed, transition written
    (TaskResult({"ok": 1}), 1, "completed", "complete"),
    (TaskCancelled("stop"), 1, "cancelled", "cancelled partial=None"),
    (Released(), 1, "queued", "release"),
    (Waiting([CHILD], {"s": 1}), 1, "waiting", "wait"),
    (RETRYABLE, 1, "retrying", "retry flaky"),
    (RETRYABLE, 3, "failed", "fail max_attempts: flaky"),
    (PermanentError("bad", code="bad"), 1, "failed", "fail permanent: bad"),
]


@pytest.mark.parametrize(("outcome", "number", "status", "written"), CASES)
async def test_each_outcome_commits_its_status(
    outcome: Outcome, number: int, status: str, written: str
) -> None:
    store = Store()
    committed, _ = await commit(outcome, store, attempt(number))
    assert (str(committed.status), store.written) == (status, [written])
    assert committed.outcome is outcome


async def test_an_output_the_database_refuses_fails_the_task() -> None:
    store = Store(refuse=asyncpg.UntranslatableCharacterError("NUL"))
    committed, _ = await commit(TaskResult("\x00"), store)
    assert (committed.status, store.written) == ("failed", ["fail permanent: unstorable_output"])
    assert isinstance(committed.outcome, TaskError)
    assert committed.outcome.code == "unstorable_output"


async def test_a_commit_waits_out_its_database_and_says_it_is_away() -> None:
    error = ConnectionResetError("down")
    store = Store(refuse=error)
    committed, away = await commit(TaskResult(1), store)
    assert (committed.status, store.written, away) == ("completed", ["complete"], [error])


@pytest.mark.parametrize(
    ("reason", "kind"), [(Interrupt.CANCEL, TaskCancelled), (Interrupt.SHUTDOWN, Released)]
)
def test_an_interrupt_decides_the_outcome(reason: Interrupt, kind: type) -> None:
    assert isinstance(interrupted(reason), kind)


async def test_a_committed_outcome_is_acked_then_announced() -> None:
    sent: list[dict[str, Any]] = []
    run = attempt()
    run.events.publish = lambda key, body: sent.append(body)
    run.events.hold()
    run.events.status("processing", progress=0.0)
    settlement = after_commit(Committed(Status.FAILED, 12, PermanentError("x")), run)
    assert settlement == Ack()
    assert settlement.then is not None
    assert sent == []  # nothing announced before the ack
    await settlement.then()
    assert [(b["task"]["status"], b["seq"]) for b in sent] == [
        ("processing", event_seq(2)), ("failed", event_seq(12)),
    ]  # fmt: skip


async def test_a_completion_announces_itself_alone() -> None:
    sent: list[dict[str, Any]] = []
    run = attempt()
    run.events.publish = lambda key, body: sent.append(body)
    run.events.hold()
    run.events.status("processing", progress=0.0)
    settlement = after_commit(Committed(Status.COMPLETED, 12, TaskResult(1)), run)
    assert settlement.then is not None
    await settlement.then()
    assert [b["task"]["status"] for b in sent] == ["completed"]


async def test_an_interrupt_cancels_the_handler_once_and_a_cancel_sets_the_flag() -> None:
    run = attempt()
    ctx = TaskContext(run)

    async def handler() -> None:
        with run.owned_by_current_task():
            await asyncio.sleep(30)

    task = asyncio.create_task(handler())
    await asyncio.sleep(0)
    run.interrupt(Interrupt.SHUTDOWN)
    run.interrupt(Interrupt.CANCEL)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert run.interrupted is Interrupt.SHUTDOWN  # the first reason counts
    assert ctx.cancelled.is_set()  # a cancel is still seen by the handler
