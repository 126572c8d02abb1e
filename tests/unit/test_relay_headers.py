"""The headers the outbox relay gives a task row's message: its task's kept trace context
(migrations/0029) on every kind, a copy id on all but a dead letter, the row's own kept."""

from typing import Any

from taskfleet.broker.outbox import message_headers
from taskfleet.core.constants import COPY_HEADER, REASON_HEADER, TaskType
from taskfleet.path.waiting import Waiting
from taskfleet.store.records import NewTask

KEPT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def row(
    kind: str, traceparent: str | None, headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"kind": kind, "traceparent": traceparent, "headers": headers}


def test_a_retry_joins_the_trace_its_task_kept_as_a_copy_of_its_own() -> None:
    headers = message_headers(row("retry", KEPT))
    assert headers["traceparent"] == KEPT
    assert headers[COPY_HEADER]
    assert message_headers(row("retry", KEPT))[COPY_HEADER] != headers[COPY_HEADER]


def test_a_dead_letter_keeps_its_reason_and_the_trace_and_is_no_copy() -> None:
    headers = message_headers(row("dead_letter", KEPT, {REASON_HEADER: "exhausted"}))
    assert headers == {REASON_HEADER: "exhausted", "traceparent": KEPT}


def test_a_task_that_kept_no_trace_sends_none() -> None:
    for kind in ("task", "retry", "throttle"):
        assert set(message_headers(row(kind, None))) == {COPY_HEADER}


def test_children_carry_their_traceparent_to_tf_wait_for_only_when_they_have_one() -> None:
    traced, untraced = (
        NewTask(type=TaskType.TOOL, user_id="u", input={}, max_attempts=1, traceparent=value)
        for value in (KEPT, None)
    )
    rows = Waiting([traced, untraced], state={}).rows()
    assert rows[0]["traceparent"] == KEPT
    assert "traceparent" not in rows[1]
